package orchestrator_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
)

var scalePrompts = flag.Int("scale-prompts", 200000, "prompts in BenchmarkIterationScale's iteration")

// scaleSample is one look at a running iteration.
type scaleSample struct {
	done       float64 // generate tasks done, as the scrape reports them
	scrape     time.Duration
	orchRSS    float64 // MB
	orchHeap   float64 // MB in use, as the orchestrator's Go runtime reports it
	workerRSS  float64 // MB, the largest of the workers
	workerHeap float64
}

// BenchmarkIterationScale runs one iteration of -scale-prompts prompts
// (default 200,000; n = 4, two workers, no added latency) and samples every
// two seconds the time of a Prometheus scrape of the orchestrator (its run
// collector reads the database), the orchestrator's and the workers'
// resident memory and Go heap in use. It reports them for the first 10%,
// the middle 10% and the last 10% of the generate tasks (median scrape
// time, largest memory of the window's samples): a cost that grows with
// the run shows as a rising row. It also times, at the end, the run collector's former query
// (a GROUP BY over every task of the run) against store.RunTaskCounts. Run
// with -benchtime=1x; it takes minutes:
//
//	go test ./orchestrator -run X -bench IterationScale -benchtime 1x -timeout 2h [-scale-prompts 200000]
func BenchmarkIterationScale(b *testing.B) {
	for range b.N {
		benchScale(b, *scalePrompts)
	}
}

func benchScale(b *testing.B, prompts int) {
	l := startLoop(b, loopOptions{prompts: prompts, samples: 4, ackWait: "60s", workerCon: 32, single: true})
	workers := []*selfplaytest.Proc{l.worker(b, "worker-1"), l.worker(b, "worker-2")}
	metrics := selfplaytest.FreeAddr(b)
	start := time.Now()
	run := selfplaytest.Start(b, "orchestrator", nil, "run", "-c", l.cfgPath, "--metrics-addr", metrics)

	var (
		mu      sync.Mutex
		samples []scaleSample
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			s, ok := sampleScale(run, workers, l.workers, metrics)
			if ok {
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
			}
		}
	}()
	if err := run.Wait(2 * time.Hour); err != nil {
		b.Fatalf("run: %v\n%s", err, run.Tail(20))
	}
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	if done := l.count(b, `SELECT count(*) FROM tasks WHERE status = 'done'`); done != int64(prompts) {
		b.Fatalf("%d of %d tasks done", done, prompts)
	}
	b.ReportMetric(float64(prompts)/elapsed.Seconds(), "prompts/s")

	var gen []scaleSample
	for _, s := range samples {
		if s.done > 0 {
			gen = append(gen, s)
		}
	}
	if len(gen) < 3 {
		b.Fatalf("only %d samples while generating", len(gen))
	}
	// Each point is a window of the generating stage: the median scrape
	// time and the largest memory figures of its samples.
	window := func(lo, hi float64) (scaleSample, int) {
		var in []scaleSample
		for _, s := range gen {
			if f := s.done / float64(prompts); f >= lo && f < hi {
				in = append(in, s)
			}
		}
		if len(in) == 0 {
			return scaleSample{}, 0
		}
		var w scaleSample
		scrapes := make([]time.Duration, len(in))
		for i, s := range in {
			scrapes[i] = s.scrape
			w.done = max(w.done, s.done)
			w.orchRSS, w.orchHeap = max(w.orchRSS, s.orchRSS), max(w.orchHeap, s.orchHeap)
			w.workerRSS, w.workerHeap = max(w.workerRSS, s.workerRSS), max(w.workerHeap, s.workerHeap)
		}
		slices.Sort(scrapes)
		w.scrape = scrapes[len(scrapes)/2]
		return w, len(in)
	}
	b.Logf("%d prompts in %s, %d samples while generating", prompts, elapsed.Round(time.Second), len(gen))
	b.Logf("%-6s %8s %9s %10s %11s %12s %13s %14s", "point", "samples", "done<=", "scrape_ms", "orch_rss_MB", "orch_heap_MB", "worker_rss_MB", "worker_heap_MB")
	for _, p := range []struct {
		name   string
		lo, hi float64
	}{{"start", 0, 0.1}, {"middle", 0.45, 0.55}, {"end", 0.9, 1}} {
		s, n := window(p.lo, p.hi)
		b.Logf("%-6s %8d %9.0f %10.1f %11.1f %12.1f %13.1f %14.1f", p.name, n, s.done, ms(s.scrape), s.orchRSS, s.orchHeap, s.workerRSS, s.workerHeap)
		b.ReportMetric(ms(s.scrape), "scrape_ms_"+p.name)
		b.ReportMetric(s.orchRSS, "orch_rss_MB_"+p.name)
		b.ReportMetric(s.workerRSS, "worker_rss_MB_"+p.name)
	}

	// The collector's former query against the counts it reads now, on the
	// finished iteration's tasks: medians of five.
	ctx := context.Background()
	old := medianOf(5, func() {
		rows, err := l.pool.Query(ctx, `
			SELECT i.name, t.kind, t.status,
			       CASE WHEN t.status = 'done' THEN coalesce(t.outcome, 'done') ELSE t.status END,
			       count(*)
			FROM tasks t JOIN iterations i ON i.id = t.iteration_id JOIN runs r ON r.id = i.run_id
			WHERE r.name = $1
			GROUP BY 1, 2, 3, 4`, "e2e")
		if err != nil {
			b.Fatal(err)
		}
		rows.Close()
	})
	counts := medianOf(5, func() {
		if _, err := store.RunTaskCounts(ctx, l.pool, "e2e"); err != nil {
			b.Fatal(err)
		}
	})
	b.Logf("task counts at the end: GROUP BY over all tasks %.1f ms, store.RunTaskCounts %.2f ms (medians of 5)", ms(old), ms(counts))
	b.ReportMetric(ms(old), "groupby_ms")
	b.ReportMetric(ms(counts), "counts_ms")
}

func sampleScale(run *selfplaytest.Proc, workers []*selfplaytest.Proc, wp []workerProc, metrics string) (scaleSample, bool) {
	var s scaleSample
	t0 := time.Now()
	body, err := scrapeText("http://" + metrics + "/metrics")
	if err != nil {
		return s, false
	}
	s.scrape = time.Since(t0)
	for _, line := range body {
		if strings.HasPrefix(line, "selfplay_run_tasks{") && strings.Contains(line, `kind="generate"`) && strings.Contains(line, `status="done"`) {
			s.done = lastField(line)
		}
		if strings.HasPrefix(line, "go_memstats_heap_inuse_bytes ") {
			s.orchHeap = lastField(line) / 1e6
		}
	}
	s.orchRSS = rssMB(run.Cmd.Process.Pid)
	for i, w := range workers {
		s.workerRSS = max(s.workerRSS, rssMB(w.Cmd.Process.Pid))
		if lines, err := scrapeText("http://" + wp[i].metrics + "/metrics"); err == nil {
			for _, line := range lines {
				if strings.HasPrefix(line, "go_memstats_heap_inuse_bytes ") {
					s.workerHeap = max(s.workerHeap, lastField(line)/1e6)
				}
			}
		}
	}
	return s, true
}

func scrapeText(url string) ([]string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, sc.Err()
}

func lastField(line string) float64 {
	v, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
	return v
}

// rssMB reads a process's resident set size from /proc.
func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func medianOf(n int, f func()) time.Duration {
	ds := make([]time.Duration, n)
	for i := range ds {
		t0 := time.Now()
		f()
		ds[i] = time.Since(t0)
	}
	slices.Sort(ds)
	return ds[n/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
