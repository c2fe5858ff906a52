package prompt

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// evolveTemplates hold this project's instructions for each evolution
// strategy (DESIGN §1.2). %s is the original request.
var evolveTemplates = map[string]string{
	"breadth": "Here is a request someone made:\n\n%s\n\n" +
		"Write one new request on a different but related topic, about as hard as this one, " +
		"that stands on its own. Reply with the new request only.",
	"deepen": "Here is a request someone made:\n\n%s\n\n" +
		"Rewrite it into a harder version that calls for deeper knowledge or more careful thought. " +
		"Reply with the rewritten request only.",
	"constraints": "Here is a request someone made:\n\n%s\n\n" +
		"Rewrite it adding one or two requirements the answer must meet, such as a format, a length, " +
		"or something to include or avoid. Reply with the rewritten request only.",
	"concretize": "Here is a request someone made:\n\n%s\n\n" +
		"Rewrite it so that it asks about one specific, concrete case instead of a general one. " +
		"Reply with the rewritten request only.",
	"reasoning": "Here is a request someone made:\n\n%s\n\n" +
		"Rewrite it so that a good answer needs several explicit steps of reasoning. " +
		"Reply with the rewritten request only.",
}

// EvolveMessages is the conversation that asks a model to rewrite the
// prompt with a strategy.
func EvolveMessages(strategy string, original []Message) ([]Message, error) {
	tmpl, ok := evolveTemplates[strategy]
	if !ok {
		return nil, fmt.Errorf("unknown evolution strategy %q", strategy)
	}
	return []Message{{Role: "user", Content: fmt.Sprintf(tmpl, Text(original))}}, nil
}

// labels a model may put before its rewritten request.
var labels = []string{"new request:", "rewritten request:", "request:", "new question:", "rewritten question:", "question:"}

// CleanEvolved trims a model's rewrite to the request itself: white space,
// a leading label such as "Rewritten request:", and surrounding quotes.
func CleanEvolved(s string) string {
	s = strings.TrimSpace(s)
	lower := strings.ToLower(s)
	for _, l := range labels {
		if strings.HasPrefix(lower, l) {
			s = strings.TrimSpace(s[len(l):])
			break
		}
	}
	if len(s) >= 2 {
		for _, q := range []string{`"`, "'", "“"} {
			if strings.HasPrefix(s, q) {
				end := q
				if q == "“" {
					end = "”"
				}
				if strings.HasSuffix(s, end) && len(s) > len(q)+len(end) {
					s = strings.TrimSpace(s[len(q) : len(s)-len(end)])
				}
			}
		}
	}
	return s
}

// Filter says why an evolved request is dropped, or "" to keep it: it must
// be non-empty, within lengthRatio of the original's length in characters
// (either way), at most maxChars characters, and not the original again.
func Filter(evolved string, original []Message, lengthRatio float64, maxChars int) string {
	n := utf8.RuneCountInString(evolved)
	orig := utf8.RuneCountInString(Text(original))
	switch {
	case strings.TrimSpace(evolved) == "":
		return "empty"
	case maxChars > 0 && n > maxChars:
		return "over max_prompt_chars"
	case lengthRatio > 0 && float64(n) > lengthRatio*float64(orig):
		return "too long for length_ratio"
	case lengthRatio > 0 && float64(n)*lengthRatio < float64(orig):
		return "too short for length_ratio"
	case Normalize(evolved) == Normalize(Text(original)):
		return "same as the original"
	}
	return ""
}

// Evolved builds the new prompt: the original's system messages, then the
// evolved request as the user message.
func Evolved(original []Message, request string, parentID int64, strategy string) Prompt {
	var msgs []Message
	for _, m := range original {
		if m.Role == "system" {
			msgs = append(msgs, m)
		}
	}
	msgs = append(msgs, Message{Role: "user", Content: request})
	p := New(msgs, "evolved", "")
	p.ParentID, p.Strategy = parentID, strategy
	return p
}
