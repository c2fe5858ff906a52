package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
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
// the evolve model.
func (s *iterationState) stageModels(kind string) []modelUse {
	var uses []modelUse
	if kind == bus.KindGenerate {
		uses = append(uses, modelUse{"policy_model", "policy", s.cfg.PolicyModel})
		if s.cfg.ReferenceModel != "" {
			uses = append(uses, modelUse{"reference_model", "reference", s.cfg.ReferenceModel})
		}
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

// servedModels reads an endpoint's /v1/models.
func (s *iterationState) servedModels(ctx context.Context, endpoint string) ([]string, error) {
	ep, ok := s.o.cfg.Endpoints[endpoint]
	if !ok {
		return nil, fmt.Errorf("endpoints.%s is not configured", endpoint)
	}
	key, err := config.Secret("endpoints."+endpoint+".api_key_env", ep.APIKeyEnv)
	if err != nil {
		return nil, err
	}
	url := strings.TrimSuffix(strings.TrimRight(ep.BaseURL, "/"), "/v1") + "/v1/models"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := s.o.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/models: %s", resp.Status)
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("GET /v1/models: %w", err)
	}
	served := make([]string, 0, len(list.Data))
	for _, m := range list.Data {
		served = append(served, m.ID)
	}
	return served, nil
}
