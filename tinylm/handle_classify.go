package tinylm

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"
)

func (s *Server) handleClassify(w http.ResponseWriter, r *http.Request) {
	var req classifyRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	resp, err := s.classify(&req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) classify(req *classifyRequest) (*classifyResponse, error) {
	if req.Model != "" && req.Model != s.reward {
		if _, ok := s.lookup(req.Model); ok {
			return nil, badRequest("model", "model `%s` is generative and cannot classify; the reward model is `%s`", req.Model, s.reward)
		}
		return nil, notFound("model", "The model `%s` does not exist. The reward model is `%s`.", req.Model, s.reward)
	}
	// Current vLLM reads use_activation only (ClassifyRequestMixin in
	// vllm/entrypoints/pooling/base/protocol.py); the older activation is
	// an unknown field it ignores.
	activation := true
	if req.UseActivation != nil {
		activation = *req.UseActivation
	}
	input := bytes.TrimSpace(req.Input)
	hasInput := len(input) > 0 && string(input) != "null"
	var scores []RewardBreakdown
	var tokens int
	switch {
	case hasInput && req.Messages != nil:
		return nil, badRequest("input", "send either input or messages, not both")
	case hasInput:
		var texts []string
		var one string
		if json.Unmarshal(input, &one) == nil {
			texts = []string{one}
		} else if err := json.Unmarshal(input, &texts); err != nil || len(texts) == 0 {
			return nil, badRequest("input", "input must be a string or a non-empty list of strings (chat-template text of prompt and response)")
		}
		for _, t := range texts {
			scores = append(scores, RewardText(t))
			tokens += len(SplitWords(t))
		}
	case req.Messages != nil:
		msgs, err := toMessages(req.Messages)
		if err != nil {
			return nil, badRequest("messages", "%v", err)
		}
		b, err := RewardChat(msgs)
		if err != nil {
			return nil, badRequest("messages", "%v", err)
		}
		scores = append(scores, b)
		for _, m := range msgs {
			tokens += len(SplitWords(m.Content)) + 2
		}
	default:
		return nil, badRequest("input", "send input (a string or list of strings) or messages")
	}
	resp := &classifyResponse{ID: randomID("classify"), Object: "list", Created: time.Now().Unix(), Model: s.reward, Data: make([]classifyData, len(scores))}
	for i, b := range scores {
		p := b.Score
		if activation {
			p = Sigmoid(p)
		}
		resp.Data[i] = classifyData{Index: i, Label: "reward", Probs: []float64{p}, NumClasses: 1}
	}
	resp.Usage = usageInfo{PromptTokens: tokens, TotalTokens: tokens}
	return resp, nil
}
