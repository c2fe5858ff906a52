package tinylm_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// Each bad reply is compared with the correct reply a fault-free server
// gives to the same seeded request.

var (
	badChat = map[string]any{"model": "tiny-0", "messages": userMsg("Where do rivers start? BADREPLY"), "n": 3,
		"logprobs": true, "seed": 9, "temperature": 0.8, "max_tokens": 20, "return_token_ids": true}
	badCompletion = map[string]any{"model": "tiny-0", "prompt": "rivers start in the hills BADREPLY", "max_tokens": 1,
		"prompt_logprobs": 0, "logprobs": 1, "temperature": 0}
	badClassify = map[string]any{"model": "reward", "input": []string{"a short answer BADREPLY", "a longer, kinder answer BADREPLY"}, "use_activation": false}
)

// generic decodes a JSON object loosely, numbers kept as written.
func generic(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	require.NoError(t, dec.Decode(&m), "body: %s", raw)
	return m
}

func TestBadReplyKinds(t *testing.T) {
	t.Parallel()
	good := tinylmtest.Start(t, tinylm.ServerOptions{})
	tests := []struct {
		name  string
		kind  string
		path  string
		body  any
		check func(t *testing.T, hdr http.Header, raw, want []byte)
	}{
		{
			name: "no choices", kind: tinylm.BadReplyNoChoices, path: "/v1/chat/completions", body: badChat,
			check: func(t *testing.T, _ http.Header, raw, want []byte) {
				require.Len(t, generic(t, want)["choices"], 3)
				require.Empty(t, generic(t, raw)["choices"])
			},
		},
		{
			name: "fewer choices than asked", kind: tinylm.BadReplyFewerChoices, path: "/v1/chat/completions", body: badChat,
			check: func(t *testing.T, _ http.Header, raw, want []byte) {
				all := generic(t, want)["choices"].([]any)
				require.Equal(t, all[:len(all)-1], generic(t, raw)["choices"])
			},
		},
		{
			name: "no log-probs in chat", kind: tinylm.BadReplyNoLogprobs, path: "/v1/chat/completions", body: badChat,
			check: func(t *testing.T, _ http.Header, raw, want []byte) {
				wantChoices := generic(t, want)["choices"].([]any)
				got := generic(t, raw)["choices"].([]any)
				require.Len(t, got, len(wantChoices))
				for i, c := range got {
					require.NotNil(t, wantChoices[i].(map[string]any)["logprobs"])
					require.Nil(t, c.(map[string]any)["logprobs"], "choice %d", i)
					require.Equal(t, wantChoices[i].(map[string]any)["message"], c.(map[string]any)["message"])
				}
			},
		},
		{
			name: "no prompt log-probs in completions", kind: tinylm.BadReplyNoLogprobs, path: "/v1/completions", body: badCompletion,
			check: func(t *testing.T, _ http.Header, raw, want []byte) {
				require.Contains(t, generic(t, want)["choices"].([]any)[0], "prompt_logprobs")
				c := generic(t, raw)["choices"].([]any)[0].(map[string]any)
				require.NotContains(t, c, "prompt_logprobs")
				require.Nil(t, c["logprobs"])
			},
		},
		{
			name: "NaN log-probs", kind: tinylm.BadReplyNaNLogprobs, path: "/v1/chat/completions", body: badChat,
			check: func(t *testing.T, _ http.Header, raw, want []byte) {
				require.False(t, json.Valid(raw), "NaN is not JSON")
				n := strings.Count(string(want), `"logprob":`)
				require.Positive(t, n)
				require.Equal(t, n, strings.Count(string(raw), `"logprob":NaN`), "every log-prob is NaN")
			},
		},
		{
			name: "infinite log-probs in completions", kind: tinylm.BadReplyInfLogprobs, path: "/v1/completions", body: badCompletion,
			check: func(t *testing.T, _ http.Header, raw, want []byte) {
				// vLLM clamps -inf to -9999.0: the body stays valid JSON.
				require.True(t, json.Valid(raw))
				require.Equal(t, strings.Count(string(want), `"logprob":`), strings.Count(string(raw), `"logprob":-9999.0`))
				require.Contains(t, string(raw), `"token_logprobs":[-9999.0`)
			},
		},
		{
			name: "rewards as strings", kind: tinylm.BadReplyStringReward, path: "/classify", body: badClassify,
			check: func(t *testing.T, _ http.Header, raw, want []byte) {
				wantData := generic(t, want)["data"].([]any)
				got := generic(t, raw)["data"].([]any)
				require.Len(t, got, 2)
				for i := range got {
					w := wantData[i].(map[string]any)["probs"].([]any)[0].(json.Number)
					require.Equal(t, []any{w.String()}, got[i].(map[string]any)["probs"])
				}
			},
		},
		{
			name: "one reward missing", kind: tinylm.BadReplyMissingReward, path: "/classify", body: badClassify,
			check: func(t *testing.T, _ http.Header, raw, want []byte) {
				require.Equal(t, generic(t, want)["data"].([]any)[:1], generic(t, raw)["data"])
			},
		},
		{
			name: "one reward too many", kind: tinylm.BadReplyExtraReward, path: "/classify", body: badClassify,
			check: func(t *testing.T, _ http.Header, raw, want []byte) {
				got := generic(t, raw)["data"].([]any)
				require.Len(t, got, 3)
				require.Equal(t, generic(t, want)["data"], got[:2])
				require.Equal(t, json.Number("2"), got[2].(map[string]any)["index"])
			},
		},
		{
			name: "HTML error page", kind: tinylm.BadReplyHTML, path: "/tokenize", body: map[string]any{"prompt": "hi BADREPLY"},
			check: func(t *testing.T, hdr http.Header, raw, _ []byte) {
				require.True(t, strings.HasPrefix(hdr.Get("Content-Type"), "text/html"))
				require.Contains(t, string(raw), "<html>")
			},
		},
		{
			name: "body cut off mid-JSON", kind: tinylm.BadReplyTruncated, path: "/classify", body: badClassify,
			check: func(t *testing.T, hdr http.Header, raw, want []byte) {
				require.False(t, json.Valid(raw))
				require.Less(t, len(raw), len(want))
				require.Equal(t, byte('{'), raw[0])
				require.Equal(t, hdr.Get("Content-Length"), strings.TrimSpace(hdr.Get("Content-Length")))
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bad := tinylmtest.Start(t, tinylm.ServerOptions{Faults: tinylm.Faults{BadReply: tc.kind}})
			status, hdr, raw := call(t, bad, tc.path, tc.body)
			require.Equal(t, http.StatusOK, status, "a bad reply is a 200: %s", raw)
			require.Equal(t, "bad_reply:"+tc.kind, hdr.Get(tinylm.FaultHeader))
			wantStatus, _, want := call(t, good, tc.path, tc.body)
			require.Equal(t, http.StatusOK, wantStatus, "%s", want)
			tc.check(t, hdr, raw, want)
		})
	}
}

func TestBadReplyOnlyWhereItApplies(t *testing.T) {
	t.Parallel()
	bad := tinylmtest.Start(t, tinylm.ServerOptions{Faults: tinylm.Faults{BadReply: tinylm.BadReplyNoChoices, BadReplyMatch: "BADREPLY"}})
	good := tinylmtest.Start(t, tinylm.ServerOptions{})

	// A request without the marker is served normally.
	plain := map[string]any{"model": "tiny-0", "messages": userMsg("Where do rivers start?"), "n": 2, "seed": 3, "max_tokens": 10}
	status, hdr, raw := call(t, bad, "/v1/chat/completions", plain)
	require.Equal(t, http.StatusOK, status)
	require.Empty(t, hdr.Get(tinylm.FaultHeader))
	_, _, want := call(t, good, "/v1/chat/completions", plain)
	require.Equal(t, generic(t, want)["choices"], generic(t, raw)["choices"])

	// A route the kind does not concern is served normally, marker or not.
	status, hdr, raw = call(t, bad, "/classify", badClassify)
	require.Equal(t, http.StatusOK, status)
	require.Empty(t, hdr.Get(tinylm.FaultHeader))
	require.Len(t, generic(t, raw)["data"], 2)

	// Error replies stay errors: an unknown model is still a 404.
	status, hdr, _ = call(t, bad, "/v1/chat/completions", map[string]any{"model": "nope", "messages": userMsg("BADREPLY")})
	require.Equal(t, http.StatusNotFound, status)
	require.Empty(t, hdr.Get(tinylm.FaultHeader))
}

func TestBadReplyOptionsValidated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		faults tinylm.Faults
		want   string
	}{
		{"unknown kind", tinylm.Faults{BadReply: "sideways"}, "no_choices, fewer_choices"},
		{"match without kind", tinylm.Faults{BadReplyMatch: "X"}, "without a bad reply kind"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tinylm.NewServer(tinylm.ServerOptions{Faults: tc.faults})
			require.ErrorContains(t, err, tc.want)
		})
	}
}
