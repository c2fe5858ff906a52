package llm

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// Fuzz targets for the decoders of server replies. Whatever a server sends,
// a decoder returns either values that hold together or a failure with a
// reason; it never panics. Seeds are the protocol fixtures plus the bad
// replies tinylm's faults produce; crashers found so far are kept in
// testdata/fuzz. Run one with, e.g.,
//
//	go test ./llm -run '^$' -fuzz '^FuzzDecodeChat$' -fuzztime 30s

// seedFixture adds a fixture file as a seed.
func seedFixture(f *testing.F, name string) []byte {
	f.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.Fatal(err)
	}
	return raw
}

// badBodies are reply bodies every decoder must refuse without panicking.
var badBodies = []string{
	``, `null`, `[]`, `{}`, `<html><body>502 Bad Gateway</body></html>`, `{"choices": [{"index": 0`,
	`{"choices": null}`, `{"choices": [null]}`, `{"data": [null]}`, `{"data": [{"index": -1, "probs": [1]}]}`,
	`{"rewards": ["0.5"]}`, `{"choices": [{"logprobs": {"content": [{"logprob": NaN}]}}]}`,
}

// ids reads little-endian uint16 token ids from b.
func ids(b []byte) []int {
	out := make([]int, len(b)/2)
	for i := range out {
		out[i] = int(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return out
}

func FuzzDecodeChat(f *testing.F) {
	f.Add(seedFixture(f, "vllm/chat_completion_response.json"))
	for _, b := range badBodies {
		f.Add([]byte(b))
	}
	f.Add([]byte(`{"choices": [{"index": 1, "message": {"content": ""}, "logprobs": {"content": []}, "token_ids": [1]}]}`))
	f.Add([]byte(`{"choices": [{"index": 0, "message": {"content": "a\u00e9\n", "reasoning": null}, "logprobs": {"content": [` +
		`{"id": 5, "token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": [{"id": 6, "token": "b", "logprob": -1}]}, ` +
		`{"id": 7, "token": "\u00e9\n", "logprob": -9999.0}]}, "finish_reason": "stop"}], "prompt_token_ids": [1, 2]}`))
	f.Add([]byte(`{"choices": [{"index": 0, "message": {"content": "x", "reasoning_content": "think"}, "logprobs": {"content": [{"token": "token_id:3", "logprob": -1e-3}]}}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		reply, err := decodeChatReply(raw)
		if err != nil {
			require.NotNil(t, malformed(raw, err))
			return
		}
		// What the one-pass decoder accepts, encoding/json accepts too.
		require.True(t, json.Valid(raw), "accepted invalid JSON %q", raw)
		samples, fail := decodeSamples(reply)
		if fail != nil {
			require.NotEmpty(t, fail.reason)
			require.Nil(t, samples)
			return
		}
		require.Len(t, samples, len(reply.Choices))
		for i, s := range samples {
			require.False(t, math.IsNaN(s.LogProb) || math.IsInf(s.LogProb, 0), "sample %d log-prob %v", i, s.LogProb)
			require.LessOrEqual(t, s.LogProb, 1e-6*float64(s.Tokens)+1e-9, "sample %d", i)
			require.GreaterOrEqual(t, s.Tokens, 0)
			if s.TokenIDs != nil {
				require.Len(t, s.TokenIDs, s.Tokens, "sample %d", i)
			}
		}
	})
}

func FuzzTeacherForced(f *testing.F) {
	raw := seedFixture(f, "vllm/completion_response.json")
	var req completionRequest
	require.NoError(f, json.Unmarshal(seedFixture(f, "vllm/completion_request.json"), &req))
	prompt := make([]byte, 0, 2*len(req.Prompt))
	for _, id := range req.Prompt {
		prompt = binary.LittleEndian.AppendUint16(prompt, uint16(id))
	}
	f.Add(raw, prompt, uint8(3))
	f.Add(raw, prompt, uint8(0))
	for _, b := range badBodies {
		f.Add([]byte(b), prompt, uint8(1))
	}
	f.Fuzz(func(t *testing.T, raw, idBytes []byte, from uint8) {
		var resp completionResponse
		if err := json.Unmarshal(raw, &resp); err != nil {
			return
		}
		tokens := ids(idBytes)
		if int(from) > len(tokens) {
			return // callers score a suffix of the prompt they sent
		}
		sum, fail := resp.teacherForced(tokens, int(from))
		if fail != nil {
			require.NotEmpty(t, fail.reason)
			return
		}
		require.False(t, math.IsNaN(sum) || math.IsInf(sum, 0), "sum %v", sum)
		require.LessOrEqual(t, sum, 1e-6*float64(len(tokens))+1e-9)
	})
}

func FuzzClassifyScores(f *testing.F) {
	f.Add(seedFixture(f, "vllm/classify_response.json"), uint8(2))
	for _, b := range badBodies {
		f.Add([]byte(b), uint8(1))
	}
	f.Fuzz(func(t *testing.T, raw []byte, n uint8) {
		var resp classifyResponse
		if err := json.Unmarshal(raw, &resp); err != nil {
			return
		}
		scores, fail := resp.scores(int(n))
		if fail != nil {
			require.NotEmpty(t, fail.reason)
			return
		}
		require.Len(t, scores, int(n))
		for _, d := range resp.Data {
			require.Equal(t, d.Probs[0], scores[d.Index], "score of input %d", d.Index)
		}
	})
}

func FuzzPoolingScores(f *testing.F) {
	f.Add(seedFixture(f, "vllm/pooling_response.json"), uint8(2))
	f.Add([]byte(`{"data": [{"index": 0, "data": [[0.1], [0.2, 3]]}]}`), uint8(1))
	f.Add([]byte(`{"data": [{"index": 0, "data": [[]]}]}`), uint8(1))
	for _, b := range badBodies {
		f.Add([]byte(b), uint8(1))
	}
	f.Fuzz(func(t *testing.T, raw []byte, n uint8) {
		var resp poolingResponse
		if err := json.Unmarshal(raw, &resp); err != nil {
			return
		}
		scores, fail := resp.scores(int(n))
		if fail != nil {
			require.NotEmpty(t, fail.reason)
			return
		}
		require.Len(t, scores, int(n))
	})
}

func FuzzGetReward(f *testing.F) {
	f.Add(seedFixture(f, "openrlhf/get_reward_response.json"), uint8(2))
	for _, b := range badBodies {
		f.Add([]byte(b), uint8(1))
	}
	f.Fuzz(func(t *testing.T, raw []byte, n uint8) {
		var resp getRewardResponse
		if err := json.Unmarshal(raw, &resp); err != nil {
			return
		}
		if fail := resp.check(int(n)); fail != nil {
			require.NotEmpty(t, fail.reason)
			return
		}
		require.Len(t, resp.Rewards, int(n))
	})
}

func FuzzTokenize(f *testing.F) {
	f.Add(seedFixture(f, "vllm/tokenize_response.json"))
	for _, b := range badBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var resp tokenizeResponse
		if err := json.Unmarshal(raw, &resp); err != nil {
			return
		}
		if fail := resp.check(); fail != nil {
			require.NotEmpty(t, fail.reason)
			return
		}
		require.NotNil(t, resp.Tokens)
	})
}

// FuzzErrorBody covers what the transport makes of any body: the reason of
// an error status and the description of a body that does not decode.
func FuzzErrorBody(f *testing.F) {
	f.Add(seedFixture(f, "vllm/error_response.json"))
	f.Add(seedFixture(f, "vllm/error_response_flat.json"))
	f.Add([]byte(`{"detail": [{"loc": ["body"], "msg": "field required"}]}`))
	f.Add([]byte(`{"error": ""}`))
	for _, b := range badBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		require.NotEmpty(t, errorReason(raw), "an error status always gets a reason")
		var v map[string]any
		if err := json.Unmarshal(raw, &v); err != nil {
			d := describeDecodeError(raw, err)
			require.NotEmpty(t, d)
			if utf8.Valid(raw) {
				require.True(t, utf8.ValidString(d), "description %q", d)
			}
		}
	})
}

func FuzzJudgeScore(f *testing.F) {
	for _, s := range []string{"7", "Grade: 8/10", "score is **9**", "I'd say 11, no, 4 out of 10", "none", "10.5", "0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		v, ok := parseJudgeScore(reply)
		if !ok {
			return
		}
		require.GreaterOrEqual(t, v, 1.0)
		require.LessOrEqual(t, v, 10.0)
	})
}
