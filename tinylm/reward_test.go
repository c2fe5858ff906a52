package tinylm

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func numberedWords(n int) string {
	var w []string
	for i := 1; i <= n; i++ {
		w = append(w, fmt.Sprintf("word%d", i))
	}
	return strings.Join(w, " ")
}

func TestReward(t *testing.T) {
	t.Parallel()
	// Every expected value is worked out by hand from the formula in
	// RewardBreakdown's doc comment.
	tests := []struct {
		name     string
		prompt   string
		response string
		want     RewardBreakdown
	}{
		{
			// content {cook, pasta} both used; 6 words, 4 distinct trigrams.
			name: "relevant short answer", prompt: "How do I cook pasta?", response: "Cook the pasta in salty water.",
			want: RewardBreakdown{Relevance: 1, Ending: 0.5, Repetition: 0, Length: -0.5, Words: 6, Score: 3.0},
		},
		{
			name: "empty response", prompt: "How do I cook pasta?", response: "",
			want: RewardBreakdown{Relevance: 0, Ending: -0.5, Repetition: 0, Length: -3, Words: 0, Score: -3.5},
		},
		{
			// content {long, bread, last}, none used; 9 words, 3 distinct of 7 trigrams.
			name: "repetitive answer", prompt: "How long does bread last?", response: "a few days. a few days. a few days.",
			want: RewardBreakdown{Relevance: 0, Ending: 0.5, Repetition: 4.0 / 7, Length: -0.25, Words: 9, Score: 0.25 - 16.0/7},
		},
		{
			// content {word3, word77}, one used; 50 words, cut off.
			name: "long answer without an ending", prompt: "what about word3 and word77?", response: numberedWords(50),
			want: RewardBreakdown{Relevance: 0.5, Ending: -0.5, Repetition: 0, Length: -0.25, Words: 50, Score: 1.5 - 0.5 - 0.25},
		},
		{
			// prompt has only stop words and short words: relevance 0.
			name: "prompt without content words", prompt: "how do i do it?", response: numberedWords(20) + "!",
			want: RewardBreakdown{Relevance: 0, Ending: 0.5, Repetition: 0, Length: 0, Words: 20, Score: 0.5},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Reward(tc.prompt, tc.response)
			require.InDelta(t, tc.want.Relevance, got.Relevance, 1e-12)
			require.InDelta(t, tc.want.Ending, got.Ending, 1e-12)
			require.InDelta(t, tc.want.Repetition, got.Repetition, 1e-12)
			require.InDelta(t, tc.want.Length, got.Length, 1e-12)
			require.Equal(t, tc.want.Words, got.Words)
			require.InDelta(t, tc.want.Score, got.Score, 1e-12)
		})
	}
}

func TestRewardTextAndChatAgree(t *testing.T) {
	t.Parallel()
	msgs := []Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "How do I water tomatoes?"}}
	response := "Water the tomatoes early in the morning so the leaves dry during the day."
	rendered, err := RenderChat(append(msgs, Message{Role: "assistant", Content: response}), false)
	require.NoError(t, err)
	want := Reward("Be brief. How do I water tomatoes?", response)

	fromText := RewardText(rendered)
	require.Equal(t, want, fromText)
	require.Equal(t, want, RewardText(strings.TrimSuffix(rendered, " <|end|>")), "the closing <|end|> is optional")
	fromChat, err := RewardChat(append(msgs, Message{Role: "assistant", Content: response}))
	require.NoError(t, err)
	require.Equal(t, want, fromChat)

	_, err = RewardChat(msgs)
	require.ErrorContains(t, err, "last message must be the assistant")
	_, err = RewardChat(nil)
	require.ErrorContains(t, err, "no messages")
}

func TestSplitRendered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, text, prompt, response string
	}{
		{name: "prompt and response", text: "<|user|> hi there? <|end|> <|assistant|> hello! <|end|>", prompt: "hi there?", response: "hello!"},
		{name: "open generation prompt", text: "<|user|> hi <|end|> <|assistant|>", prompt: "hi", response: ""},
		{name: "no markers: all response", text: "Just text.", prompt: "", response: "just text."},
		{name: "last assistant turn wins", text: "<|user|> a <|end|> <|assistant|> b <|end|> <|user|> c <|end|> <|assistant|> d <|end|>", prompt: "a b c", response: "d"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, r := SplitRendered(tc.text)
			require.Equal(t, tc.prompt, p)
			require.Equal(t, tc.response, r)
		})
	}
}

func ExampleReward() {
	b := Reward("How do I cook pasta?", "Cook the pasta in salty water.")
	fmt.Printf("relevance %.2f, ending %+.1f, repetition %.2f, length %+.2f → score %.2f, sigmoid %.3f\n",
		b.Relevance, b.Ending, b.Repetition, b.Length, b.Score, Sigmoid(b.Score))
	// Output: relevance 1.00, ending +0.5, repetition 0.00, length -0.50 → score 3.00, sigmoid 0.953
}
