package tinylm

import (
	"encoding/json"
	"fmt"
	"strings"
)

// The JSON shapes below follow vLLM's OpenAI-compatible server
// (vllm/entrypoints/openai/protocol.py and the serving_* handlers). Unknown
// request fields are accepted and ignored, as vLLM does.

// chatMessageIn accepts OpenAI message content as a string or a list of
// {"type":"text","text":…} parts (joined with newlines, as vLLM does).
type chatMessageIn struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

func (m chatMessageIn) toMessage() (Message, error) {
	if _, err := roleToken(m.Role); err != nil {
		return Message{}, err
	}
	c := strings.TrimSpace(string(m.Content))
	if c == "" || c == "null" {
		return Message{Role: m.Role}, nil
	}
	var s string
	if err := json.Unmarshal(m.Content, &s); err == nil {
		return Message{Role: m.Role, Content: s}, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(m.Content, &parts); err != nil {
		return Message{}, fmt.Errorf("message content must be a string or a list of text parts")
	}
	var texts []string
	for _, p := range parts {
		if p.Type != "text" {
			return Message{}, fmt.Errorf("content part type %q is not supported (only text)", p.Type)
		}
		texts = append(texts, p.Text)
	}
	return Message{Role: m.Role, Content: strings.Join(texts, "\n")}, nil
}

func toMessages(in []chatMessageIn) ([]Message, error) {
	out := make([]Message, len(in))
	for i, m := range in {
		msg, err := m.toMessage()
		if err != nil {
			return nil, fmt.Errorf("messages[%d]: %w", i, err)
		}
		out[i] = msg
	}
	return out, nil
}

type chatRequest struct {
	Model               string          `json:"model"`
	Messages            []chatMessageIn `json:"messages"`
	N                   *int            `json:"n"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Seed                *int64          `json:"seed"`
	Logprobs            bool            `json:"logprobs"`
	TopLogprobs         *int            `json:"top_logprobs"`
	PromptLogprobs      *int            `json:"prompt_logprobs"`
	ReturnTokenIDs      bool            `json:"return_token_ids"`
	AddGenerationPrompt *bool           `json:"add_generation_prompt"`
	// AddSpecialTokens puts a BOS in front of the rendered template, which
	// writes its own (vLLM's ChatCompletionRequest, default false).
	AddSpecialTokens bool            `json:"add_special_tokens"`
	Stream           bool            `json:"stream"`
	Stop             json.RawMessage `json:"stop"`
	samplingKnobs
}

type usageInfo struct {
	PromptTokens     int `json:"prompt_tokens"`
	TotalTokens      int `json:"total_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// promptLogprob is one entry of vLLM's prompt_logprobs: a dict keyed by
// token id (a string in JSON).
type promptLogprob struct {
	Logprob      float64 `json:"logprob"`
	Rank         int     `json:"rank"`
	DecodedToken string  `json:"decoded_token"`
}

type chatResponse struct {
	ID             string                     `json:"id"`
	Object         string                     `json:"object"`
	Created        int64                      `json:"created"`
	Model          string                     `json:"model"`
	Choices        []chatChoice               `json:"choices"`
	Usage          usageInfo                  `json:"usage"`
	PromptLogprobs []map[string]promptLogprob `json:"prompt_logprobs"`
	PromptTokenIDs []int                      `json:"prompt_token_ids,omitempty"`
}

type chatChoice struct {
	Index        int            `json:"index"`
	Message      chatMessageOut `json:"message"`
	Logprobs     *chatLogprobs  `json:"logprobs"`
	FinishReason string         `json:"finish_reason"`
	StopReason   *string        `json:"stop_reason"`
	TokenIDs     []int          `json:"token_ids,omitempty"`
}

type chatMessageOut struct {
	Role      string `json:"role"`
	Content   string `json:"content"`
	ToolCalls []any  `json:"tool_calls"`
}

type chatLogprobs struct {
	Content []chatLogprobEntry `json:"content"`
}

type chatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

type chatLogprobEntry struct {
	Token       string           `json:"token"`
	Logprob     float64          `json:"logprob"`
	Bytes       []int            `json:"bytes"`
	TopLogprobs []chatTopLogprob `json:"top_logprobs"`
}

type completionRequest struct {
	Model          string          `json:"model"`
	Prompt         json.RawMessage `json:"prompt"`
	N              *int            `json:"n"`
	Temperature    *float64        `json:"temperature"`
	TopP           *float64        `json:"top_p"`
	MaxTokens      *int            `json:"max_tokens"`
	Seed           *int64          `json:"seed"`
	Logprobs       *int            `json:"logprobs"`
	Echo           bool            `json:"echo"`
	PromptLogprobs *int            `json:"prompt_logprobs"`
	ReturnTokenIDs bool            `json:"return_token_ids"`
	// AddSpecialTokens puts BOS in front of text prompts (vLLM's
	// CompletionRequest, default true); token-id prompts are sent as given.
	AddSpecialTokens *bool           `json:"add_special_tokens"`
	Stream           bool            `json:"stream"`
	Stop             json.RawMessage `json:"stop"`
	samplingKnobs
}

type completionLogprobs struct {
	TextOffset    []int                `json:"text_offset"`
	TokenLogprobs []*float64           `json:"token_logprobs"`
	Tokens        []string             `json:"tokens"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
}

type completionChoice struct {
	Index          int                        `json:"index"`
	Text           string                     `json:"text"`
	Logprobs       *completionLogprobs        `json:"logprobs"`
	FinishReason   string                     `json:"finish_reason"`
	StopReason     *string                    `json:"stop_reason"`
	PromptLogprobs []map[string]promptLogprob `json:"prompt_logprobs"`
	PromptTokenIDs []int                      `json:"prompt_token_ids,omitempty"`
	TokenIDs       []int                      `json:"token_ids,omitempty"`
}

type completionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   usageInfo          `json:"usage"`
}

type tokenizeRequest struct {
	Model                string          `json:"model"`
	Prompt               *string         `json:"prompt"`
	Messages             []chatMessageIn `json:"messages"`
	AddGenerationPrompt  *bool           `json:"add_generation_prompt"`
	ContinueFinalMessage bool            `json:"continue_final_message"`
	ReturnTokenStrs      bool            `json:"return_token_strs"`
	// AddSpecialTokens puts BOS in front: vLLM's TokenizeCompletionRequest
	// defaults it to true, TokenizeChatRequest to false (its template
	// writes the BOS), vllm/entrypoints/serve/tokenize/protocol.py.
	AddSpecialTokens *bool `json:"add_special_tokens"`
}

type tokenizeResponse struct {
	Count       int      `json:"count"`
	MaxModelLen int      `json:"max_model_len"`
	Tokens      []int    `json:"tokens"`
	TokenStrs   []string `json:"token_strs,omitempty"`
}

type detokenizeRequest struct {
	Model  string `json:"model"`
	Tokens []int  `json:"tokens"`
}

type detokenizeResponse struct {
	Prompt string `json:"prompt"`
}

type classifyRequest struct {
	Model         string          `json:"model"`
	Input         json.RawMessage `json:"input"`
	Messages      []chatMessageIn `json:"messages"`
	UseActivation *bool           `json:"use_activation"`
	// AddSpecialTokens puts BOS in front: vLLM defaults it to true for
	// input (CompletionRequestMixin) and to false for messages, whose
	// template writes the BOS (ChatRequestOptionsMixin),
	// vllm/entrypoints/pooling/base/protocol.py.
	AddSpecialTokens *bool `json:"add_special_tokens"`
}

type classifyData struct {
	Index      int       `json:"index"`
	Label      string    `json:"label"`
	Probs      []float64 `json:"probs"`
	NumClasses int       `json:"num_classes"`
}

type classifyResponse struct {
	ID      string         `json:"id"`
	Object  string         `json:"object"`
	Created int64          `json:"created"`
	Model   string         `json:"model"`
	Data    []classifyData `json:"data"`
	Usage   usageInfo      `json:"usage"`
}

type modelCard struct {
	ID          string  `json:"id"`
	Object      string  `json:"object"`
	Created     int64   `json:"created"`
	OwnedBy     string  `json:"owned_by"`
	Root        string  `json:"root"`
	Parent      *string `json:"parent"`
	MaxModelLen *int    `json:"max_model_len"`
	Permission  []any   `json:"permission"`
}

type modelList struct {
	Object string      `json:"object"`
	Data   []modelCard `json:"data"`
}

// errorInfo is the OpenAI error object; vLLM sets code to the HTTP status.
type errorInfo struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    int     `json:"code"`
}

type errorResponse struct {
	Error errorInfo `json:"error"`
}
