package tinylm

import (
	"errors"
	"fmt"
	"strings"
)

// Special tokens. Their ids are fixed: every vocabulary starts with them in
// this order, so UnkID..EndID are the same in every model.
const (
	TokUnk       = "<unk>"
	TokSystem    = "<|system|>"
	TokUser      = "<|user|>"
	TokAssistant = "<|assistant|>"
	TokEnd       = "<|end|>"
	// TokBOS is the beginning-of-sequence token. It is not a vocabulary
	// word: its id is the vocabulary size (Tokenizer.BOS), one past the
	// last word, so adding it moved no id of an existing model, and the
	// model gives it no parameters (see Model).
	TokBOS = "<|bos|>"
)

// Ids of the special tokens in every vocabulary. EndID is the end-of-turn
// token: sampling stops when it is drawn.
const (
	UnkID = iota
	SystemID
	UserID
	AssistantID
	EndID
	// NumSpecial is the number of special tokens at the start of the vocabulary.
	NumSpecial
)

var specialTokens = [NumSpecial]string{TokUnk, TokSystem, TokUser, TokAssistant, TokEnd}

// literalSpecials are the special tokens the pre-tokenizer recognises in
// text: the vocabulary's and BOS.
var literalSpecials = [...]string{TokUnk, TokSystem, TokUser, TokAssistant, TokEnd, TokBOS}

// Tokenizer is the lowercase word-level tokenizer of a model: a word is a
// run of [a-z0-9'], every other non-space character is a token of its own,
// and the special tokens are recognised literally. Words outside the
// vocabulary map to UnkID. A Tokenizer is immutable and safe for concurrent
// use.
type Tokenizer struct {
	words []string
	ids   map[string]int
}

// NewTokenizer builds a tokenizer over words. The first NumSpecial words must
// be the special tokens in id order; every other word must be a single
// pre-token (a word run or one punctuation character) and appear once.
func NewTokenizer(words []string) (*Tokenizer, error) {
	if len(words) <= NumSpecial {
		return nil, fmt.Errorf("vocabulary has %d words; it needs the %d special tokens and at least one more", len(words), NumSpecial)
	}
	t := &Tokenizer{words: append([]string(nil), words...), ids: make(map[string]int, len(words))}
	for i, w := range words {
		if i < NumSpecial {
			if w != specialTokens[i] {
				return nil, fmt.Errorf("vocabulary word %d is %q; want special token %q", i, w, specialTokens[i])
			}
		} else if w == TokBOS {
			return nil, fmt.Errorf("vocabulary word %d is %q, the BOS token, which is not a vocabulary word", i, w)
		} else if pre := SplitWords(w); len(pre) != 1 || pre[0] != w {
			return nil, fmt.Errorf("vocabulary word %d (%q) is not a single lowercase token", i, w)
		}
		if _, dup := t.ids[w]; dup {
			return nil, fmt.Errorf("vocabulary word %q appears twice", w)
		}
		t.ids[w] = i
	}
	return t, nil
}

// Size is the number of tokens in the vocabulary, special tokens included
// and BOS excluded: the model's output distribution is over these.
func (t *Tokenizer) Size() int { return len(t.words) }

// BOS is the id of the beginning-of-sequence token <|bos|>: Size(), one
// past the last vocabulary word. Encode maps the literal text "<|bos|>" to
// it; AddSpecial puts it in front of a token sequence.
func (t *Tokenizer) BOS() int { return len(t.words) }

// IsSpecial reports whether id is a special token other than <unk>: a role
// token, <|end|> or BOS — the tokens vLLM's skip_special_tokens leaves out
// of generated text.
func (t *Tokenizer) IsSpecial(id int) bool {
	return (id > UnkID && id < NumSpecial) || id == t.BOS()
}

// AddSpecial returns ids with BOS in front, as a Hugging Face tokenizer
// with a BOS token (Llama's, for one) does for add_special_tokens=True:
// the BOS is added whether or not ids already start with one.
func (t *Tokenizer) AddSpecial(ids []int) []int {
	return append([]int{t.BOS()}, ids...)
}

// Words returns a copy of the vocabulary in id order.
func (t *Tokenizer) Words() []string { return append([]string(nil), t.words...) }

// Token returns the text of token id (TokBOS for BOS), or TokUnk for an id
// out of range.
func (t *Tokenizer) Token(id int) string {
	if id == t.BOS() {
		return TokBOS
	}
	if id < 0 || id >= len(t.words) {
		return TokUnk
	}
	return t.words[id]
}

// ID returns the id of a vocabulary word and whether it is in the vocabulary.
func (t *Tokenizer) ID(word string) (int, bool) {
	id, ok := t.ids[word]
	return id, ok
}

// Encode tokenizes text: it lowercases, splits with SplitWords and maps each
// piece to its id (UnkID when unknown; the literal "<|bos|>" to BOS). It
// adds no special token of its own, as a Hugging Face tokenizer with
// add_special_tokens=False; see AddSpecial.
func (t *Tokenizer) Encode(text string) []int {
	pieces := SplitWords(text)
	ids := make([]int, len(pieces))
	for i, p := range pieces {
		if p == TokBOS {
			ids[i] = t.BOS()
		} else if id, ok := t.ids[p]; ok {
			ids[i] = id
		} else {
			ids[i] = UnkID
		}
	}
	return ids
}

// Decode turns ids back into text: tokens are joined with single spaces and
// the space before a punctuation token is dropped. With skipSpecial the
// role, end-of-turn and BOS tokens are left out, as vLLM does by default for
// generated text; <unk> stays as the literal "<unk>" so that text → ids → text → ids
// is stable. Ids out of range decode as <unk>.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) string {
	var b strings.Builder
	for _, id := range ids {
		if skipSpecial && t.IsSpecial(id) {
			continue
		}
		tok := t.Token(id)
		if b.Len() > 0 && !isPunct(tok) {
			b.WriteByte(' ')
		}
		b.WriteString(tok)
	}
	return b.String()
}

// isPunct reports whether tok is a single punctuation token, which Decode
// attaches to the previous token without a space.
func isPunct(tok string) bool {
	if len(tok) == 0 {
		return false
	}
	r := []rune(tok)
	return len(r) == 1 && !isWordRune(r[0])
}

func isWordRune(r rune) bool {
	return (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '\''
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\v' || r == 0x85 || r == 0xA0
}

// SplitWords is the pre-tokenizer: it lowercases text and splits it into
// special tokens (matched literally), word runs of [a-z0-9'] and single
// characters for everything else that is not white space.
func SplitWords(text string) []string {
	text = strings.ToLower(text)
	var out []string
	rs := []rune(text)
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case isSpace(r):
			i++
		case r == '<':
			if sp := matchSpecial(rs[i:]); sp != "" {
				out = append(out, sp)
				i += len([]rune(sp))
				continue
			}
			out = append(out, "<")
			i++
		case isWordRune(r):
			j := i
			for j < len(rs) && isWordRune(rs[j]) {
				j++
			}
			out = append(out, string(rs[i:j]))
			i = j
		default:
			out = append(out, string(r))
			i++
		}
	}
	return out
}

func matchSpecial(rs []rune) string {
	for _, sp := range literalSpecials {
		n := len(sp) // special tokens are ASCII
		if len(rs) >= n && string(rs[:n]) == sp {
			return sp
		}
	}
	return ""
}

// Message is one chat turn: Role is "system", "user" or "assistant".
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ErrBadRole is returned for a chat message whose role the template does not know.
var ErrBadRole = errors.New("unknown chat role")

func roleToken(role string) (string, error) {
	switch role {
	case "system":
		return TokSystem, nil
	case "user":
		return TokUser, nil
	case "assistant":
		return TokAssistant, nil
	}
	return "", fmt.Errorf("%w %q (use system, user or assistant)", ErrBadRole, role)
}

// RenderChat renders messages in the model's turn format — the chat
// template without its leading BOS (RenderChatTemplate): each message becomes
// "<|role|> content <|end|>", messages are joined by single spaces, and with
// addGenerationPrompt a final "<|assistant|>" opens the reply. Content is
// lowercased and normalised through the tokenizer's pre-tokenizer, so
// RenderChat(m) tokenizes to exactly EncodeChat(m).
func RenderChat(messages []Message, addGenerationPrompt bool) (string, error) {
	var parts []string
	for _, m := range messages {
		tok, err := roleToken(m.Role)
		if err != nil {
			return "", err
		}
		parts = append(parts, tok)
		if c := joinPieces(SplitWords(m.Content)); c != "" {
			parts = append(parts, c)
		}
		parts = append(parts, TokEnd)
	}
	if addGenerationPrompt {
		parts = append(parts, TokAssistant)
	}
	return strings.Join(parts, " "), nil
}

func joinPieces(pieces []string) string {
	var b strings.Builder
	for _, p := range pieces {
		if b.Len() > 0 && !isPunct(p) {
			b.WriteByte(' ')
		}
		b.WriteString(p)
	}
	return b.String()
}

// EncodeChat tokenizes messages with the turn format of RenderChat, without
// BOS: the form the model is trained and evaluated on. BOS carries no
// parameters, so the model's numbers are the same with it (see Model).
func (t *Tokenizer) EncodeChat(messages []Message, addGenerationPrompt bool) ([]int, error) {
	text, err := RenderChat(messages, addGenerationPrompt)
	if err != nil {
		return nil, err
	}
	return t.Encode(text), nil
}

// RenderChatTemplate renders messages with the served chat template: BOS,
// a space, then RenderChat — "<|bos|> <|user|> hi <|end|> <|assistant|>" —
// the way Llama 3's template writes <|begin_of_text|> before the first
// message. It is what tinylm's server applies to chat requests.
func RenderChatTemplate(messages []Message, addGenerationPrompt bool) (string, error) {
	text, err := RenderChat(messages, addGenerationPrompt)
	if err != nil {
		return "", err
	}
	return TokBOS + " " + text, nil
}

// EncodeChatTemplate tokenizes messages with the served chat template
// (RenderChatTemplate): BOS followed by EncodeChat.
func (t *Tokenizer) EncodeChatTemplate(messages []Message, addGenerationPrompt bool) ([]int, error) {
	ids, err := t.EncodeChat(messages, addGenerationPrompt)
	if err != nil {
		return nil, err
	}
	return t.AddSpecial(ids), nil
}
