// Package corpus generates the dialogue corpus the built-in tinylm model is
// trained on: single-turn prompt → answer dialogues about everyday topics
// (cooking, sleep, money, travel, pets, …), written from templates and word
// lists in this package. Answers name the prompt's object and use the
// topic's words, so the prompt conditioning of the model matters.
// Generation is deterministic: the same seed and size give the same corpus.
package corpus

import (
	"math/rand/v2"
	"strings"

	"github.com/selfplay/selfplay/tinylm"
)

// DefaultSeed and DefaultSize are the corpus the embedded model was built
// from (see tinylm/cmd/buildweights).
const (
	DefaultSeed = 1
	DefaultSize = 6000
)

// Generate returns n dialogues generated from seed.
func Generate(seed uint64, n int) []tinylm.Example {
	rng := rand.New(rand.NewPCG(seed, 0xc0_de_0f_d1a1))
	out := make([]tinylm.Example, 0, n)
	for range n {
		out = append(out, dialogue(rng))
	}
	return out
}

// Prompts returns n user prompts (no answers) drawn like Generate's, as
// chat message lists; handy as a prompt pool for runs against tinylm.
func Prompts(seed uint64, n int) [][]tinylm.Message {
	ex := Generate(seed, n)
	out := make([][]tinylm.Message, len(ex))
	for i, e := range ex {
		out[i] = e.Messages
	}
	return out
}

type slots struct {
	t       *topic
	o, v, a string
	t1, t2  string
	rng     *rand.Rand
}

func pick(rng *rand.Rand, xs []string) string { return xs[rng.IntN(len(xs))] }

func (s *slots) fill(tmpl string) string {
	r := strings.NewReplacer(
		"{o}", s.o, "{v}", s.v, "{a}", s.a, "{t}", s.t1, "{t2}", s.t2, "{n}", s.t.name,
	)
	return r.Replace(tmpl)
}

// reroll draws fresh secondary words so the sentences of one answer differ.
func (s *slots) reroll() {
	s.t1 = pick(s.rng, s.t.things)
	s.t2 = pick(s.rng, s.t.things)
	for s.t2 == s.t1 {
		s.t2 = pick(s.rng, s.t.things)
	}
	s.a = pick(s.rng, s.t.adjs)
	if s.rng.IntN(3) == 0 {
		s.v = pick(s.rng, s.t.verbs)
	}
}

func dialogue(rng *rand.Rand) tinylm.Example {
	t := &topics[rng.IntN(len(topics))]
	s := &slots{t: t, rng: rng}
	s.o = pick(rng, t.objects)
	s.v = pick(rng, t.verbs)
	s.reroll()
	question := s.fill(pick(rng, questions))

	var msgs []tinylm.Message
	if rng.IntN(4) == 0 {
		msgs = append(msgs, tinylm.Message{Role: "system", Content: pick(rng, systems)})
	}
	msgs = append(msgs, tinylm.Message{Role: "user", Content: question})

	var parts []string
	if op := s.fill(pick(rng, openers)); op != "" {
		parts = append(parts, op)
	}
	body := 2 + rng.IntN(3)
	used := map[int]bool{}
	for range body {
		s.reroll()
		if rng.IntN(4) == 0 {
			parts = append(parts, pick(rng, t.tips))
			continue
		}
		i := rng.IntN(len(sentences))
		for used[i] {
			i = rng.IntN(len(sentences))
		}
		used[i] = true
		parts = append(parts, s.fill(sentences[i]))
	}
	if cl := s.fill(pick(rng, closers)); cl != "" {
		parts = append(parts, cl)
	}
	return tinylm.Example{Messages: msgs, Response: strings.Join(parts, " ")}
}
