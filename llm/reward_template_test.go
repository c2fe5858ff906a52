package llm

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
)

// CheckTemplate compares the reward server's /tokenize of the chat form
// (vLLM's TokenizeChatRequest, add_special_tokens false) with that of the
// client-rendered text (TokenizeCompletionRequest, add_special_tokens
// false), as vllm/entrypoints/serve/tokenize defines them; tinylm's reward
// server tokenizes with the built-in model's tokenizer and template.
func TestRewardCheckTemplate(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{})
	ctx := context.Background()
	ep := b.endpoint("reward")
	ep.Kind, ep.Model = KindClassify, rewardModel

	r, err := NewReward(ep, WithChatTemplate(TemplateTinyLM))
	require.NoError(t, err)
	require.NoError(t, r.CheckTemplate(ctx), "tinylm's own template renders what its server does")

	for _, tmpl := range []ChatTemplate{TemplateChatML, TemplateLlama3} {
		r, err := NewReward(ep, WithChatTemplate(tmpl))
		require.NoError(t, err)
		err = r.CheckTemplate(ctx)
		require.Error(t, err, tmpl.Name)
		require.True(t, IsPermanent(err))
		require.ErrorContains(t, err, `chat template "`+tmpl.Name+`" does not render what the reward model's own template does`)
		require.ErrorContains(t, err, "endpoints.reward.chat_template")
	}

	// BOS (vLLM's serve/tokenize/protocol.py, over HTTP on tinylm): the
	// server's template writes <|bos|> first, so the chat form's tokens
	// start with exactly one: <|bos|> <|user|> how do i keep my garden
	// healthy in summer ? <|end|> <|assistant|> water it early in the
	// morning . <|end|> is 1+1+10+1+1+7+1 = 22 tokens. A configured
	// template that leaves the BOS out, or writes it twice, is refused.
	for _, c := range []struct {
		begin, name, want string
	}{
		{"", "tinylm-no-bos", "22 tokens for the chat form and 21 for the rendered text, first differing at token 0"},
		{"<|bos|> <|bos|> ", "tinylm-two-bos", "22 tokens for the chat form and 23 for the rendered text, first differing at token 1"},
	} {
		tmpl := TemplateTinyLM
		tmpl.Name, tmpl.Begin = c.name, c.begin
		r, err := NewReward(ep, WithChatTemplate(tmpl))
		require.NoError(t, err)
		err = r.CheckTemplate(ctx)
		require.Error(t, err, tmpl.Name)
		require.True(t, IsPermanent(err))
		require.ErrorContains(t, err, `chat template "`+tmpl.Name+`" does not render`)
		require.ErrorContains(t, err, c.want)
	}

	// Nothing to check: the chat form (the server templates) or a kind
	// that does not batch rendered input.
	before := b.requests.Load()
	r, err = NewReward(ep, b.opts()...)
	require.NoError(t, err)
	require.NoError(t, r.CheckTemplate(ctx))
	require.Equal(t, before, b.requests.Load(), "no request without a template")
}
