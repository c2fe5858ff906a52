package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/config"
)

// modelUse is a model a stage's tasks ask an endpoint for.
type modelUse struct {
	role     string // policy_model, reference_model, evolve model
	endpoint string
	model    string
}

// stageModels lists the models a stage's tasks will ask for: generating
// samples the policy model and scores with the reference model, and when
// the iteration evolves, the evolve model is checked then too, so a
// misspelt one fails before a long generating stage; evolving rewrites with
// the evolve model; the learning check scores with the new policy.
func (s *iterationState) stageModels(kind string) []modelUse {
	var uses []modelUse
	if kind == bus.KindGenerate {
		uses = append(uses, modelUse{"policy_model", "policy", s.cfg.PolicyModel})
		if s.cfg.ReferenceModel != "" {
			uses = append(uses, modelUse{"reference_model", "reference", s.cfg.ReferenceModel})
		}
	}
	if kind == bus.KindLearn {
		return []modelUse{{"learning check model", "policy", s.checkModel}}
	}
	if kind == bus.KindEvolve || s.evolves() {
		ev := s.cfg.Evolve
		model := s.o.cfg.Endpoints[ev.Endpoint].Model
		if model == "" {
			model = ev.Model
		}
		if model == "" {
			model = s.cfg.PolicyModel
		}
		uses = append(uses, modelUse{"evolve model", ev.Endpoint, model})
	}
	return uses
}

// checkModelsServed asks each endpoint the stage uses for its /v1/models
// and fails at once, with the served list, when a model the tasks need is
// not there — instead of every task failing one by one. An endpoint whose
// list cannot be read (down, or no /v1/models) is left to the workers,
// which retry and report per task.
func (s *iterationState) checkModelsServed(ctx context.Context, kind string) error {
	lists := map[string][]string{}
	for _, u := range s.stageModels(kind) {
		served, ok := lists[u.endpoint]
		if !ok {
			var err error
			served, err = s.servedModels(ctx, u.endpoint)
			if err != nil {
				s.o.log.WarnContext(ctx, "could not list the endpoint's models; the workers will find out", "endpoint", u.endpoint, "err", err)
				lists[u.endpoint] = nil
				continue
			}
			lists[u.endpoint] = served
		}
		if served != nil && !slices.Contains(served, u.model) {
			return &permanentError{fmt.Errorf("%s %q is not served by endpoints.%s, which serves: %s",
				u.role, u.model, u.endpoint, strings.Join(served, ", "))}
		}
	}
	return nil
}

// servedModels reads an endpoint's /v1/models, from the first of its
// replicas that answers.
func (s *iterationState) servedModels(ctx context.Context, endpoint string) ([]string, error) {
	ep, ok := s.o.cfg.Endpoints[endpoint]
	if !ok {
		return nil, fmt.Errorf("endpoints.%s is not configured", endpoint)
	}
	key, err := config.Secret("endpoints."+endpoint+".api_key_env", ep.APIKeyEnv)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, base := range ep.URLs() {
		u := modelsURL(base)
		ids, err := listModels(ctx, s.o.opts.HTTPClient, u, key)
		if err == nil {
			return ids, nil
		}
		// Logged by the caller: the address without its secrets.
		errs = append(errs, errors.New(strings.ReplaceAll(err.Error(), u, config.RedactURL(u))))
	}
	return nil, errors.Join(errs...)
}
