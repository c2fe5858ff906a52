package cli

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/worker"
)

// endpoint maps a configured endpoint to the llm client's settings, reading
// its API key from the environment variable the configuration names.
func endpoint(cfg *config.Config, name string) (llm.Endpoint, error) {
	ep, ok := cfg.Endpoints[name]
	if !ok {
		return llm.Endpoint{}, fmt.Errorf("endpoints.%s is not configured", name)
	}
	key, err := config.Secret("endpoints."+name+".api_key_env", ep.APIKeyEnv)
	if err != nil {
		return llm.Endpoint{}, err
	}
	urls := ep.URLs()
	return llm.Endpoint{
		Name: name, BaseURL: urls[0], BaseURLs: urls[1:], APIKey: key, MaxConcurrency: ep.MaxConcurrency,
		Timeout: ep.Timeout, MaxRetries: ep.MaxRetries, Kind: ep.Kind, Model: ep.Model, MaxN: ep.MaxN,
	}, nil
}

// probeReference checks once, before a worker takes tasks, that the
// reference endpoint can teacher-force every reference model the schedule
// names (endpoints.reference.model when no iteration names one): a server
// without vLLM's /tokenize and prompt_logprobs would fail every generate
// task, or worse score nothing. A server that lacks the capability stops
// the worker with the reason; one that cannot be reached now is only
// logged, since workers may start before the model servers do, and each
// task checks again.
func probeReference(ctx context.Context, cfg *config.Config, clients worker.Clients, log *slog.Logger) error {
	ref, ok := clients.Reference.(*llm.Reference)
	if !ok || ref == nil {
		return nil
	}
	var models []string
	for _, it := range cfg.Iterations {
		if it.ReferenceModel != "" && !slices.Contains(models, it.ReferenceModel) {
			models = append(models, it.ReferenceModel)
		}
	}
	if len(models) == 0 && cfg.Endpoints["reference"].Model != "" {
		models = append(models, cfg.Endpoints["reference"].Model)
	}
	for _, m := range models {
		err := ref.Probe(ctx, m)
		switch {
		case err == nil:
		case llm.IsPermanent(err):
			return fmt.Errorf("endpoints.reference cannot score reference model %q, so this worker will not start: %w", m, err)
		default:
			log.WarnContext(ctx, "reference endpoint not reachable at start; tasks will check again", "model", m, "err", err)
		}
	}
	return nil
}

// probePolicyScorer refuses to start a run or a worker with
// learning_check.enabled when the policy endpoint cannot teacher-force (no
// vLLM /tokenize and prompt_logprobs: llama.cpp's llama-server, an
// OpenAI-style API): every learn task would fail after hours of sampling
// and training. The first iteration's policy model is probed; the models
// the train hook makes are served by the same server. A server that cannot
// be reached now is only logged, as probeReference does.
func probePolicyScorer(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	if !cfg.LearningCheck.Enabled || len(cfg.Iterations) == 0 {
		return nil
	}
	ep, err := endpoint(cfg, "policy")
	if err != nil {
		return err
	}
	ref, err := llm.NewReference(ep, llm.WithLogger(log))
	if err != nil {
		return err
	}
	model := cfg.Iterations[0].PolicyModel
	err = ref.Probe(ctx, model)
	switch {
	case err == nil:
		return nil
	case llm.IsPermanent(err):
		return fmt.Errorf("learning_check.enabled needs a policy endpoint that can teacher-force the new policy, and endpoints.policy cannot for model %q "+
			"(set learning_check.enabled: false, or serve the policy with vLLM or the built-in model): %w", model, err)
	}
	log.WarnContext(ctx, "policy endpoint not reachable at start; the learning check will find out", "model", model, "err", err)
	return nil
}

// checkReferenceContext refuses to start a worker whose reference server
// cannot score the policy's replies. The policy server takes a prompt only
// when prompt plus max_tokens fits its context (max_model_len), so prompt
// plus reply reach at most its max_model_len. The reference scores prompt
// and reply as one prompt with max_tokens 1, which vLLM refuses unless
// prompt plus 1 fits its own max_model_len. A reference shorter than the
// policy is refused. One exactly as long (the usual single server, the
// policy a LoRA adapter on the reference's base model) starts with a
// warning: it scores every reply but one that fills the policy's whole
// context (a prompt of max_model_len − max_tokens tokens or more whose
// reply was cut at max_tokens), whose task fails with the server's reason;
// the policy's + 1 scores all. When the policy server reports no context
// length (an OpenAI-style server), only a one-token prompt with a full
// reply is checked; a reference server that reports none (vLLM always
// does, on /tokenize) is not checked. A length that cannot be read now is
// logged, as probeReference does.
func checkReferenceContext(ctx context.Context, cfg *config.Config, clients worker.Clients, log *slog.Logger) error {
	ref, ok := clients.Reference.(*llm.Reference)
	policy, pok := clients.Policy.(*llm.Policy)
	if !ok || ref == nil || !pok || policy == nil {
		return nil
	}
	// lengthOf reads a server's context length for a model once, logging
	// why it is unknown (0) when it is.
	lengthOf := func(cache map[string]int, model, what string, read func(context.Context, string) (int, error)) int {
		n, ok := cache[model]
		if ok {
			return n
		}
		n, err := read(ctx, model)
		switch {
		case err != nil:
			log.WarnContext(ctx, "could not read the "+what, "model", model, "err", err)
			n = 0
		case n == 0:
			log.WarnContext(ctx, "the server reports no "+what, "model", model)
		}
		cache[model] = n
		return n
	}
	refLens, policyLens, warned := map[string]int{}, map[string]int{}, map[string]bool{}
	for _, it := range cfg.Iterations {
		if it.ReferenceModel == "" {
			continue
		}
		refLen := lengthOf(refLens, it.ReferenceModel, "reference's max_model_len (/tokenize); the longest reply it can score is not checked", ref.MaxModelLen)
		if refLen == 0 {
			continue
		}
		policyLen := lengthOf(policyLens, it.PolicyModel, "policy's context length (/v1/models); the reference is checked against a one-token prompt only", policy.MaxModelLen)
		maxTokens := it.Generation.MaxTokens
		if policyLen == 0 {
			if need := 1 + maxTokens + 1; refLen < need {
				return fmt.Errorf("endpoints.reference cannot score a reply of generation.max_tokens %d (iteration %s), so this worker will not start: "+
					"it scores prompt and reply as one prompt with max_tokens 1, which needs max_model_len ≥ %d even for a one-token prompt, "+
					"and reference model %q serves %d; raise its --max-model-len or lower generation.max_tokens",
					maxTokens, it.Name, need, it.ReferenceModel, refLen)
			}
			continue
		}
		need := policyLen + 1
		if refLen < policyLen {
			return fmt.Errorf("endpoints.reference cannot score the long replies of iteration %s, so this worker will not start: "+
				"policy model %q (max_model_len %d) takes prompts of up to %d tokens with replies of up to generation.max_tokens %d, %d tokens in all; "+
				"the reference scores prompt and reply as one prompt with max_tokens 1, so reference model %q needs max_model_len ≥ %d and serves %d: "+
				"start it with --max-model-len %d or more (examples/vllm/serve-reference.sh) or the policy with a shorter one",
				it.Name, it.PolicyModel, policyLen, max(policyLen-maxTokens, 0), maxTokens, policyLen, it.ReferenceModel, need, refLen, need)
		}
		if key := it.ReferenceModel; refLen == policyLen && !warned[key] {
			warned[key] = true
			log.WarnContext(ctx, "the reference's context is the policy's: a reply that fills the policy's whole context "+
				"(a prompt of max_model_len − max_tokens tokens or more, the reply cut at max_tokens) cannot be scored and its task fails; "+
				"a reference with one token more scores every reply",
				"iteration", it.Name, "policy_model", it.PolicyModel, "reference_model", it.ReferenceModel, "max_model_len", refLen, "needed_for_all", need)
		}
	}
	return nil
}

// buildClients makes the worker's LLM clients from the configuration.
func buildClients(cfg *config.Config, log *slog.Logger, hooks llm.Hooks) (worker.Clients, error) {
	opts := []llm.Option{llm.WithLogger(log), llm.WithHooks(hooks)}
	var c worker.Clients
	ep, err := endpoint(cfg, "policy")
	if err != nil {
		return c, err
	}
	policy, err := llm.NewPolicy(ep, opts...)
	if err != nil {
		return c, err
	}
	c.Policy, c.Evolver = policy, policy
	if c.PolicyScorer, err = llm.NewReference(ep, opts...); err != nil {
		return c, err
	}
	if ep, err = endpoint(cfg, "reward"); err != nil {
		return c, err
	}
	rewardOpts := opts
	if name := cfg.Endpoints["reward"].ChatTemplate; name != "" {
		tmpl, err := llm.TemplateByName(name)
		if err != nil {
			return c, err
		}
		rewardOpts = append(rewardOpts[:len(opts):len(opts)], llm.WithChatTemplate(tmpl))
	}
	if c.Reward, err = llm.NewReward(ep, rewardOpts...); err != nil {
		return c, err
	}
	if _, ok := cfg.Endpoints["reference"]; ok {
		if ep, err = endpoint(cfg, "reference"); err != nil {
			return c, err
		}
		if c.Reference, err = llm.NewReference(ep, opts...); err != nil {
			return c, err
		}
	}
	if name := cfg.Evolve.Endpoint; name != "policy" {
		if ep, err = endpoint(cfg, name); err != nil {
			return c, err
		}
		ev, err := llm.NewPolicy(ep, opts...)
		if err != nil {
			return c, err
		}
		c.Evolver, c.EvolverModel = ev, ep.Model
	}
	return c, nil
}

// checkRewardTemplate refuses to start a worker whose reward endpoint
// batches rendered input with a chat template that does not tokenize like
// the reward model's own (llm.Reward.CheckTemplate). A check that fails
// only for now (the server is down or busy) is logged and skipped: tasks
// then wait for the server as they would anyway.
func checkRewardTemplate(ctx context.Context, reward worker.Rewarder, log *slog.Logger) error {
	r, ok := reward.(*llm.Reward)
	if !ok {
		return nil
	}
	err := r.CheckTemplate(ctx)
	switch {
	case err == nil:
		return nil
	case llm.IsPermanent(err):
		return fmt.Errorf("reward endpoint: %w", err)
	default:
		log.WarnContext(ctx, "could not check the reward chat template; batching without the check", "err", err)
		return nil
	}
}
