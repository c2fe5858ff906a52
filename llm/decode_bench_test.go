package llm

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/selfplay/selfplay/llm/llmtest"
)

// cpuTime is the process's user plus system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDecodeChatReply decodes a 5 × 512-token vLLM reply with
// log-probs and token ids into samples: the decoding a worker does for one
// prompt. cpu-µs/prompt is the process's CPU time per decode (garbage
// collection included), steadier than ns/op on a shared machine.
func BenchmarkDecodeChatReply(b *testing.B) {
	raw := llmtest.ChatReply(5, 512)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		samples, f := decodeReplyForBench(raw)
		if f != nil || len(samples) != 5 || len(samples[4].TokenIDs) != 512 {
			b.Fatalf("decode: %v, %d samples", f, len(samples))
		}
	}
	b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(b.N), "cpu-µs/prompt")
}

// BenchmarkSampleCPU is one Policy.Sample call per prompt for 5 samples of
// 512 tokens, the server (an HTTP server in this process that only writes
// the canned reply) answering at once; cpu-µs/prompt is the whole
// process's CPU time per call, the client's share plus the small cost of
// writing the reply.
func BenchmarkSampleCPU(b *testing.B) {
	raw := llmtest.ChatReply(5, 512)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
		_, _ = w.Write(raw)
	}))
	b.Cleanup(srv.Close)
	p, err := NewPolicy(Endpoint{Name: "policy", BaseURL: srv.URL + "/v1", Model: "Qwen/Qwen2.5-0.5B-Instruct"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	sp := SampleParams{N: 5, Temperature: 1, MaxTokens: 512, Seed: seedPtr(1)}
	if _, err := p.Sample(ctx, questionPrompt, sp); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		samples, err := p.Sample(ctx, questionPrompt, sp)
		if err != nil || len(samples) != 5 {
			b.Fatalf("sample: %v", err)
		}
	}
	b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(b.N), "cpu-µs/prompt")
}
