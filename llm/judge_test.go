package llm

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseJudgeScore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		reply string
		want  float64
		ok    bool
	}{
		{name: "bare number", reply: "7", want: 7, ok: true},
		{name: "with newline", reply: "\n 9\n", want: 9, ok: true},
		{name: "ten", reply: "10", want: 10, ok: true},
		{name: "decimal", reply: "7.5", want: 7.5, ok: true},
		{name: "out of ten", reply: "I would give it 8/10.", want: 8, ok: true},
		{name: "out of ten words", reply: "On a scale of 1 to 10: 6 out of 10", want: 6, ok: true},
		{name: "labelled", reply: "Score: 4", want: 4, ok: true},
		{name: "labelled bold", reply: "**Grade: 3**", want: 3, ok: true},
		{name: "first number in range", reply: "It covers 12 points, so 9", want: 9, ok: true},
		{name: "no number", reply: "A fine answer.", ok: false},
		{name: "zero", reply: "0", ok: false},
		{name: "too large", reply: "11", ok: false},
		{name: "empty", reply: "", ok: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := parseJudgeScore(tc.reply)
			require.Equal(t, tc.ok, ok)
			if tc.ok {
				require.Equal(t, tc.want, got)
			}
		})
	}
}

func TestJudgeMessagesEmbedConversationAndReply(t *testing.T) {
	t.Parallel()
	msgs := judgeMessages([]Message{{Role: "user", Content: "Name a primary colour."}}, "Red.")
	require.Len(t, msgs, 2)
	require.Equal(t, "system", msgs[0].Role)
	require.Equal(t, "user", msgs[1].Role)
	require.Contains(t, msgs[1].Content, "=== Conversation ===\nUser: Name a primary colour.\n=== Reply to grade ===\nRed.\n=== End of reply ===")
	require.False(t, strings.Contains(msgs[1].Content, "{reply}") || strings.Contains(msgs[1].Content, "{conversation}"))
}
