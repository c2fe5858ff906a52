package llm

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
)

// LogProbSample scores what the policy sampled. Without token ids it
// re-tokenizes the content and appends the end-of-turn token only for a
// sample that finished with "stop" (vLLM includes the stop token in a
// stopped sample's log-probs and token_ids, and a "length" sample has
// none: vllm/entrypoints/openai/chat_completion/serving.py builds both
// from output.token_ids); and it uses the reply's prompt_token_ids
// (ChatCompletionResponse.prompt_token_ids in chat_completion/protocol.py)
// rather than re-rendering the prompt. tinylm is both policy and reference
// here, so every way of scoring must give back the sampler's own sum.
func TestReferenceLogProbSample(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{})
	ctx := context.Background()
	p, err := NewPolicy(b.endpoint("policy"))
	require.NoError(t, err)
	ref, err := NewReference(Endpoint{Name: "reference", BaseURL: b.baseURL, Model: tinyModel})
	require.NoError(t, err)

	// A cap of 14 makes some samples stop and others run into it.
	samples, err := p.Sample(ctx, questionPrompt, SampleParams{Model: tinyModel, N: 12, Temperature: 1, MaxTokens: 14, Seed: seedPtr(5)})
	require.NoError(t, err)
	reasons := map[string]int{}
	for i, s := range samples {
		reasons[s.FinishReason]++
		require.NotEmpty(t, s.PromptTokenIDs, "tinylm returns prompt_token_ids with return_token_ids")

		got, err := ref.LogProbSample(ctx, "", questionPrompt, s)
		require.NoError(t, err)
		require.InDelta(t, s.LogProb, got, 1e-6, "sample %d with its ids", i)

		text := s
		text.TokenIDs = nil
		got, err = ref.LogProbSample(ctx, "", questionPrompt, text)
		require.NoError(t, err)
		require.InDelta(t, s.LogProb, got, 1e-6, "sample %d (%s) from its text", i, s.FinishReason)

		// The prompt ids are used as given: a different prompt in msgs does
		// not change the score.
		got, err = ref.LogProbSample(ctx, "", []Message{{Role: "user", Content: "something else entirely ."}}, s)
		require.NoError(t, err)
		require.InDelta(t, s.LogProb, got, 1e-6, "sample %d scored on its own prompt ids", i)
	}
	require.Positive(t, reasons["stop"], "some samples stopped: %v", reasons)
	require.Positive(t, reasons["length"], "some samples ran into the cap: %v", reasons)
}
