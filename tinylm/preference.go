package tinylm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/selfplay/selfplay/internal/jsonl"
)

// Preference is one preference pair in text form: the prompt's chat
// messages and the chosen and rejected assistant replies.
type Preference struct {
	Prompt   []Message
	Chosen   string
	Rejected string
}

// PreferencePair is a Preference encoded for one vocabulary: the rendered
// chat prompt (ending in <|assistant|>) and the two responses, each ending
// in <|end|> as a served reply that stopped does.
type PreferencePair struct {
	Prompt   []int
	Chosen   []int
	Rejected []int
}

// EncodePreference renders p's prompt with a generation prompt and encodes
// both replies with <|end|> appended, the way TrainMLE encodes a reply. The
// prompt must be non-empty.
func (t *Tokenizer) EncodePreference(p Preference) (PreferencePair, error) {
	prompt, err := t.EncodeChat(p.Prompt, true)
	if err != nil {
		return PreferencePair{}, err
	}
	if len(p.Prompt) == 0 {
		return PreferencePair{}, errors.New("empty prompt")
	}
	return PreferencePair{
		Prompt:   prompt,
		Chosen:   append(t.Encode(p.Chosen), EndID),
		Rejected: append(t.Encode(p.Rejected), EndID),
	}, nil
}

// ReadPreferencesFile reads a preference dataset in TRL's JSON-lines
// formats; see ReadPreferences.
func ReadPreferencesFile(path string) ([]Preference, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read preferences: %w", err)
	}
	defer f.Close()
	return ReadPreferences(f, path)
}

// ReadPreferences reads a preference dataset from r, one JSON object a
// line, in either of TRL's preference formats:
//
//   - conversational (what selfplay exports): "prompt" a list of
//     {"role", "content"} messages, "chosen" and "rejected" each a list
//     holding one assistant message;
//   - standard: "prompt", "chosen" and "rejected" plain strings (the prompt
//     becomes one user message).
//
// Other fields (score columns, ids) are ignored and blank lines skipped. A
// bad line fails the whole read with "NAME:LINE: reason"; a dataset with no
// pairs is an error.
func ReadPreferences(r io.Reader, name string) ([]Preference, error) {
	var out []Preference
	err := jsonl.Each(r, name, func(n int, line []byte) error {
		p, err := parsePreference(line)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, n, err)
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no preference pairs", name)
	}
	return out, nil
}

func parsePreference(line []byte) (Preference, error) {
	var row struct {
		Prompt   json.RawMessage `json:"prompt"`
		Chosen   json.RawMessage `json:"chosen"`
		Rejected json.RawMessage `json:"rejected"`
	}
	if err := json.Unmarshal(line, &row); err != nil {
		return Preference{}, fmt.Errorf("not a JSON object: %w", err)
	}
	var p Preference
	switch msgs, text, err := messagesOrText(row.Prompt, "prompt"); {
	case err != nil:
		return Preference{}, err
	case msgs != nil:
		p.Prompt = msgs
	default:
		p.Prompt = []Message{{Role: "user", Content: text}}
	}
	if len(p.Prompt) == 0 {
		return Preference{}, errors.New(`"prompt" is empty`)
	}
	for _, m := range p.Prompt {
		if _, err := roleToken(m.Role); err != nil {
			return Preference{}, fmt.Errorf(`"prompt": %w`, err)
		}
	}
	var err error
	if p.Chosen, err = reply(row.Chosen, "chosen"); err != nil {
		return Preference{}, err
	}
	if p.Rejected, err = reply(row.Rejected, "rejected"); err != nil {
		return Preference{}, err
	}
	return p, nil
}

// messagesOrText decodes a field that is either a message list or a string.
func messagesOrText(raw json.RawMessage, field string) ([]Message, string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || bytes.Equal(raw, []byte("null")):
		return nil, "", fmt.Errorf("%q is missing", field)
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, "", fmt.Errorf("%q: %w", field, err)
		}
		return nil, s, nil
	case raw[0] == '[':
		var msgs []Message
		if err := json.Unmarshal(raw, &msgs); err != nil {
			return nil, "", fmt.Errorf("%q: want a list of {\"role\", \"content\"} messages: %w", field, err)
		}
		if msgs == nil {
			msgs = []Message{}
		}
		return msgs, "", nil
	default:
		return nil, "", fmt.Errorf("%q: want a string or a list of messages", field)
	}
}

// reply returns the assistant text of a chosen or rejected field.
func reply(raw json.RawMessage, field string) (string, error) {
	msgs, text, err := messagesOrText(raw, field)
	if err != nil || msgs == nil {
		return text, err
	}
	if len(msgs) != 1 || msgs[0].Role != "assistant" {
		roles := make([]string, len(msgs))
		for i, m := range msgs {
			roles[i] = m.Role
		}
		return "", fmt.Errorf("%q: want exactly one assistant message, got roles %v", field, roles)
	}
	return msgs[0].Content, nil
}
