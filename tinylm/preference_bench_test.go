package tinylm_test

import (
	"testing"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/corpus"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// BenchmarkTrainPreference measures one epoch of preference training of the
// built-in model over 48 self-play pairs (batches of 8), per loss: what one
// `selfplay lm train` epoch costs on a typical tinylm export.
func BenchmarkTrainPreference(b *testing.B) {
	m := tinylm.Builtin()
	var pairs []tinylm.PreferencePair
	for _, p := range tinylmtest.Preferences(b, m, corpus.Prompts(21, 64), 4, 21) {
		pp, err := m.Tok.EncodePreference(p)
		if err != nil {
			b.Fatal(err)
		}
		pairs = append(pairs, pp)
	}
	if len(pairs) < 48 {
		b.Fatalf("only %d pairs", len(pairs))
	}
	pairs = pairs[:48]
	var tokens int
	for _, p := range pairs {
		tokens += len(p.Chosen) + len(p.Rejected)
	}
	for _, loss := range tinylm.Losses {
		b.Run(string(loss), func(b *testing.B) {
			policy, ref := tinylm.Builtin(), tinylm.Builtin()
			for b.Loop() {
				if _, err := tinylm.TrainPreference(policy, ref, pairs, tinylm.PreferenceOptions{Loss: loss, Beta: 0.1, Epochs: 1}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(pairs)*b.N)/b.Elapsed().Seconds(), "pairs/s")
			b.ReportMetric(float64(tokens*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkEvaluate measures the held-out evaluation `selfplay lm eval`
// runs: 4 samples for each of 100 prompts, over GOMAXPROCS goroutines.
func BenchmarkEvaluate(b *testing.B) {
	m := tinylm.Builtin()
	prompts := corpus.Prompts(33, 100)
	var responses int
	for b.Loop() {
		r, err := tinylm.Evaluate(m, prompts, tinylm.EvalOptions{Sampling: tinylm.SampleOptions{Temperature: 0.8, TopP: 0.95, MaxTokens: 128}, Samples: 4, Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		responses += r.Responses
	}
	b.ReportMetric(float64(responses)/b.Elapsed().Seconds(), "responses/s")
}
