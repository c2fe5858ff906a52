package llm

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/llm/llmtest"
)

// chatWithEntries is a one-choice reply whose log-prob entries are these.
func chatWithEntries(entries string) []byte {
	return []byte(`{"choices":[{"index":0,"message":{"role":"assistant","content":"x"},"logprobs":{"content":[` +
		entries + `]},"finish_reason":"stop"}]}`)
}

// decodeBothWays decodes raw with the fast path for vLLM's log-prob
// entries and without it; the two must agree on everything.
func decodeBothWays(t *testing.T, raw []byte) (*chatReply, error) {
	t.Helper()
	fast, ferr := decodeChatReply(raw)
	generic, gerr := scanChatReply(&replyScanner{b: raw, generic: true})
	require.Equal(t, gerr, ferr, "errors of the generic and the fast path")
	require.Equal(t, generic, fast)
	return fast, ferr
}

// Entries as vLLM writes them take the fast path, whose values are worked
// out here by hand; every other shape falls back to the general reader
// and gets the same result as with no fast path at all.
func TestFastEntryAgreesWithGeneric(t *testing.T) {
	t.Parallel()
	const vllm = `{"token":" the","logprob":-0.25,"bytes":[32,116,104,101],"top_logprobs":[]}`
	d := replyScanner{b: []byte(vllm)}
	lp, ok := d.fastEntry()
	require.True(t, ok, "vLLM's shape takes the fast path")
	require.NoError(t, d.err)
	require.Equal(t, -0.25, lp)
	require.Equal(t, len(vllm), d.i, "the whole entry read")

	for _, tc := range []struct {
		name    string
		entries string
		fast    bool      // the first entry takes the fast path
		lps     []float64 // nil: the reply is refused
		ids     []int
	}{
		{name: "vLLM", entries: vllm + "," + vllm, fast: true, lps: []float64{-0.25, -0.25}},
		{name: "exponent and zeros", entries: `{"token":"a","logprob":-1e-05,"bytes":[0],"top_logprobs":[]},{"token":"b","logprob":-0.0,"bytes":[98],"top_logprobs":[]},{"token":"c","logprob":0,"bytes":[99],"top_logprobs":[]}`,
			fast: true, lps: []float64{-0.00001, 0, 0}},
		{name: "no bytes", entries: `{"token":"","logprob":-2.5,"bytes":[],"top_logprobs":[]}`, fast: true, lps: []float64{-2.5}},
		{name: "escaped token", entries: `{"token":"\"","logprob":-1.5,"bytes":[34],"top_logprobs":[]}`, lps: []float64{-1.5}},
		{name: "unicode escape", entries: `{"token":"\u00e9","logprob":-0.5,"bytes":[195,169],"top_logprobs":[]}`, lps: []float64{-0.5}},
		{name: "token id form", entries: `{"token":"token_id:42","logprob":-0.5,"bytes":[],"top_logprobs":[]},{"token":"token_id:7","logprob":-1,"bytes":[],"top_logprobs":[]}`,
			lps: []float64{-0.5, -1}, ids: []int{42, 7}},
		{name: "top log-probs", entries: `{"token":"a","logprob":-0.5,"bytes":[97],"top_logprobs":[{"token":"b","logprob":-1.0,"bytes":[98]}]}`, lps: []float64{-0.5}},
		{name: "spaces", entries: `{"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": []}`, lps: []float64{-0.5}},
		{name: "space inside bytes", entries: `{"token":"a","logprob":-0.5,"bytes":[97, 98],"top_logprobs":[]}`, lps: []float64{-0.5}},
		{name: "llama.cpp ids", entries: `{"id":5,"token":"a","logprob":-0.5,"bytes":[97],"top_logprobs":[]},{"id":6,"token":"b","logprob":-0.75,"bytes":[98],"top_logprobs":[]}`,
			lps: []float64{-0.5, -0.75}, ids: []int{5, 6}},
		{name: "mixed with and without ids", entries: vllm + `,{"id":6,"token":"b","logprob":-0.75,"bytes":[98],"top_logprobs":[]}`, fast: true, lps: []float64{-0.25, -0.75}},
		{name: "other key order", entries: `{"logprob":-0.5,"token":"a","bytes":[97],"top_logprobs":[]}`, lps: []float64{-0.5}},
		{name: "negative byte", entries: `{"token":"a","logprob":-0.5,"bytes":[-1],"top_logprobs":[]}`, lps: []float64{-0.5}},
		{name: "null bytes", entries: `{"token":"a","logprob":-0.5,"bytes":null,"top_logprobs":[]}`, lps: []float64{-0.5}},
		{name: "leading zero in bytes", entries: `{"token":"a","logprob":-0.5,"bytes":[097],"top_logprobs":[]}`},
		{name: "trailing comma in bytes", entries: `{"token":"a","logprob":-0.5,"bytes":[97,],"top_logprobs":[]}`},
		{name: "bad log-prob", entries: `{"token":"a","logprob":-.5,"bytes":[97],"top_logprobs":[]}`, fast: true},
		{name: "log-prob out of range", entries: `{"token":"a","logprob":-1e999,"bytes":[97],"top_logprobs":[]}`, fast: true},
		{name: "string log-prob", entries: `{"token":"a","logprob":"-0.5","bytes":[97],"top_logprobs":[]}`, fast: true},
		{name: "no log-prob", entries: `{"token":"a","bytes":[97],"top_logprobs":[]}`},
		{name: "control character in token", entries: "{\"token\":\"a\tb\",\"logprob\":-0.5,\"bytes\":[97],\"top_logprobs\":[]}"},
		{name: "cut off in bytes", entries: `{"token":"a","logprob":-0.5,"bytes":[97`},
		{name: "cut off in token", entries: `{"token":"a`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw := chatWithEntries(tc.entries)
			first := []byte(`"logprobs":{"content":[`)
			d := replyScanner{b: raw, i: bytes.Index(raw, first) + len(first)}
			_, ok := d.fastEntry()
			require.Equal(t, tc.fast, ok, "fast path taken")
			reply, err := decodeBothWays(t, raw)
			if tc.lps == nil {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.lps, reply.Choices[0].LogProbs)
			require.Equal(t, tc.ids, reply.Choices[0].TokenIDs)
		})
	}
}

func FuzzDecodeChatFastAndGeneric(f *testing.F) {
	f.Add(llmtest.ChatReply(2, 3))
	f.Add(seedFixture(f, "vllm/chat_completion_response.json"))
	f.Add(chatWithEntries(`{"token":"token_id:42","logprob":-0.5,"bytes":[],"top_logprobs":[]}`))
	f.Add(chatWithEntries(`{"token":"a","logprob":-0.5,"bytes":[97, 98],"top_logprobs":[]},{"id":6,"token":"b","logprob":-0.75,"bytes":[98],"top_logprobs":[]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		decodeBothWays(t, raw)
	})
}

// A sample keeps its text after the next reply is read into the buffer
// its own was read into (reply bodies are pooled).
func TestSamplesOutliveTheNextReply(t *testing.T) {
	t.Parallel()
	replies := [2][]byte{
		[]byte(`{"choices":[{"index":0,"message":{"content":"first reply"},"logprobs":{"content":[{"token":"first","logprob":-0.5,"bytes":[102],"top_logprobs":[]},{"token":" reply","logprob":-0.25,"bytes":[32],"top_logprobs":[]}]},"finish_reason":"stop","token_ids":[11,12]}]}`),
		[]byte(`{"choices":[{"index":0,"message":{"content":"SECOND REPLY"},"logprobs":{"content":[{"token":"SECOND","logprob":-1,"bytes":[83],"top_logprobs":[]},{"token":" REPLY","logprob":-2,"bytes":[32],"top_logprobs":[]}]},"finish_reason":"length","token_ids":[21,22]}]}`),
	}
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := replies[(n.Add(1)-1)%2]
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	p, err := NewPolicy(Endpoint{Name: "policy", BaseURL: srv.URL + "/v1", Model: "m"})
	require.NoError(t, err)
	sp := SampleParams{N: 1, Temperature: 1, Seed: seedPtr(1)}
	var first []Sample
	for i := range 20 {
		got, err := p.Sample(context.Background(), questionPrompt, sp)
		require.NoError(t, err)
		if i == 0 {
			first = got
		}
	}
	require.Equal(t, []Sample{{Content: "first reply", Tokens: 2, LogProb: -0.75, FinishReason: "stop", TokenIDs: []int{11, 12}}}, first,
		fmt.Sprintf("after %d more replies", 19))
}
