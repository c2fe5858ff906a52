package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/llm/llamacpptest"
	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
	"github.com/selfplay/selfplay/worker"
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

// TestCheckReferenceContextAtStart: the policy takes prompt + max_tokens up
// to its max_model_len, so a full-length prompt with a full-length reply
// fills it; the reference scores them as one prompt with max_tokens 1,
// which vLLM refuses beyond max_model_len − 1 (tests/v1/e2e/
// test_context_length.py in vllm-project/vllm: a prompt of max_model_len −
// 1 tokens with max_tokens 1 is allowed, one of max_model_len is not). A
// reference shorter than the policy is refused at start; one as long (a
// single server, the policy an adapter on the reference's base) starts
// with a warning, since only a reply filling the policy's whole context
// is out of its reach; one token more is enough for all — and scoring
// such a reply over HTTP fails and succeeds to match.
func TestCheckReferenceContextAtStart(t *testing.T) {
	t.Parallel()
	const policyLen, maxTokens = 64, 16
	policyBase := tinylmtest.Start(t, tinylm.ServerOptions{MaxModelLen: policyLen, RuntimeLoRAUpdating: true})
	adapter := filepath.Join(t.TempDir(), "policy-1.bin.gz")
	require.NoError(t, tinylm.Builtin().Save(adapter))
	body, err := json.Marshal(map[string]any{"lora_name": "policy-1", "lora_path": adapter})
	require.NoError(t, err)
	resp, err := http.Post(policyBase+"/v1/load_lora_adapter", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	ctx := context.Background()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	opts := []llm.Option{llm.WithBackoff(time.Millisecond, time.Millisecond)}
	policy, err := llm.NewPolicy(llm.Endpoint{Name: "policy", BaseURL: policyBase + "/v1", MaxRetries: 1}, opts...)
	require.NoError(t, err)
	cfg := &config.Config{Iterations: []config.Iteration{
		// policy-1 is a loaded adapter (its card has no max_model_len, its
		// parent has); policy-2 is not loaded yet: both get the base's.
		{Name: "iter0", PolicyModel: "tiny-0", ReferenceModel: "tiny-0", Generation: config.Generation{MaxTokens: maxTokens}},
		{Name: "iter1", PolicyModel: "policy-1", ReferenceModel: "tiny-0", Generation: config.Generation{MaxTokens: maxTokens}},
		{Name: "iter2", PolicyModel: "policy-2", ReferenceModel: "tiny-0", Generation: config.Generation{MaxTokens: maxTokens}},
	}}
	n, err := policy.MaxModelLen(ctx, "policy-1")
	require.NoError(t, err)
	require.Equal(t, policyLen, n, "an adapter's context is its base model's")
	n, err = policy.MaxModelLen(ctx, "policy-2")
	require.NoError(t, err)
	require.Equal(t, policyLen, n, "an adapter not loaded yet gets the base model's")

	// The longest reply: a prompt of policyLen − maxTokens tokens and
	// maxTokens reply tokens.
	msgs := []llm.Message{{Role: "user", Content: "rice"}}
	tok := tinylm.Builtin().Tok
	promptIDs, err := tok.EncodeChatTemplate([]tinylm.Message{{Role: "user", Content: "rice"}}, true)
	require.NoError(t, err)
	word, ok := tok.ID("rice")
	require.True(t, ok)
	for len(promptIDs) < policyLen-maxTokens {
		msgs[0].Content += " rice"
		promptIDs, err = tok.EncodeChatTemplate([]tinylm.Message{{Role: "user", Content: msgs[0].Content}}, true)
		require.NoError(t, err)
	}
	require.Len(t, promptIDs, policyLen-maxTokens)
	reply := slices.Repeat([]int{word}, maxTokens)

	for _, tc := range []struct {
		refLen int
		want   string
	}{
		{policyLen - 1, "reference model \"tiny-0\" needs max_model_len ≥ 65 and serves 63: start it with --max-model-len 65 or more"},
		{policyLen - 10, "needs max_model_len ≥ 65 and serves 54"},
		{policyLen, ""},
		{policyLen + 1, ""},
		{4 * policyLen, ""},
	} {
		refBase := tinylmtest.Start(t, tinylm.ServerOptions{MaxModelLen: tc.refLen})
		ref, err := llm.NewReference(llm.Endpoint{Name: "reference", BaseURL: refBase, MaxRetries: 1}, opts...)
		require.NoError(t, err)
		clients := worker.Clients{Policy: policy, Reference: ref}
		logs.Reset()
		err = checkReferenceContext(ctx, cfg, clients, log)
		_, scoreErr := ref.LogProbTokens(ctx, "tiny-0", msgs, reply)
		if tc.refLen == policyLen {
			require.NoError(t, err, "as long as the policy: starts")
			require.Equal(t, 1, strings.Count(logs.String(), "the reference's context is the policy's"), "warned once for the reference model")
			require.Contains(t, logs.String(), "needed_for_all=65")
			var e *llm.Error
			require.ErrorAs(t, scoreErr, &e, "the one reply out of its reach is refused by the reference, as the warning says")
			require.Equal(t, http.StatusBadRequest, e.Status)
			_, err = ref.LogProbTokens(ctx, "tiny-0", msgs, reply[1:])
			require.NoError(t, err, "one token less is scored")
			continue
		}
		if tc.want == "" {
			require.NoError(t, err, "reference max_model_len %d", tc.refLen)
			require.NoError(t, scoreErr, "the longest reply is scored")
			require.Empty(t, logs.String())
			continue
		}
		require.ErrorContains(t, err, tc.want)
		require.ErrorContains(t, err, `the long replies of iteration iter0`)
		require.ErrorContains(t, err, `takes prompts of up to 48 tokens with replies of up to generation.max_tokens 16, 64 tokens in all`)
		var e *llm.Error
		require.ErrorAs(t, scoreErr, &e, "the longest reply is refused by the reference: the start-up check is right")
		require.Equal(t, http.StatusBadRequest, e.Status)
	}
	logs.Reset()

	// Servers that cannot be reached now: logged, and the worker starts.
	down, err := llm.NewReference(llm.Endpoint{Name: "reference", BaseURL: "http://127.0.0.1:1", MaxRetries: 1}, opts...)
	require.NoError(t, err)
	require.NoError(t, checkReferenceContext(ctx, cfg, worker.Clients{Policy: policy, Reference: down}, log))
	require.Contains(t, logs.String(), "could not read the reference's max_model_len")
	logs.Reset()
	refBase := tinylmtest.Start(t, tinylm.ServerOptions{MaxModelLen: policyLen})
	ref, err := llm.NewReference(llm.Endpoint{Name: "reference", BaseURL: refBase, MaxRetries: 1}, opts...)
	require.NoError(t, err)
	downPolicy, err := llm.NewPolicy(llm.Endpoint{Name: "policy", BaseURL: "http://127.0.0.1:1/v1", MaxRetries: 1}, opts...)
	require.NoError(t, err)
	require.NoError(t, checkReferenceContext(ctx, cfg, worker.Clients{Policy: downPolicy, Reference: ref}, log),
		"a one-token prompt with a 16-token reply fits 64")
	require.Contains(t, logs.String(), "could not read the policy's context length")
	long := &config.Config{Iterations: []config.Iteration{{Name: "iter0", PolicyModel: "tiny-0", ReferenceModel: "tiny-0", Generation: config.Generation{MaxTokens: policyLen - 1}}}}
	err = checkReferenceContext(ctx, long, worker.Clients{Policy: downPolicy, Reference: ref}, log)
	require.ErrorContains(t, err, "cannot score a reply of generation.max_tokens 63 (iteration iter0)")
	require.ErrorContains(t, err, "needs max_model_len ≥ 65 even for a one-token prompt")
}

// TestCheckReferenceContextLlamaServerPolicy: llama.cpp's server reports no
// max_model_len but its context per slot (meta.n_ctx on /v1/models), the
// most one request's prompt and reply fill; the check uses it.
func TestCheckReferenceContextLlamaServerPolicy(t *testing.T) {
	t.Parallel()
	srv := llamacpptest.Start(t, llamacpptest.Options{Model: llamacpptest.Model{Seed: 3}, Slots: 2})
	policy, err := llm.NewPolicy(llm.Endpoint{Name: "policy", BaseURL: srv.URL + "/v1", Model: srv.Alias, MaxRetries: 1})
	require.NoError(t, err)
	ctx := context.Background()
	nCtx, err := policy.MaxModelLen(ctx, srv.Alias)
	require.NoError(t, err)
	require.Equal(t, 1024, nCtx, "llamacpptest gives each of its 2 slots 1024 tokens")
	cfg := &config.Config{Iterations: []config.Iteration{{Name: "iter0", PolicyModel: srv.Alias, ReferenceModel: "tiny-0", Generation: config.Generation{MaxTokens: 64}}}}
	log := slog.New(slog.DiscardHandler)
	for refLen, ok := range map[int]bool{1023: false, 1024: true, 1025: true} {
		ref, err := llm.NewReference(llm.Endpoint{Name: "reference", BaseURL: tinylmtest.Start(t, tinylm.ServerOptions{MaxModelLen: refLen}), MaxRetries: 1})
		require.NoError(t, err)
		err = checkReferenceContext(ctx, cfg, worker.Clients{Policy: policy, Reference: ref}, log)
		if ok {
			require.NoError(t, err)
		} else {
			require.ErrorContains(t, err, "needs max_model_len ≥ 1025 and serves 1023")
		}
	}
}
