package tinylm

import (
	"fmt"
	"math"
	"strings"
)

// Reward weights and length preferences; see Score.
const (
	RewardRelevanceWeight  = 3.0
	RewardEndingBonus      = 0.5
	RewardRepetitionWeight = 4.0
	RewardMinWords         = 12
	RewardMaxWords         = 40
	RewardEmptyPenalty     = 2.0
)

// RewardBreakdown is the transparent reward of one (prompt, response) pair
// and its parts. Score is the raw reward:
//
//		Score = 3·Relevance + Ending − 4·Repetition + Length
//
//	  - Relevance ∈ [0,1]: the fraction of the prompt's distinct content words
//	    (word tokens of 3+ characters that are not stop words) that the
//	    response uses; 0 when the prompt has none.
//	  - Ending: +0.5 when the response's last token is '.', '!' or '?', −0.5
//	    otherwise (cut off or empty).
//	  - Repetition ∈ [0,1]: 1 − distinct/total over the response's word
//	    trigrams (punctuation excluded); 0 with fewer than 3 words.
//	  - Length ≤ 0: with n response words, −(12−n)/12 below 12 words,
//	    −(n−40)/40 above 40, 0 between, and a further −2 when n = 0.
//
// Everything is computed on lowercase pre-tokens (SplitWords), so the reward
// does not depend on a model's vocabulary.
type RewardBreakdown struct {
	Relevance  float64 `json:"relevance"`
	Ending     float64 `json:"ending"`
	Repetition float64 `json:"repetition"`
	Length     float64 `json:"length"`
	Words      int     `json:"words"`
	// LengthBonus is x·Words when the reward carries a length bonus x
	// (WithLengthBonus; lm serve --reward-length-bonus), else 0.
	LengthBonus float64 `json:"length_bonus,omitempty"`
	Score       float64 `json:"score"`
}

// WithLengthBonus adds x per response word to the score: a reward model
// with a built-in preference for longer replies, for studying length
// drift (docs/length.md). x = 0 returns b unchanged.
func (b RewardBreakdown) WithLengthBonus(x float64) RewardBreakdown {
	if x == 0 {
		return b
	}
	b.LengthBonus = x * float64(b.Words)
	b.Score += b.LengthBonus
	return b
}

// stopWords are ignored by Relevance.
var stopWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`the and for you your are was were with that this what how why when where who
		can could should would will shall may might must have has had not but all any some about from into
		out over just also very too its it's i'm don't does did doing done get got make made want need know
		tell give good best way there their them they then than here ones one our ours she her him his mine
		let lot more most much many such only own same few each other which while start where's what's
		think like use used using please help thanks thank able every day days`) {
		m[w] = true
	}
	return m
}()

func contentWords(pieces []string) map[string]bool {
	out := map[string]bool{}
	for _, p := range pieces {
		if len(p) >= 3 && isWordRune([]rune(p)[0]) && !stopWords[p] && matchSpecial([]rune(p)) == "" {
			out[p] = true
		}
	}
	return out
}

// Reward scores response as an answer to prompt (both plain text).
func Reward(prompt, response string) RewardBreakdown {
	var b RewardBreakdown
	pw := contentWords(SplitWords(prompt))
	rp := SplitWords(response)
	if len(pw) > 0 {
		rw := contentWords(rp)
		hit := 0
		for w := range pw {
			if rw[w] {
				hit++
			}
		}
		b.Relevance = float64(hit) / float64(len(pw))
	}
	b.Ending = -RewardEndingBonus
	if n := len(rp); n > 0 && (rp[n-1] == "." || rp[n-1] == "!" || rp[n-1] == "?") {
		b.Ending = RewardEndingBonus
	}
	var words []string
	for _, p := range rp {
		if isWordRune([]rune(p)[0]) {
			words = append(words, p)
		}
	}
	b.Words = len(words)
	if len(words) >= 3 {
		seen := map[[3]string]bool{}
		for i := 0; i+2 < len(words); i++ {
			seen[[3]string{words[i], words[i+1], words[i+2]}] = true
		}
		total := len(words) - 2
		b.Repetition = 1 - float64(len(seen))/float64(total)
	}
	n := float64(len(words))
	switch {
	case len(words) < RewardMinWords:
		b.Length = -(RewardMinWords - n) / RewardMinWords
	case len(words) > RewardMaxWords:
		b.Length = -(n - RewardMaxWords) / RewardMaxWords
	}
	if len(words) == 0 {
		b.Length -= RewardEmptyPenalty
	}
	b.Score = RewardRelevanceWeight*b.Relevance + b.Ending - RewardRepetitionWeight*b.Repetition + b.Length
	return b
}

// RewardChat scores a conversation: the response is the content of the
// last message, which must be from the assistant, and the prompt is the
// content of all messages before it.
func RewardChat(messages []Message) (RewardBreakdown, error) {
	if len(messages) == 0 {
		return RewardBreakdown{}, fmt.Errorf("reward: no messages")
	}
	for _, m := range messages {
		if _, err := roleToken(m.Role); err != nil {
			return RewardBreakdown{}, fmt.Errorf("reward: %w", err)
		}
	}
	last := messages[len(messages)-1]
	if last.Role != "assistant" {
		return RewardBreakdown{}, fmt.Errorf("reward: the last message must be the assistant's response, got role %q", last.Role)
	}
	var prompt []string
	for _, m := range messages[:len(messages)-1] {
		prompt = append(prompt, m.Content)
	}
	return Reward(strings.Join(prompt, " "), last.Content), nil
}

// RewardText scores text rendered with the chat template (RenderChat of the
// prompt messages followed by the assistant response, with or without its
// closing <|end|>). The response is the content after the last
// <|assistant|>; the prompt is every message content before it. Text with
// no <|assistant|> marker is scored as a response to an empty prompt.
func RewardText(text string) RewardBreakdown {
	prompt, response := SplitRendered(text)
	return Reward(prompt, response)
}

// SplitRendered splits chat-template text into the prompt's message
// contents (joined by spaces) and the last assistant message's content.
// Role and end tokens are removed.
func SplitRendered(text string) (prompt, response string) {
	pieces := SplitWords(text)
	last := -1
	for i, p := range pieces {
		if p == TokAssistant {
			last = i
		}
	}
	keep := func(ps []string) string {
		var out []string
		for _, p := range ps {
			if matchSpecial([]rune(p)) == "" {
				out = append(out, p)
			}
		}
		return joinPieces(out)
	}
	if last < 0 {
		return "", keep(pieces)
	}
	resp := pieces[last+1:]
	for i, p := range resp {
		if p == TokEnd {
			resp = resp[:i]
			break
		}
	}
	return keep(pieces[:last]), keep(resp)
}

// Sigmoid is 1/(1+e^−x), the activation /classify applies when
// use_activation is true.
func Sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
