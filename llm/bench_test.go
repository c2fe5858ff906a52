package llm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

const (
	benchConcurrency = 32
	benchLatency     = 50 * time.Millisecond
	// benchIdeal is benchConcurrency requests per benchLatency.
	benchIdeal = float64(benchConcurrency) / 0.050
)

// BenchmarkPolicyThroughput drives one Policy client with MaxConcurrency 32
// against tinylm answering every request after a fixed 50 ms (ResponseTime:
// the server's own compute inside the 50 ms, as on a GPU server). The ideal is
// 32 / 50 ms = 640 requests/s; the client layer (limiter, go-openai, JSON,
// connection reuse) should reach at least 95% of it. Reported as req/s and
// %ideal. Run with -benchtime=3000x for a steady figure; compare with
// BenchmarkRawHTTPThroughput on a busy machine.
func BenchmarkPolicyThroughput(b *testing.B) {
	base := tinylmtest.Start(b, tinylm.ServerOptions{Faults: tinylm.Faults{ResponseTime: benchLatency}})
	p, err := NewPolicy(Endpoint{Name: "policy", BaseURL: base + "/v1", Model: tinyModel, MaxConcurrency: benchConcurrency})
	if err != nil {
		b.Fatal(err)
	}
	// Short samples without top-p keep the server's own work small, so the
	// figure measures the client layer.
	sp := SampleParams{N: 1, Temperature: 1, MaxTokens: 4, Seed: seedPtr(1)}
	driveThroughput(b, func(ctx context.Context) error {
		_, err := p.Sample(ctx, questionPrompt, sp)
		return err
	})
}

// BenchmarkRawHTTPThroughput is the same load sent with bare net/http and
// a 32-slot semaphore: the ceiling the machine and tinylm allow, against
// which the client layer's overhead shows.
func BenchmarkRawHTTPThroughput(b *testing.B) {
	base := tinylmtest.Start(b, tinylm.ServerOptions{Faults: tinylm.Faults{ResponseTime: benchLatency}})
	hc := &http.Client{Transport: newHTTPTransport(benchConcurrency)}
	body := []byte(`{"model":"tiny-0","messages":[{"role":"user","content":"how do i keep my garden healthy in summer ?"}],` +
		`"max_tokens":4,"logprobs":true,"temperature":1,"seed":1}`)
	sem := make(chan struct{}, benchConcurrency)
	driveThroughput(b, func(ctx context.Context) error {
		sem <- struct{}{}
		defer func() { <-sem }()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// driveThroughput warms the connections, then runs b.N calls from twice as
// many goroutines as slots and reports req/s and %ideal.
func driveThroughput(b *testing.B, call func(context.Context) error) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for range benchConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := call(ctx); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()

	var next, failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for range 2 * benchConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if call(ctx) != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d requests failed", n)
	}
	rps := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rps, "req/s")
	b.ReportMetric(100*rps/benchIdeal, "%ideal")
}
