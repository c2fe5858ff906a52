package orchestrator_test

import (
	"fmt"
	"testing"
	"time"
)

// benchLoop runs one iteration over prompts with n = 4 against a tinylm
// process, with the given workers, and reports prompts per second from the
// orchestrator's start to its exit (loading, generating, scoring,
// selecting and exporting included).
func benchLoop(b *testing.B, prompts, workers, concurrency, maxConcurrency int, lmArgs ...string) float64 {
	l := startLoop(b, loopOptions{prompts: prompts, samples: 4, ackWait: "60s", workerCon: concurrency,
		maxConcurrency: maxConcurrency, single: true, lmArgs: lmArgs})
	for i := range workers {
		l.worker(b, fmt.Sprintf("worker-%d", i+1))
	}
	start := time.Now()
	run := l.orchestrator(b, "orchestrator")
	if err := run.Wait(10 * time.Minute); err != nil {
		b.Fatalf("run: %v\n%s", err, run.Tail(20))
	}
	elapsed := time.Since(start)
	if done := l.count(b, `SELECT count(*) FROM tasks WHERE status = 'done'`); done != int64(prompts) {
		b.Fatalf("%d of %d tasks done", done, prompts)
	}
	return float64(prompts) / elapsed.Seconds()
}

// BenchmarkLoopThroughput measures end-to-end prompts per second with no
// added latency (target ≥ 300/s). Run with -benchtime=1x.
func BenchmarkLoopThroughput(b *testing.B) {
	for range b.N {
		b.ReportMetric(benchLoop(b, 3000, 2, 32, 32), "prompts/s")
	}
}

// BenchmarkLoopLatency50ms measures the share of the ideal throughput
// reached when every model request takes 50 ms and the policy endpoint
// allows 64 concurrent requests (one worker, 128 tasks in flight so both
// the policy and the reward endpoint can keep 64 requests busy). Ideal:
// 64 / 50 ms = 1280 prompts/s, since each prompt needs one policy request
// (n = 4 in one call). Target ≥ 90%. Run with -benchtime=1x.
func BenchmarkLoopLatency50ms(b *testing.B) {
	const ideal = 64 / 0.050
	for range b.N {
		rate := benchLoop(b, 6000, 1, 128, 64, "--latency", "50ms")
		b.ReportMetric(rate, "prompts/s")
		b.ReportMetric(100*rate/ideal, "%ideal")
	}
}
