package tinylm

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
)

// EvalOptions controls Evaluate.
type EvalOptions struct {
	// Sampling is used for every response (temperature, top-p, max tokens;
	// TopLogProbs is ignored). MaxTokens must be positive.
	Sampling SampleOptions
	// Samples per prompt; default 4.
	Samples int
	// Seed makes the evaluation reproducible: response i of prompt j is
	// drawn from a PCG seeded with (Seed, j·Samples+i), so the same seed,
	// model and prompts give the same number on any machine and with any
	// parallelism.
	Seed uint64
}

// EvalResult is the reward of a model's sampled responses on a prompt set,
// scored by the transparent reward (RewardChat, what /classify serves).
type EvalResult struct {
	// Prompts and Responses counted.
	Prompts   int `json:"prompts"`
	Responses int `json:"responses"`
	// MeanReward is the mean score over all responses.
	MeanReward float64 `json:"mean_reward"`
	// StdErr is the standard error of MeanReward over prompts: the
	// population standard deviation of the per-prompt mean rewards divided
	// by √Prompts.
	StdErr float64 `json:"stderr"`
	// Mean parts of the reward (see RewardBreakdown) and words per response.
	Relevance  float64 `json:"relevance"`
	Ending     float64 `json:"ending"`
	Repetition float64 `json:"repetition"`
	Length     float64 `json:"length"`
	Words      float64 `json:"words"`
	// StopRate is the fraction of responses that ended with <|end|> rather
	// than at the token limit.
	StopRate float64 `json:"stop_rate"`
}

// Evaluate samples opts.Samples responses from m for every prompt and
// scores them with the reward function, spreading the work over
// GOMAXPROCS goroutines. It reads m only, so it is safe to run alongside
// other readers.
func Evaluate(m *Model, prompts [][]Message, opts EvalOptions) (EvalResult, error) {
	if opts.Samples == 0 {
		opts.Samples = 4
	}
	if opts.Samples < 0 {
		return EvalResult{}, fmt.Errorf("evaluate: samples %d must be positive", opts.Samples)
	}
	if opts.Sampling.MaxTokens <= 0 {
		return EvalResult{}, fmt.Errorf("evaluate: max tokens %d must be positive", opts.Sampling.MaxTokens)
	}
	if len(prompts) == 0 {
		return EvalResult{}, errors.New("evaluate: no prompts")
	}
	opts.Sampling.TopLogProbs = 0
	encoded := make([][]int, len(prompts))
	for j, msgs := range prompts {
		ids, err := m.Tok.EncodeChat(msgs, true)
		if err != nil {
			return EvalResult{}, fmt.Errorf("evaluate: prompt %d: %w", j, err)
		}
		encoded[j] = ids
	}
	type sample struct {
		b    RewardBreakdown
		stop bool
	}
	out := make([]sample, len(prompts)*opts.Samples)
	errs := make([]error, len(prompts))
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for j := range next {
				for i := range opts.Samples {
					k := j*opts.Samples + i
					g, err := m.Generate(encoded[j], opts.Sampling, rand.New(rand.NewPCG(opts.Seed, uint64(k))))
					if err != nil {
						errs[j] = err
						break
					}
					msgs := append(slices.Clip(prompts[j]), Message{Role: "assistant", Content: m.Tok.Decode(g.IDs, true)})
					b, err := RewardChat(msgs)
					if err != nil {
						errs[j] = err
						break
					}
					out[k] = sample{b: b, stop: g.FinishReason == FinishStop}
				}
			}
		})
	}
	for j := range prompts {
		next <- j
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return EvalResult{}, fmt.Errorf("evaluate: %w", err)
	}
	res := EvalResult{Prompts: len(prompts), Responses: len(out)}
	perPrompt := make([]float64, len(prompts))
	for k, s := range out {
		res.MeanReward += s.b.Score
		perPrompt[k/opts.Samples] += s.b.Score / float64(opts.Samples)
		res.Relevance += s.b.Relevance
		res.Ending += s.b.Ending
		res.Repetition += s.b.Repetition
		res.Length += s.b.Length
		res.Words += float64(s.b.Words)
		if s.stop {
			res.StopRate++
		}
	}
	n := float64(len(out))
	for _, p := range []*float64{&res.MeanReward, &res.Relevance, &res.Ending, &res.Repetition, &res.Length, &res.Words, &res.StopRate} {
		*p /= n
	}
	var ss float64
	for _, x := range perPrompt {
		ss += (x - res.MeanReward) * (x - res.MeanReward)
	}
	res.StdErr = math.Sqrt(ss/float64(len(perPrompt))) / math.Sqrt(float64(len(perPrompt)))
	return res, nil
}
