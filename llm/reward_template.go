package llm

import (
	"context"
	"fmt"
	"slices"
)

// templateCheckConversation is the conversation CheckTemplate tokenizes
// both ways.
var templateCheckConversation = []Message{
	{Role: "user", Content: "How do I keep my garden healthy in summer?"},
	{Role: "assistant", Content: "Water it early in the morning."},
}

// CheckTemplate makes sure batched /classify or /pooling input scores the
// text the reward model expects. With a chat template configured, the
// client renders each (prompt, reply) itself and sends it as input with
// add_special_tokens false; the server, given the chat form, would apply
// the reward model's own template instead. CheckTemplate asks the reward
// server's /tokenize for the token ids of one conversation both ways —
// chat form (add_special_tokens false, as vLLM's chat-form pooling
// requests default to) and rendered text (add_special_tokens false, as
// sent) — and returns a permanent *Error when they differ: the configured
// template is not the model's, or the model's adds a default system prompt
// or a date header, or a BOS token would appear twice. It does nothing for
// other kinds or without a template. Call it once at start.
func (r *Reward) CheckTemplate(ctx context.Context) error {
	if (r.kind != KindClassify && r.kind != KindPooling) || r.t.opts.template == nil {
		return nil
	}
	model := r.t.ep.Model
	tmpl := *r.t.opts.template
	chat, err := postJSON(ctx, r.t, model, "/tokenize", r.t.root+"/tokenize",
		tokenizeChatRequest{Model: model, Messages: templateCheckConversation}, (*tokenizeResponse).check)
	if err != nil {
		return err
	}
	rendered := tmpl.Render(templateCheckConversation, false)
	text, err := postJSON(ctx, r.t, model, "/tokenize", r.t.root+"/tokenize",
		tokenizeTextRequest{Model: model, Prompt: rendered}, (*tokenizeResponse).check)
	if err != nil {
		return err
	}
	if len(chat.Tokens) == 0 {
		return &Error{Endpoint: r.t.ep.Name, Model: model, Path: "/tokenize", Permanent: true,
			Reason: "the server tokenized a non-empty conversation to no tokens, so the chat template cannot be checked"}
	}
	if slices.Equal(chat.Tokens, text.Tokens) {
		return nil
	}
	at := 0
	for at < min(len(chat.Tokens), len(text.Tokens)) && chat.Tokens[at] == text.Tokens[at] {
		at++
	}
	return &Error{Endpoint: r.t.ep.Name, Model: model, Path: "/tokenize", Permanent: true,
		Reason: fmt.Sprintf("chat template %q does not render what the reward model's own template does: "+
			"/tokenize gives %d tokens for the chat form and %d for the rendered text, first differing at token %d "+
			"(a different template, a default system prompt or date header, or a second BOS token); "+
			"set endpoints.reward.chat_template to the model's template, or leave it empty to send the chat form",
			tmpl.Name, len(chat.Tokens), len(text.Tokens), at)}
}
