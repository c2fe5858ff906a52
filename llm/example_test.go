package llm_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http/httptest"

	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/tinylm"
)

// startTinyLM serves the built-in model as "tiny-0" and the reward function
// as "reward" on a real 127.0.0.1 listener.
func startTinyLM() (*httptest.Server, error) {
	srv, err := tinylm.NewServer(tinylm.ServerOptions{})
	if err != nil {
		return nil, err
	}
	return httptest.NewServer(srv), nil
}

// Sample five responses, score them in one reward request, and check the
// reference scorer against the sampler's own log-probs.
func Example() {
	ts, err := startTinyLM()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ts.Close()
	ctx := context.Background()
	prompt := []llm.Message{{Role: "user", Content: "what should i pack for a weekend hike ?"}}

	policy, err := llm.NewPolicy(llm.Endpoint{Name: "policy", BaseURL: ts.URL + "/v1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	seed := int64(1)
	samples, err := policy.Sample(ctx, prompt, llm.SampleParams{Model: "tiny-0", N: 5, Temperature: 0.8, TopP: 0.95, MaxTokens: 48, Seed: &seed})
	if err != nil {
		fmt.Println(err)
		return
	}
	responses := make([]string, len(samples))
	for i, s := range samples {
		responses[i] = s.Content
	}

	reward, err := llm.NewReward(llm.Endpoint{Name: "reward", BaseURL: ts.URL, Kind: llm.KindClassify, Model: "reward"},
		llm.WithChatTemplate(llm.TemplateTinyLM))
	if err != nil {
		fmt.Println(err)
		return
	}
	scores, err := reward.Score(ctx, prompt, responses)
	if err != nil {
		fmt.Println(err)
		return
	}

	ref, err := llm.NewReference(llm.Endpoint{Name: "reference", BaseURL: ts.URL, Model: "tiny-0"})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := ref.Probe(ctx, ""); err != nil {
		fmt.Println(err)
		return
	}
	logp, err := ref.LogProbTokens(ctx, "", prompt, samples[0].TokenIDs)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("samples:", len(samples), "rewards:", len(scores))
	fmt.Println("reference agrees with sampler:", math.Abs(logp-samples[0].LogProb) < 1e-6)
	// Output:
	// samples: 5 rewards: 5
	// reference agrees with sampler: true
}

// Errors say which endpoint and model failed and whether a retry can help.
func ExampleIsPermanent() {
	ts, err := startTinyLM()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ts.Close()
	policy, err := llm.NewPolicy(llm.Endpoint{Name: "policy", BaseURL: ts.URL})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = policy.Sample(context.Background(), []llm.Message{{Role: "user", Content: "hi"}},
		llm.SampleParams{Model: "tiny-9", N: 2, Temperature: 0.8})
	fmt.Println("permanent:", llm.IsPermanent(err))
	var e *llm.Error
	if errors.As(err, &e) {
		fmt.Println(e.Endpoint, e.Model, e.Status)
	}
	// Output:
	// permanent: true
	// policy tiny-9 404
}
