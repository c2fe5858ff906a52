package orchestrator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/store"
)

// clock is a settable time source for progress.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// textHandler logs without the time, so outputs can be compared.
func textHandler(w *bytes.Buffer) slog.Handler {
	return slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
}

func newTestProgress(log *slog.Logger, every time.Duration) (*progress, *clock) {
	c := &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
	p := newProgress(log, "iter0", "generate", every)
	p.now, p.start, p.last = c.now, c.t, c.t
	return p, c
}

func TestCells(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		frac float64
		n    int
		want string
	}{
		{"empty", 0, 4, "    "},
		{"full", 1, 4, "████"},
		{"half", 0.5, 4, "██  "},
		{"one eighth of a cell", 1.0 / 32, 4, "▏   "},
		{"a quarter cell", 2.0 / 32, 4, "▎   "},
		{"seven eighths", 7.0 / 32, 4, "▉   "},
		{"over 1 is full", 1.5, 2, "██"},
		{"under 0 is empty", -1, 2, "  "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, cells(tt.frac, tt.n))
		})
	}
}

func TestProgressBar(t *testing.T) {
	t.Parallel()
	p, c := newTestProgress(slog.New(slog.DiscardHandler), time.Second)
	p.update(context.Background(), store.TaskCounts{Pending: 600}) // the stage starts with nothing settled
	c.t = c.t.Add(10 * time.Second)
	// 302 of 600 settled in 10 s: 30.2/s, 298 left ≈ 9.87 s. The bar is
	// 302/600 of 24 cells = 12 full cells and 1/8 (97 eighths).
	got := p.bar(store.TaskCounts{Done: 300, Failed: 2, Pending: 298}, 120)
	require.Equal(t, "iter0 generate ▕"+strings.Repeat("█", 12)+"▏"+strings.Repeat(" ", 11)+"▏ 302/600  2 failed  30.2/s  ETA 10s", got)

	// No failures, nothing left: no failed count, no ETA.
	got = p.bar(store.TaskCounts{Done: 600}, 120)
	require.Equal(t, "iter0 generate ▕"+strings.Repeat("█", 24)+"▏ 600/600  60.0/s", got)

	// A narrow terminal cuts the line one cell short of its width.
	got = p.bar(store.TaskCounts{Done: 600}, 20)
	require.Equal(t, 19, len([]rune(got)))
	require.True(t, strings.HasPrefix(got, "iter0 generate ▕"))
}

func TestProgressRateCountsOnlyThisRun(t *testing.T) {
	t.Parallel()
	// A resumed stage: 400 tasks were settled before this orchestrator
	// started; only the 100 settled since count towards the rate.
	p, c := newTestProgress(slog.New(slog.DiscardHandler), time.Second)
	p.update(context.Background(), store.TaskCounts{Done: 400, Pending: 200})
	c.t = c.t.Add(20 * time.Second)
	rate, eta, elapsed := p.rate(store.TaskCounts{Done: 500, Pending: 100})
	require.InDelta(t, 5.0, rate, 1e-9)
	require.Equal(t, 20*time.Second, eta)
	require.Equal(t, 20*time.Second, elapsed)
}

func TestProgressLogsALineEveryInterval(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p, c := newTestProgress(slog.New(slog.NewJSONHandler(&buf, nil)), 5*time.Second)
	require.Nil(t, p.term, "a JSON log is not a terminal")
	ctx := context.Background()
	for _, step := range []struct {
		after time.Duration
		done  int64
	}{{0, 0}, {time.Second, 10}, {6 * time.Second, 60}, {7 * time.Second, 70}, {12 * time.Second, 120}} {
		c.t = c.t.Add(step.after - c.t.Sub(p.start))
		p.update(ctx, store.TaskCounts{Done: step.done, Pending: 200 - step.done})
	}
	c.t = p.start.Add(20 * time.Second)
	p.finish(ctx, store.TaskCounts{Done: 199, Failed: 1})

	var lines []map[string]any
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		lines = append(lines, m)
	}
	require.Len(t, lines, 3, "a line at 6 s and 12 s, and the stage's end")
	require.Equal(t, "progress", lines[0]["msg"])
	require.EqualValues(t, 60, lines[0]["done"])
	require.EqualValues(t, 200, lines[0]["total"])
	require.EqualValues(t, 10, lines[0]["rate_per_s"])
	require.EqualValues(t, 14*time.Second, lines[0]["eta"], "140 left at 10/s (JSON durations are nanoseconds)")
	require.EqualValues(t, 120, lines[1]["done"])
	require.Equal(t, "stage finished", lines[2]["msg"])
	require.EqualValues(t, 1, lines[2]["failed"])
	require.EqualValues(t, 10, lines[2]["rate_per_s"])
	require.NotContains(t, lines[2], "eta", "nothing left")
}

func TestTerminalKeepsTheBarBelowLogRecords(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	term := NewTerminal(&buf, textHandler(&buf))
	log := slog.New(term)
	log.Info("before any bar")
	term.draw("BAR 1")
	log.With("iteration", "iter0").Warn("some tasks failed", "failed", 2)
	term.draw("BAR 2")
	term.draw("BAR 2") // unchanged: not redrawn
	term.draw("")
	log.Info("after the bar")
	require.Equal(t, "level=INFO msg=\"before any bar\"\n"+
		clearLine+"BAR 1"+
		clearLine+"level=WARN msg=\"some tasks failed\" iteration=iter0 failed=2\n"+"BAR 1"+
		clearLine+"BAR 2"+
		clearLine+
		"level=INFO msg=\"after the bar\"\n", buf.String())
}

func TestProgressDrawsABarOnATerminal(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p, c := newTestProgress(slog.New(NewTerminal(&buf, textHandler(&buf))), time.Hour)
	require.NotNil(t, p.term)
	ctx := context.Background()
	p.update(ctx, store.TaskCounts{Pending: 8})
	c.t = c.t.Add(2 * time.Second)
	p.update(ctx, store.TaskCounts{Done: 4, Pending: 4})
	c.t = c.t.Add(2 * time.Second)
	p.finish(ctx, store.TaskCounts{Done: 8})

	out := buf.String()
	// Every update redraws, whatever the interval; finishing clears the
	// bar and logs the summary line.
	require.Contains(t, out, clearLine+"iter0 generate ▕"+strings.Repeat(" ", 24)+"▏ 0/8  0.0/s")
	require.Contains(t, out, clearLine+"iter0 generate ▕"+strings.Repeat("█", 12)+strings.Repeat(" ", 12)+"▏ 4/8  2.0/s  ETA 2s")
	require.True(t, strings.HasSuffix(out, clearLine+"level=INFO msg=\"stage finished\" iteration=iter0 kind=generate done=8 failed=0 total=8 rate_per_s=2 elapsed=4s\n"), out)
}
