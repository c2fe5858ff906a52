package prompt

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		text string
		want []string
	}{
		{"case", "Hello WORLD", []string{"hello", "world"}},
		{"punctuation separates", "Hello,world! (really)", []string{"hello", "world", "really"}},
		{"white space of any kind", " hello \t\n  world\u00a0again ", []string{"hello", "world", "again"}},
		{"full-width forms (NFKC)", "Ｈｅｌｌｏ ｗｏｒｌｄ", []string{"hello", "world"}},
		{"ligature (NFKC)", "ﬁnd it", []string{"find", "it"}},
		{"sharp s folds to ss", "STRASSE Straße", []string{"strasse", "strasse"}},
		{"final sigma folds", "ΟΔΟΣ οδος", []string{"οδοσ", "οδοσ"}},
		{"decomposed accent composes", "cafe\u0301 café", []string{"café", "café"}},
		{"accents are kept", "cafe café", []string{"cafe", "café"}},
		{"digits and symbols", "2+2=4, $5", []string{"2", "2", "4", "5"}},
		{"apostrophes separate", "don't don’t", []string{"don", "t", "don", "t"}},
		{"nothing but punctuation", "?!…", []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Words(tc.text))
		})
	}
}

func TestContentLeavesOutSystemMessages(t *testing.T) {
	t.Parallel()
	msgs := []Message{
		{Role: "system", Content: "You are helpful."},
		{Role: "user", Content: "first"},
		{Role: "assistant", Content: "reply"},
		{Role: "user", Content: "second"},
	}
	require.Equal(t, "first\nreply\nsecond", Content(msgs))
}
