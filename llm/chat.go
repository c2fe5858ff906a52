package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	openai "github.com/sashabaranov/go-openai"
)

// Message is one chat message.
type Message struct {
	// Role is system, user or assistant (any role the server's chat template
	// accepts is passed through).
	Role string `json:"role"`
	// Content is the message text.
	Content string `json:"content"`
}

func validateMessages(msgs []Message) error {
	if len(msgs) == 0 {
		return fmt.Errorf("no messages")
	}
	for i, m := range msgs {
		if m.Role == "" {
			return fmt.Errorf("message %d has no role", i)
		}
	}
	return nil
}

func toOpenAIMessages(msgs []Message) []openai.ChatCompletionMessage {
	out := make([]openai.ChatCompletionMessage, len(msgs))
	for i, m := range msgs {
		out[i] = openai.ChatCompletionMessage{Role: m.Role, Content: m.Content}
	}
	return out
}

// chatClient makes chat-completions calls. go-openai's request types build
// the body (with extra JSON fields merged in); the transport sends it with
// the shared retries, Retry-After and error classification; and
// decodeChatReply reads the reply in one pass, keeping only what the
// clients use (go-openai's own decoding of every log-prob entry, and a
// second pass for vLLM's token_ids, cost three times as much).
type chatClient struct {
	t *transport
}

func newChatClient(t *transport) *chatClient {
	return &chatClient{t: t}
}

// mergeJSONFields sets (or, for nil values, deletes) top-level fields of a
// JSON object. Fields the object does not have yet are spliced in before
// its closing brace, which spares decoding and re-encoding the whole body
// on every request; overriding or deleting a field takes the general path.
func mergeJSONFields(body []byte, fields map[string]any) ([]byte, error) {
	if out, ok := appendJSONFields(body, fields); ok {
		return out, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, fmt.Errorf("request body is not a JSON object: %w", err)
	}
	for k, v := range fields {
		if v == nil {
			delete(obj, k)
			continue
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encoding request field %q: %w", k, err)
		}
		obj[k] = raw
	}
	return json.Marshal(obj)
}

// appendJSONFields splices new fields into a JSON object; it reports false
// when a field is nil, may already be present, or body is not an object.
func appendJSONFields(body []byte, fields map[string]any) ([]byte, bool) {
	trimmed := bytes.TrimRight(body, " \t\r\n")
	if len(trimmed) < 2 || trimmed[0] != '{' || trimmed[len(trimmed)-1] != '}' {
		return nil, false
	}
	out := make([]byte, 0, len(trimmed)+32*len(fields))
	out = append(out, trimmed[:len(trimmed)-1]...)
	empty := len(bytes.TrimSpace(trimmed[1:len(trimmed)-1])) == 0
	for k, v := range fields {
		key, err := json.Marshal(k)
		if err != nil || v == nil || bytes.Contains(body, key) {
			return nil, false
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, false
		}
		if !empty {
			out = append(out, ',')
		}
		empty = false
		out = append(append(append(out, key...), ':'), raw...)
	}
	return append(out, '}'), true
}

// chatRequestBody is the exact body chatClient sends for req and extras.
func chatRequestBody(req openai.ChatCompletionRequest, extras map[string]any) ([]byte, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if len(extras) == 0 {
		return body, nil
	}
	return mergeJSONFields(body, extras)
}

// create makes one chat-completions call with retries. check validates a
// decoded 2xx reply; its failures are permanent.
func (c *chatClient) create(ctx context.Context, req openai.ChatCompletionRequest, extras map[string]any,
	check func(reply *chatReply) *failure,
) error {
	const path = "/v1/chat/completions"
	payload, err := chatRequestBody(req, extras)
	if err != nil {
		return &Error{Endpoint: c.t.ep.Name, Model: req.Model, Path: path, Reason: "encoding chat request", Permanent: true, Err: err}
	}
	return c.t.call(ctx, req.Model, path, func(actx context.Context) *failure {
		hreq, err := http.NewRequestWithContext(actx, http.MethodPost, c.t.v1+"/chat/completions", bytes.NewReader(payload))
		if err != nil {
			return &failure{reason: "building chat request", err: err}
		}
		hreq.Header.Set("Content-Type", "application/json")
		hreq.Header.Set("Accept", "application/json")
		if c.t.ep.APIKey != "" {
			hreq.Header.Set("Authorization", "Bearer "+c.t.ep.APIKey)
		}
		// Nothing kept from the attempt refers to the body: samples
		// and failures copy what they keep.
		buf := pooledBody()
		defer releaseBody(buf)
		x := c.t.roundTripInto(hreq, buf)
		if f := x.classify(); f != nil {
			return f
		}
		reply, err := decodeChatReply(x.body)
		if err != nil {
			return malformed(x.body, err)
		}
		if check != nil {
			if f := check(reply); f != nil {
				f.status = x.status
				return f
			}
		}
		return nil
	})
}
