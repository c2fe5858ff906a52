package orchestrator

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
)

// TestMisspeltModelFailsBeforePublishing: a policy, reference or evolve
// model the endpoint does not serve fails the stage at once with the list
// the endpoint serves, and no task is published (every task used to fail
// one by one). tinylm serves /v1/models as vLLM does
// (vllm/entrypoints/openai/api_server.py, show_available_models).
func TestMisspeltModelFailsBeforePublishing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lmAddr := selfplaytest.FreeAddr(t)
	selfplaytest.StartLM(t, "lm", lmAddr, nil, "--model", "tiny-0=builtin")

	o, pool := boundOrchestrator(t, func(cfg *config.Config) {
		cfg.Endpoints["policy"] = config.Endpoint{BaseURL: "http://" + lmAddr + "/v1"}
		cfg.Endpoints["reference"] = config.Endpoint{BaseURL: "http://" + lmAddr}
	})

	for i, tt := range []struct {
		name string
		it   config.Iteration
		want string
	}{
		{"policy", config.Iteration{PolicyModel: "tiny-O"},
			`policy_model "tiny-O" is not served by endpoints.policy, which serves: tiny-0`},
		{"reference", config.Iteration{PolicyModel: "tiny-0", ReferenceModel: "tiny-ref"},
			`reference_model "tiny-ref" is not served by endpoints.reference, which serves: tiny-0`},
		{"evolve", config.Iteration{PolicyModel: "tiny-0", Evolve: config.Evolve{Enabled: true, Endpoint: "policy", Model: "tiny-evolver"}},
			`evolve model "tiny-evolver" is not served by endpoints.policy, which serves: tiny-0`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			run, err := store.EnsureRun(ctx, pool, tt.name, []byte(`{}`))
			require.NoError(t, err)
			its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "iter0", PolicyModel: "m", Config: []byte(`{}`)}})
			require.NoError(t, err)
			_, err = store.LoadPool(ctx, pool, its[0].ID, []prompt.Prompt{
				prompt.New([]prompt.Message{{Role: "user", Content: "a prompt " + tt.name}}, "p.jsonl", ""),
			})
			require.NoError(t, err)
			tt.it.Name = "iter0"
			next := config.Iteration{Prompts: config.Prompts{Evolved: true}}
			st := &iterationState{o: o, run: run, it: its[0], cfg: tt.it, next: &next}
			dctx, cancel := context.WithTimeout(ctx, time.Minute) // only the unfixed code waits this long
			defer cancel()
			err = st.dispatch(dctx, bus.KindGenerate)
			require.ErrorContains(t, err, tt.want, "case %d", i)
			require.NoError(t, dctx.Err())
		})
	}
	stream, err := o.js.Stream(ctx, o.cfg.NATS.Stream)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Zero(t, info.State.Msgs, "no task was published")

	// The models the endpoint serves pass.
	st := &iterationState{o: o, cfg: config.Iteration{PolicyModel: "tiny-0", ReferenceModel: "tiny-0"}}
	require.NoError(t, st.checkModelsServed(ctx, bus.KindGenerate))
}
