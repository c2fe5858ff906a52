package llm

import (
	"fmt"
	"sort"
	"strings"
)

// ChatTemplate renders a conversation as the text a model's chat template
// produces, for reward servers that take text (get_reward) or that batch
// texts in one request (classify, pooling with input lists). It covers the
// common role-tag templates: Begin, then for each message Prefix(role) +
// content + Suffix(role), then, for a prompt awaiting a reply,
// Prefix("assistant") alone. It must match the reward model's own template;
// a mismatch silently lowers reward quality, which is why the chat form
// (server-side templating) is the default for classify and pooling.
type ChatTemplate struct {
	// Name identifies the template in errors and logs.
	Name string
	// Begin is written once before the first message (e.g. a BOS token).
	Begin string
	// Prefix and Suffix per role; "*" is the fallback for other roles, and
	// "{role}" in a fallback is replaced with the role name.
	Prefix, Suffix map[string]string
}

// Built-in templates, selectable by name with TemplateByName.
var (
	// TemplateChatML is ChatML (Qwen, many fine-tunes):
	// <|im_start|>role\ncontent<|im_end|>\n.
	TemplateChatML = ChatTemplate{
		Name:   "chatml",
		Prefix: map[string]string{"*": "<|im_start|>{role}\n"},
		Suffix: map[string]string{"*": "<|im_end|>\n"},
	}
	// TemplateLlama3 is the Llama 3 header template, without the date
	// preamble Llama 3.1+ adds to system messages.
	TemplateLlama3 = ChatTemplate{
		Name:   "llama3",
		Begin:  "<|begin_of_text|>",
		Prefix: map[string]string{"*": "<|start_header_id|>{role}<|end_header_id|>\n\n"},
		Suffix: map[string]string{"*": "<|eot_id|>"},
	}
	// TemplateTinyLM is the template of the project's built-in model
	// (package tinylm): <|bos|>, then <|role|> content <|end|>, space
	// separated.
	TemplateTinyLM = ChatTemplate{
		Name:   "tinylm",
		Begin:  "<|bos|> ",
		Prefix: map[string]string{"*": "<|{role}|> "},
		Suffix: map[string]string{"*": " <|end|> "},
	}
	// TemplatePlain is a neutral plain-text layout ("User: …\n\n") for
	// servers that only need readable text.
	TemplatePlain = ChatTemplate{
		Name: "plain",
		Prefix: map[string]string{
			"system": "System: ", "user": "User: ", "assistant": "Assistant: ", "*": "{role}: ",
		},
		Suffix: map[string]string{"*": "\n\n"},
	}
)

var builtinTemplates = map[string]ChatTemplate{
	TemplateChatML.Name: TemplateChatML,
	TemplateLlama3.Name: TemplateLlama3,
	TemplateTinyLM.Name: TemplateTinyLM,
	TemplatePlain.Name:  TemplatePlain,
}

// TemplateByName returns a built-in template: chatml, llama3, tinylm or
// plain.
func TemplateByName(name string) (ChatTemplate, error) {
	t, ok := builtinTemplates[strings.ToLower(strings.TrimSpace(name))]
	if !ok {
		names := make([]string, 0, len(builtinTemplates))
		for n := range builtinTemplates {
			names = append(names, n)
		}
		sort.Strings(names)
		return ChatTemplate{}, fmt.Errorf("llm: unknown chat template %q (known: %s)", name, strings.Join(names, ", "))
	}
	return t, nil
}

func (t ChatTemplate) part(m map[string]string, role string) string {
	if s, ok := m[role]; ok {
		return s
	}
	return strings.ReplaceAll(m["*"], "{role}", role)
}

// Render writes the conversation; with generationPrompt it ends with the
// assistant prefix, as for a prompt awaiting a reply.
func (t ChatTemplate) Render(msgs []Message, generationPrompt bool) string {
	var b strings.Builder
	b.WriteString(t.Begin)
	for _, m := range msgs {
		b.WriteString(t.part(t.Prefix, m.Role))
		b.WriteString(m.Content)
		b.WriteString(t.part(t.Suffix, m.Role))
	}
	if generationPrompt {
		b.WriteString(t.part(t.Prefix, "assistant"))
	}
	return b.String()
}
