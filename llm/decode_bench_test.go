package llm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchReply is a vLLM chat-completions reply of n choices of tokens
// tokens each, as vLLM writes it with logprobs and return_token_ids: every
// log-prob entry carries its token, its log-prob (a float32 printed at
// float64 precision), its UTF-8 bytes and an empty top_logprobs list.
func benchReply(n, tokens int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{" the", " garden", " water", " early", " morning", ",", " and", " mulch", " keeps", " soil", " cool", "."}
	var b strings.Builder
	b.WriteString(`{"id":"chatcmpl-bench","object":"chat.completion","created":1760000000,"model":"Qwen/Qwen2.5-0.5B-Instruct","choices":[`)
	for c := range n {
		if c > 0 {
			b.WriteByte(',')
		}
		var content strings.Builder
		toks := make([]string, tokens)
		ids := make([]int, tokens)
		for i := range toks {
			k := rng.IntN(len(words))
			toks[i], ids[i] = words[k], 1000+k
			content.WriteString(toks[i])
		}
		fmt.Fprintf(&b, `{"index":%d,"message":{"role":"assistant","content":%q,"refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[],"reasoning":null},"logprobs":{"content":[`, c, content.String())
		for i, tok := range toks {
			if i > 0 {
				b.WriteByte(',')
			}
			lp := float64(float32(-rng.ExpFloat64()))
			fmt.Fprintf(&b, `{"token":%q,"logprob":%s,"bytes":[`, tok, strconv.FormatFloat(lp, 'g', -1, 64))
			for j := range len(tok) {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strconv.Itoa(int(tok[j])))
			}
			b.WriteString(`],"top_logprobs":[]}`)
		}
		b.WriteString(`]},"finish_reason":"length","stop_reason":null,"token_ids":[`)
		for i, id := range ids {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(id))
		}
		b.WriteString(`]}`)
	}
	fmt.Fprintf(&b, `],"service_tier":null,"system_fingerprint":null,"usage":{"prompt_tokens":24,"total_tokens":%d,"completion_tokens":%d,"prompt_tokens_details":null},"prompt_logprobs":null,"prompt_token_ids":null,"kv_transfer_params":null}`, 24+n*tokens, n*tokens)
	return []byte(b.String())
}

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
	raw := benchReply(5, 512)
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
	raw := benchReply(5, 512)
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
