package tinylm_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/corpus"
)

func TestBuildVocab(t *testing.T) {
	t.Parallel()
	words := tinylm.BuildVocab([]string{"b a c a", "a b <|end|> d", "d"}, 2, 0)
	require.Equal(t, []string{tinylm.TokUnk, tinylm.TokSystem, tinylm.TokUser, tinylm.TokAssistant, tinylm.TokEnd, "a", "b", "d"}, words,
		"specials first, then by count (a 3, b 2, d 2; c 1 dropped), ties in byte order")
	capped := tinylm.BuildVocab([]string{"b a c a"}, 1, tinylm.NumSpecial+1)
	require.Equal(t, []string{tinylm.TokUnk, tinylm.TokSystem, tinylm.TokUser, tinylm.TokAssistant, tinylm.TokEnd, "a"}, capped)
}

func TestTrainMLEImprovesHeldOutLikelihood(t *testing.T) {
	t.Parallel()
	data := corpus.Generate(5, 500)
	train, held := data[:400], data[400:]
	var texts []string
	for _, ex := range data {
		for _, m := range ex.Messages {
			texts = append(texts, m.Content)
		}
		texts = append(texts, ex.Response)
	}
	tok, err := tinylm.NewTokenizer(tinylm.BuildVocab(texts, 1, 0))
	require.NoError(t, err)
	m, err := tinylm.NewModel(tok, 8, 0.1, 1)
	require.NoError(t, err)
	heldNLL := func() float64 {
		var nll float64
		var n int
		for _, ex := range held {
			p, err := tok.EncodeChat(ex.Messages, true)
			require.NoError(t, err)
			lps, err := m.ResponseLogProbs(p, append(tok.Encode(ex.Response), tinylm.EndID))
			require.NoError(t, err)
			for _, x := range lps {
				nll -= x
			}
			n += len(lps)
		}
		return nll / float64(n)
	}
	before := heldNLL()
	hist, err := tinylm.TrainMLE(m, train, tinylm.MLEOptions{Epochs: 3, LearningRate: 0.02, Seed: 1})
	require.NoError(t, err)
	require.Len(t, hist, 3)
	require.Less(t, hist[2], hist[0], "training NLL goes down")
	after := heldNLL()
	require.Less(t, after, before-1, "held-out NLL per token drops by more than a nat (from %.2f to %.2f)", before, after)

	_, err = tinylm.TrainMLE(m, nil, tinylm.MLEOptions{})
	require.ErrorContains(t, err, "no examples")
	_, err = tinylm.TrainMLE(m, []tinylm.Example{{Messages: []tinylm.Message{{Role: "bot"}}}}, tinylm.MLEOptions{})
	require.ErrorIs(t, err, tinylm.ErrBadRole)
}

func TestCorpusIsDeterministic(t *testing.T) {
	t.Parallel()
	a, b := corpus.Generate(3, 50), corpus.Generate(3, 50)
	require.Equal(t, a, b)
	require.NotEqual(t, a, corpus.Generate(4, 50))
	for _, ex := range a {
		require.Equal(t, "user", ex.Messages[len(ex.Messages)-1].Role)
		require.NotEmpty(t, ex.Response)
	}
	require.Len(t, corpus.Prompts(3, 7), 7)
}
