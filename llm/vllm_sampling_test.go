package llm

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
)

// The sampler sends neutral top_k, min_p and penalties, so a server applies
// neither the model's generation_config nor its own defaults (vLLM:
// vllm/entrypoints/openai/chat_completion/protocol.py to_sampling_params,
// "Priority: user -> server default -> OpenAI default"); a schedule's
// values travel as set. tinylm accepts the neutral values and refuses
// others it does not implement, which shows what arrived.
func TestSamplerSendsSamplingKnobs(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{})
	p, err := NewPolicy(b.endpoint("policy"), b.opts()...)
	require.NoError(t, err)
	ctx := context.Background()

	samples, err := p.Sample(ctx, questionPrompt, defaultSampling(2, 1))
	require.NoError(t, err)
	require.Len(t, samples, 2)

	for _, tc := range []struct {
		name  string
		edit  func(*SampleParams)
		param string
	}{
		{"top_k", func(sp *SampleParams) { sp.TopK = 20 }, "top_k"},
		{"min_p", func(sp *SampleParams) { sp.MinP = 0.05 }, "min_p"},
		{"repetition_penalty", func(sp *SampleParams) { sp.RepetitionPenalty = 1.05 }, "repetition_penalty"},
		{"presence_penalty", func(sp *SampleParams) { sp.PresencePenalty = 0.5 }, "presence_penalty"},
		{"frequency_penalty", func(sp *SampleParams) { sp.FrequencyPenalty = -0.5 }, "frequency_penalty"},
	} {
		sp := defaultSampling(2, 1)
		tc.edit(&sp)
		_, err := p.Sample(ctx, questionPrompt, sp)
		var e *Error
		require.True(t, errors.As(err, &e), "%s: %v", tc.name, err)
		require.Equal(t, 400, e.Status, tc.name)
		require.Contains(t, e.Reason, "tinylm does not implement "+tc.param)
	}
}

// The sampler refuses before sending what vLLM would refuse or change
// (vllm/sampling_params.py): a temperature above 2, greedy sampling with
// n > 1, and a temperature vLLM would raise to 0.01.
func TestSamplerRefusesWhatVLLMRefuses(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{})
	p, err := NewPolicy(b.endpoint("policy"), b.opts()...)
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		sp     SampleParams
		reason string
	}{
		{"above 2", SampleParams{Model: tinyModel, N: 2, Temperature: 2.5}, "temperature 2.5 is above 2"},
		{"greedy n 2", SampleParams{Model: tinyModel, N: 2, Temperature: 0}, "for which vLLM requires n = 1"},
		{"raised by vLLM", SampleParams{Model: tinyModel, N: 2, Temperature: 0.001}, "which vLLM raises to 0.01"},
		{"top_k -2", SampleParams{Model: tinyModel, N: 2, Temperature: 1, TopK: -2}, "top_k -2"},
	} {
		_, err := p.Sample(context.Background(), questionPrompt, tc.sp)
		require.ErrorContains(t, err, tc.reason, tc.name)
		require.True(t, IsPermanent(err))
	}
	require.Zero(t, b.requests.Load(), "nothing was sent")

	// Greedy with n = 1 and temperature 2 are what vLLM accepts.
	for _, temp := range []float64{0, 2} {
		_, err := p.Sample(context.Background(), questionPrompt, SampleParams{Model: tinyModel, N: 1, Temperature: temp, MaxTokens: 8, Seed: seedPtr(1)})
		require.NoError(t, err, "temperature %v", temp)
	}
}

// The length cap holds: the sampler sends max_completion_tokens (vLLM's
// current name) and the deprecated max_tokens; tinylm, like vLLM
// (chat_completion/protocol.py), reads the former first.
func TestSamplerLengthCapHolds(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{})
	p, err := NewPolicy(b.endpoint("policy"), b.opts()...)
	require.NoError(t, err)
	samples, err := p.Sample(context.Background(), []Message{{Role: "user", Content: "tell me everything about gardens , rivers and hills ."}},
		SampleParams{Model: tinyModel, N: 6, Temperature: 1.5, MaxTokens: 3, Seed: seedPtr(4)})
	require.NoError(t, err)
	capped := 0
	for _, s := range samples {
		require.LessOrEqual(t, s.Tokens, 3)
		if s.FinishReason == "length" {
			capped++
		}
	}
	require.Positive(t, capped, "at least one sample ran into the cap")
}

// TestTopKAllTokensSentAsZero: 0 and -1 both mean all tokens to vLLM
// (SamplingParams.top_k: "Set to 0 (or -1) to consider all tokens",
// vllm/sampling_params.py); the sampler sends vLLM's current spelling, 0,
// for either, and any other value as given.
func TestTopKAllTokensSentAsZero(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, sent int }{{0, 0}, {-1, 0}, {1, 1}, {20, 20}} {
		_, fields := chatSamplingRequest(questionPrompt, SampleParams{Model: "m", N: 2, Temperature: 1, TopK: tc.in}, 2, nil, nil)
		require.Equal(t, tc.sent, fields["top_k"], "top_k %d", tc.in)
	}
}
