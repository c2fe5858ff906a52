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
	resp, _, err := s.classify(&req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// classify scores a classify-shaped request and returns, with the answer,
// the token ids of each scored sequence as the reward model's tokenizer
// gives them: input text with BOS in front unless add_special_tokens is
// false (vLLM's CompletionRequestMixin defaults it to true), the chat form
// rendered with the template, which writes its own BOS, and another only
// with add_special_tokens true (ChatRequestOptionsMixin defaults it to
// false) — vllm/entrypoints/pooling/base/protocol.py. Rendered text that
// already starts with <|bos|> therefore gets two unless the client sends
// add_special_tokens false: usage.prompt_tokens counts them, and
// token_classify on /pooling has a row for each.
func (s *Server) classify(req *classifyRequest) (*classifyResponse, [][]int, error) {
	if req.Model != "" && req.Model != s.reward {
		if _, ok := s.lookup(req.Model); ok {
			return nil, nil, badRequest("model", "model `%s` is generative and cannot classify; the reward model is `%s`", req.Model, s.reward)
		}
		return nil, nil, notFound("model", "The model `%s` does not exist. The reward model is `%s`.", req.Model, s.reward)
	}
	tok := builtinTokenizer()
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
	var seqs [][]int
	var tokens int
	switch {
	case hasInput && req.Messages != nil:
		return nil, nil, badRequest("input", "send either input or messages, not both")
	case hasInput:
		var texts []string
		var one string
		if json.Unmarshal(input, &one) == nil {
			texts = []string{one}
		} else if err := json.Unmarshal(input, &texts); err != nil || len(texts) == 0 {
			return nil, nil, badRequest("input", "input must be a string or a non-empty list of strings (chat-template text of prompt and response)")
		}
		for _, t := range texts {
			scores = append(scores, RewardText(t).WithLengthBonus(s.bonus))
			ids := tok.Encode(t)
			if req.AddSpecialTokens == nil || *req.AddSpecialTokens {
				ids = tok.AddSpecial(ids)
			}
			seqs = append(seqs, ids)
		}
	case req.Messages != nil:
		msgs, err := toMessages(req.Messages)
		if err != nil {
			return nil, nil, badRequest("messages", "%v", err)
		}
		b, err := RewardChat(msgs)
		if err != nil {
			return nil, nil, badRequest("messages", "%v", err)
		}
		scores = append(scores, b.WithLengthBonus(s.bonus))
		ids, err := tok.EncodeChatTemplate(msgs, false)
		if err != nil {
			return nil, nil, badRequest("messages", "%v", err)
		}
		if req.AddSpecialTokens != nil && *req.AddSpecialTokens {
			ids = tok.AddSpecial(ids)
		}
		seqs = append(seqs, ids)
	default:
		return nil, nil, badRequest("input", "send input (a string or list of strings) or messages")
	}
	for _, ids := range seqs {
		tokens += len(ids)
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
	return resp, seqs, nil
}
