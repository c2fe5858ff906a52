// Package prompt defines a prompt's canonical form and identity, and reads
// prompt files. A prompt is a list of chat messages; its identity is the
// sha256 of the canonical JSON of those messages, so the same conversation
// loaded from two files, or by two runs, is one prompt.
package prompt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
)

// Roles a message may have.
var Roles = []string{"system", "user", "assistant"}

// Message is one chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Prompt is a conversation to be answered, with where it came from.
type Prompt struct {
	Messages []Message
	// Hash is the sha256 hex of the canonical messages JSON.
	Hash string
	// Source is the file it was read from, or "evolved".
	Source string
	// SourceID is the optional "id" of the file line.
	SourceID string
	// ParentID is the prompt an evolved prompt was rewritten from (0 for
	// none), and Strategy the evolution strategy used.
	ParentID int64
	Strategy string
}

// New builds a prompt from messages, computing its hash.
func New(msgs []Message, source, sourceID string) Prompt {
	return Prompt{Messages: msgs, Hash: Hash(msgs), Source: source, SourceID: sourceID}
}

// Canonical is the JSON form hashed: an array of {"role","content"}
// objects in that key order, with no insignificant white space.
func Canonical(msgs []Message) []byte {
	b, _ := json.Marshal(msgs) // cannot fail: strings only
	return b
}

// Hash is the hex sha256 of Canonical(msgs).
func Hash(msgs []Message) string {
	sum := sha256.Sum256(Canonical(msgs))
	return hex.EncodeToString(sum[:])
}

// Text is the last user message's content, the prompt as people read it.
func Text(msgs []Message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return msgs[i].Content
		}
	}
	return ""
}

// Chars counts the characters (runes) of all message contents.
func Chars(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		n += len([]rune(m.Content))
	}
	return n
}

// Normalize trims surrounding white space for comparisons of near-equal
// prompts (evolved duplicates).
func Normalize(s string) string {
	return strings.Join(strings.Fields(strings.ToLower(s)), " ")
}
