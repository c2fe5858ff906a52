package cli

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// A worker refuses to start when the reward endpoint's chat template does
// not tokenize like the reward model's own (tinylm's reward server answers
// /tokenize with the built-in template), starts when it does, and starts
// with a warning when the check cannot be made now (the server is gone).
func TestCheckRewardTemplateAtStart(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	ctx := context.Background()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	reward := func(baseURL string, tmpl llm.ChatTemplate) *llm.Reward {
		r, err := llm.NewReward(llm.Endpoint{Name: "reward", BaseURL: baseURL, Kind: llm.KindClassify, Model: "reward", MaxRetries: 1},
			llm.WithChatTemplate(tmpl), llm.WithBackoff(1, 1))
		require.NoError(t, err)
		return r
	}
	require.NoError(t, checkRewardTemplate(ctx, reward(base, llm.TemplateTinyLM), log))
	err := checkRewardTemplate(ctx, reward(base, llm.TemplateChatML), log)
	require.ErrorContains(t, err, `reward endpoint: llm: reward endpoint (model "reward") /tokenize: chat template "chatml" does not render`)

	require.NoError(t, checkRewardTemplate(ctx, reward("http://127.0.0.1:1", llm.TemplateChatML), log))
	require.Contains(t, logs.String(), "could not check the reward chat template")
}
