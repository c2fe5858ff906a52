package tinylm

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSplitWords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "lowercase and punctuation", in: "Hello, World!", want: []string{"hello", ",", "world", "!"}},
		{name: "apostrophes and digits stay in words", in: "don't wait 10 days", want: []string{"don't", "wait", "10", "days"}},
		{name: "special tokens literal", in: "<|user|>hi<|end|> <|assistant|>", want: []string{"<|user|>", "hi", "<|end|>", "<|assistant|>"}},
		{name: "unk literal", in: "a <unk> b", want: []string{"a", "<unk>", "b"}},
		{name: "lone angle bracket", in: "a < b", want: []string{"a", "<", "b"}},
		{name: "white space only", in: " \t\n ", want: nil},
		{name: "non-ascii runes are single tokens", in: "café", want: []string{"caf", "é"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, SplitWords(tc.in))
		})
	}
}

func testTokenizer(t *testing.T) *Tokenizer {
	t.Helper()
	tok, err := NewTokenizer([]string{TokUnk, TokSystem, TokUser, TokAssistant, TokEnd, "hello", "world", ",", "!", "how", "are", "you", "?", "fine", "."})
	require.NoError(t, err)
	return tok
}

func TestTokenizerEncodeDecode(t *testing.T) {
	t.Parallel()
	tok := testTokenizer(t)
	ids := tok.Encode("Hello, world! How are YOU?")
	require.Equal(t, []int{5, 7, 6, 8, 9, 10, 11, 12}, ids)
	require.Equal(t, "hello, world! how are you?", tok.Decode(ids, false))
	require.Equal(t, []int{UnkID, 13}, tok.Encode("great fine"), "unknown words map to <unk>")
	require.Equal(t, "<unk> fine", tok.Decode([]int{UnkID, 13}, true), "<unk> survives skipSpecial so text round-trips")
	require.Equal(t, "fine.", tok.Decode([]int{13, 14, EndID}, true), "the end token is skipped")
	require.Equal(t, "fine. <|end|>", tok.Decode([]int{13, 14, EndID}, false))
	require.Equal(t, TokUnk, tok.Token(999))
	text := tok.Decode([]int{9, 10, 11, 12, 13, 14}, true)
	require.Equal(t, []int{9, 10, 11, 12, 13, 14}, tok.Encode(text), "decode then encode is the identity")
}

// BOS is one past the last word, so no word's id moved; its text is a
// special token, skipped from generated text as vLLM's
// skip_special_tokens skips a BOS.
func TestTokenizerBOS(t *testing.T) {
	t.Parallel()
	tok := testTokenizer(t)
	bos := tok.BOS()
	require.Equal(t, tok.Size(), bos)
	require.Equal(t, TokBOS, tok.Token(bos))
	require.Equal(t, TokUnk, tok.Token(bos+1))
	require.Equal(t, []string{"<|bos|>", "<|user|>", "hi"}, SplitWords("<|BOS|><|user|>hi"))
	require.Equal(t, []int{bos, UserID, 13}, tok.Encode("<|bos|> <|user|> fine"))
	require.Equal(t, []int{bos, bos, UserID, 13}, tok.AddSpecial(tok.Encode("<|bos|> <|user|> fine")), "add_special_tokens adds BOS even in front of one")
	require.Equal(t, "fine", tok.Decode([]int{bos, UserID, 13}, true))
	require.Equal(t, "<|bos|> <|user|> fine", tok.Decode([]int{bos, UserID, 13}, false))
	require.True(t, tok.IsSpecial(bos))
	require.False(t, tok.IsSpecial(UnkID))

	text, err := RenderChatTemplate([]Message{{Role: "user", Content: "Fine."}}, true)
	require.NoError(t, err)
	require.Equal(t, "<|bos|> <|user|> fine. <|end|> <|assistant|>", text)
	ids, err := tok.EncodeChatTemplate([]Message{{Role: "user", Content: "Fine."}}, true)
	require.NoError(t, err)
	require.Equal(t, tok.Encode(text), ids)
}

// BOS has no parameters: the context, the distribution after it and every
// score of the other tokens are those of the sequence without it.
func TestModelBOSNeutral(t *testing.T) {
	t.Parallel()
	m := Builtin()
	bos := m.Tok.BOS()
	prompt, err := m.Tok.EncodeChat([]Message{{Role: "user", Content: "how do i cook rice?"}}, true)
	require.NoError(t, err)
	resp := m.Tok.Encode("boil it in water . <|end|>")
	withBOS := append([]int{bos}, prompt...)
	require.Equal(t, m.Context(prompt), m.Context(withBOS))
	require.Equal(t, m.Context(nil), m.Context([]int{bos}))
	a, err := m.ResponseLogProbs(prompt, resp)
	require.NoError(t, err)
	b, err := m.ResponseLogProbs(withBOS, resp)
	require.NoError(t, err)
	require.Equal(t, a, b)
	// After BOS alone, h is the zero vector: the logits are the bias.
	z := make([]float64, m.V())
	m.Logits([]int{bos}, bos, z)
	require.Equal(t, m.B, z)
	_, err = m.ResponseLogProbs(prompt, []int{bos})
	require.ErrorContains(t, err, "outside the vocabulary", "BOS is never a response token")
}

func TestNewTokenizerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		words []string
		want  string
	}{
		{name: "too small", words: []string{TokUnk, TokSystem, TokUser, TokAssistant, TokEnd}, want: "at least one more"},
		{name: "special order", words: []string{TokSystem, TokUnk, TokUser, TokAssistant, TokEnd, "a"}, want: "want special token"},
		{name: "duplicate", words: []string{TokUnk, TokSystem, TokUser, TokAssistant, TokEnd, "a", "a"}, want: "twice"},
		{name: "not a single token", words: []string{TokUnk, TokSystem, TokUser, TokAssistant, TokEnd, "a b"}, want: "not a single lowercase token"},
		{name: "uppercase", words: []string{TokUnk, TokSystem, TokUser, TokAssistant, TokEnd, "Hello"}, want: "not a single lowercase token"},
		{name: "bos is not a word", words: []string{TokUnk, TokSystem, TokUser, TokAssistant, TokEnd, "a", TokBOS}, want: "the BOS token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewTokenizer(tc.words)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestRenderChat(t *testing.T) {
	t.Parallel()
	tok := testTokenizer(t)
	msgs := []Message{{Role: "system", Content: "Fine."}, {Role: "user", Content: "How are you?"}}
	text, err := RenderChat(msgs, true)
	require.NoError(t, err)
	require.Equal(t, "<|system|> fine. <|end|> <|user|> how are you? <|end|> <|assistant|>", text)
	ids, err := tok.EncodeChat(msgs, true)
	require.NoError(t, err)
	require.Equal(t, []int{SystemID, 13, 14, EndID, UserID, 9, 10, 11, 12, EndID, AssistantID}, ids)

	noGen, err := tok.EncodeChat(msgs, false)
	require.NoError(t, err)
	require.Equal(t, ids[:len(ids)-1], noGen)

	empty, err := RenderChat([]Message{{Role: "assistant"}}, false)
	require.NoError(t, err)
	require.Equal(t, "<|assistant|> <|end|>", empty)

	_, err = RenderChat([]Message{{Role: "tool", Content: "x"}}, true)
	require.ErrorIs(t, err, ErrBadRole)
}
