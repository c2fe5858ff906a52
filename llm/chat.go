package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

// chatClient makes chat-completions calls through go-openai while the
// transport keeps control of the wire: go-openai builds the request and
// decodes the response; chatDoer (its HTTPDoer) merges extra JSON fields
// into the body, applies the attempt timeout and records the raw exchange,
// so retries, Retry-After and error classification work the same as for the
// plain net/http routes.
type chatClient struct {
	t      *transport
	client *openai.Client
}

func newChatClient(t *transport) *chatClient {
	cfg := openai.DefaultConfig(t.ep.APIKey)
	cfg.BaseURL = t.v1
	cfg.HTTPClient = chatDoer{t: t}
	return &chatClient{t: t, client: openai.NewClientWithConfig(cfg)}
}

type chatCallKey struct{}

// chatCall carries one attempt's extras into chatDoer and its raw exchange
// back out.
type chatCall struct {
	extras map[string]any
	x      exchange
	sent   bool
}

type chatDoer struct{ t *transport }

// Do implements openai.HTTPDoer.
func (d chatDoer) Do(req *http.Request) (*http.Response, error) {
	c, _ := req.Context().Value(chatCallKey{}).(*chatCall)
	if c != nil && len(c.extras) > 0 && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		merged, err := mergeJSONFields(body, c.extras)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(merged))
		req.ContentLength = int64(len(merged))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(merged)), nil }
	}
	x := d.t.roundTrip(req)
	if c != nil {
		c.x, c.sent = x, true
	}
	if x.err != nil {
		return nil, x.err
	}
	return &http.Response{
		StatusCode:    x.status,
		Status:        fmt.Sprintf("%d %s", x.status, http.StatusText(x.status)),
		Header:        x.header,
		Body:          io.NopCloser(bytes.NewReader(x.body)),
		ContentLength: int64(len(x.body)),
		Request:       req,
	}, nil
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
// decoded 2xx response (raw is its body); its failures are permanent.
func (c *chatClient) create(ctx context.Context, req openai.ChatCompletionRequest, extras map[string]any,
	check func(resp *openai.ChatCompletionResponse, raw []byte) *failure,
) (*openai.ChatCompletionResponse, []byte, error) {
	const path = "/v1/chat/completions"
	var (
		out *openai.ChatCompletionResponse
		raw []byte
	)
	err := c.t.call(ctx, req.Model, path, func(actx context.Context) *failure {
		call := &chatCall{extras: extras}
		resp, err := c.client.CreateChatCompletion(context.WithValue(actx, chatCallKey{}, call), req)
		if !call.sent {
			return &failure{reason: "building chat request", err: err}
		}
		if f := call.x.classify(); f != nil {
			return f
		}
		if err != nil {
			return malformed(call.x.body, err)
		}
		if check != nil {
			if f := check(&resp, call.x.body); f != nil {
				f.status = call.x.status
				return f
			}
		}
		out, raw = &resp, call.x.body
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, raw, nil
}
