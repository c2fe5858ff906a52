package cli

import (
	"context"
	"fmt"
	"log/slog"

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
	return llm.Endpoint{
		Name: name, BaseURL: ep.BaseURL, APIKey: key, MaxConcurrency: ep.MaxConcurrency,
		Timeout: ep.Timeout, MaxRetries: ep.MaxRetries, Kind: ep.Kind, Model: ep.Model,
	}, nil
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
