package orchestrator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/selfplay/selfplay/store"
)

// progress reports a stage's tasks: done/failed/total, the rate of settled
// tasks and the time left at that rate. When the orchestrator logs to a
// Terminal it redraws a live bar on every update; otherwise it logs a
// structured line every interval.
type progress struct {
	log       *slog.Logger
	term      *Terminal // nil unless logging to a terminal
	iteration string
	kind      string
	every     time.Duration
	now       func() time.Time
	start     time.Time
	last      time.Time
	first     int64 // settled tasks when the stage (re)started
}

func newProgress(log *slog.Logger, iteration, kind string, every time.Duration) *progress {
	p := &progress{log: log, iteration: iteration, kind: kind, every: every, now: time.Now, first: -1}
	p.term, _ = log.Handler().(*Terminal)
	p.start = p.now()
	p.last = p.start
	return p
}

func (p *progress) update(ctx context.Context, c store.TaskCounts) {
	settled := c.Done + c.Failed
	if p.first < 0 {
		p.first = settled
	}
	if p.term != nil {
		p.term.draw(p.bar(c, p.term.width()))
		return
	}
	if now := p.now(); now.Sub(p.last) >= p.every {
		p.last = now
		p.line(ctx, "progress", c)
	}
}

func (p *progress) finish(ctx context.Context, c store.TaskCounts) {
	if p.term != nil {
		p.term.draw("")
	}
	p.line(ctx, "stage finished", c)
}

// rate is settled tasks per second since the stage (re)started, and eta
// the time left at that rate (0 when unknown or nothing is left).
func (p *progress) rate(c store.TaskCounts) (rate float64, eta time.Duration, elapsed time.Duration) {
	elapsed = p.now().Sub(p.start)
	rate = float64(c.Done+c.Failed-max(p.first, 0)) / max(elapsed.Seconds(), 1e-9)
	if rate > 0 && c.Pending > 0 {
		eta = (time.Duration(float64(c.Pending) / rate * float64(time.Second))).Round(time.Second)
	}
	return rate, eta, elapsed
}

func (p *progress) line(ctx context.Context, msg string, c store.TaskCounts) {
	rate, eta, elapsed := p.rate(c)
	attrs := []any{"iteration", p.iteration, "kind", p.kind, "done", c.Done, "failed", c.Failed,
		"total", c.Total(), "rate_per_s", math.Round(rate*10) / 10, "elapsed", elapsed.Round(time.Second)}
	if eta > 0 {
		attrs = append(attrs, "eta", eta)
	}
	p.log.InfoContext(ctx, msg, attrs...)
}

// barCells is the width of the bar itself, in character cells.
const barCells = 24

// bar renders one line, at most width cells wide:
//
//	iter0 generate ▕██████████▌             ▏ 312/600  2 failed  41.2/s  ETA 7s
func (p *progress) bar(c store.TaskCounts, width int) string {
	rate, eta, _ := p.rate(c)
	settled, total := c.Done+c.Failed, c.Total()
	frac := 1.0
	if total > 0 {
		frac = float64(settled) / float64(total)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s ▕%s▏ %d/%d", p.iteration, p.kind, cells(frac, barCells), settled, total)
	if c.Failed > 0 {
		fmt.Fprintf(&b, "  %d failed", c.Failed)
	}
	fmt.Fprintf(&b, "  %.1f/s", rate)
	if eta > 0 {
		fmt.Fprintf(&b, "  ETA %s", eta)
	}
	return truncate(b.String(), width-1)
}

// cells draws frac of n cells with eighth-cell resolution.
func cells(frac float64, n int) string {
	eighths := int(math.Round(min(max(frac, 0), 1) * float64(n*8)))
	full, part := eighths/8, eighths%8
	s := strings.Repeat("█", full)
	if part > 0 {
		s += string([]rune("▏▎▍▌▋▊▉")[part-1])
		full++
	}
	return s + strings.Repeat(" ", n-full)
}

// truncate cuts s to at most n runes (every rune of a bar is one cell).
func truncate(s string, n int) string {
	if n <= 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// Terminal is a slog.Handler for logs that go to a terminal: it keeps a
// live progress bar on the last line and prints each log record above it
// (clearing the bar, writing the record through the wrapped handler,
// redrawing the bar). The orchestrator draws its stage progress as that bar
// when its logger's handler is a Terminal, and as a structured line every
// progress_interval otherwise. Safe for concurrent use; handlers derived
// with WithAttrs or WithGroup share the bar.
type Terminal struct {
	inner slog.Handler
	state *terminalState
}

type terminalState struct {
	mu  sync.Mutex
	w   io.Writer
	bar string // the line on screen, "" when none
}

// NewTerminal wraps inner, whose output goes to w (the same terminal), so
// that a progress bar can live below the log records.
func NewTerminal(w io.Writer, inner slog.Handler) *Terminal {
	return &Terminal{inner: inner, state: &terminalState{w: w}}
}

// IsTerminal reports whether f is a terminal, where a live progress bar
// makes sense (not a pipe, a file or compose's log collector).
func IsTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// clearLine returns the cursor to the line start and erases the line.
const clearLine = "\r\x1b[2K"

// Enabled implements slog.Handler.
func (t *Terminal) Enabled(ctx context.Context, l slog.Level) bool { return t.inner.Enabled(ctx, l) }

// Handle implements slog.Handler: the record goes above the bar.
func (t *Terminal) Handle(ctx context.Context, r slog.Record) error {
	s := t.state
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bar != "" {
		io.WriteString(s.w, clearLine)
	}
	err := t.inner.Handle(ctx, r)
	if s.bar != "" {
		io.WriteString(s.w, s.bar)
	}
	return err
}

// WithAttrs implements slog.Handler.
func (t *Terminal) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Terminal{inner: t.inner.WithAttrs(attrs), state: t.state}
}

// WithGroup implements slog.Handler.
func (t *Terminal) WithGroup(name string) slog.Handler {
	return &Terminal{inner: t.inner.WithGroup(name), state: t.state}
}

// draw replaces the bar with line; "" removes it.
func (t *Terminal) draw(line string) {
	s := t.state
	s.mu.Lock()
	defer s.mu.Unlock()
	if line == s.bar {
		return
	}
	io.WriteString(s.w, clearLine+line)
	s.bar = line
}

// width is the terminal's width in cells, 80 when it cannot be read.
func (t *Terminal) width() int {
	if f, ok := t.state.w.(*os.File); ok {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
			return w
		}
	}
	return 80
}
