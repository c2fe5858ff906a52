package tinylm

import (
	"net/http"
	"time"
)

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	resp, err := s.chat(&req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) chat(req *chatRequest) (*chatResponse, error) {
	name, m, err := s.model(req.Model)
	if err != nil {
		return nil, err
	}
	if err := checkUnsupported(req.Stream, req.Stop); err != nil {
		return nil, err
	}
	if len(req.Messages) == 0 {
		return nil, badRequest("messages", "messages must be a non-empty list")
	}
	msgs, err := toMessages(req.Messages)
	if err != nil {
		return nil, badRequest("messages", "%v", err)
	}
	maxTokens := req.MaxTokens
	if req.MaxCompletionTokens != nil {
		maxTokens = req.MaxCompletionTokens
	}
	sp, err := parseSampling(req.N, req.Temperature, req.TopP, maxTokens, req.Seed, req.samplingKnobs)
	if err != nil {
		return nil, err
	}
	topK, err := checkLogprobCount("top_logprobs", req.TopLogprobs)
	if err != nil {
		return nil, err
	}
	if topK > 0 && !req.Logprobs {
		return nil, badRequest("top_logprobs", "top_logprobs needs logprobs=true")
	}
	promptK, err := checkLogprobCount("prompt_logprobs", req.PromptLogprobs)
	if err != nil {
		return nil, err
	}
	addGen := req.AddGenerationPrompt == nil || *req.AddGenerationPrompt
	// The template writes BOS first; add_special_tokens (default false in
	// vLLM's ChatCompletionRequest) adds a second one.
	prompt, err := m.Tok.EncodeChatTemplate(msgs, addGen)
	if err != nil {
		return nil, badRequest("messages", "%v", err)
	}
	if req.AddSpecialTokens {
		prompt = m.Tok.AddSpecial(prompt)
	}
	if err := sp.fitContext(len(prompt), s.maxModelLen); err != nil {
		return nil, err
	}
	resp := &chatResponse{ID: randomID("chatcmpl"), Object: "chat.completion", Created: time.Now().Unix(), Model: name}
	if req.PromptLogprobs != nil {
		if resp.PromptLogprobs, err = promptLogprobsOf(m, prompt, promptK); err != nil {
			return nil, err
		}
	}
	if req.ReturnTokenIDs {
		resp.PromptTokenIDs = prompt
	}
	completion := 0
	cache := m.AcquireStepCache() // the n choices share per-step work
	defer m.ReleaseStepCache(cache)
	for i := range sp.n {
		g, err := m.Generate(prompt, SampleOptions{Temperature: sp.temperature, TopP: sp.topP, MaxTokens: sp.maxTokens, TopLogProbs: topK, Cache: cache}, sp.rng(i))
		if err != nil {
			return nil, badRequest("", "%v", err)
		}
		completion += len(g.IDs)
		ch := chatChoice{
			Index:        i,
			Message:      chatMessageOut{Role: "assistant", Content: m.Tok.Decode(g.IDs, true), ToolCalls: []any{}},
			FinishReason: g.FinishReason,
		}
		if req.ReturnTokenIDs {
			ch.TokenIDs = g.IDs
		}
		if req.Logprobs {
			lp := &chatLogprobs{Content: make([]chatLogprobEntry, len(g.IDs))}
			for j, id := range g.IDs {
				tok := m.Tok.Token(id)
				e := chatLogprobEntry{Token: tok, Logprob: g.LogProbs[j], Bytes: tokenBytes(tok), TopLogprobs: []chatTopLogprob{}}
				if topK > 0 {
					for _, t := range g.Top[j] {
						tt := m.Tok.Token(t.ID)
						e.TopLogprobs = append(e.TopLogprobs, chatTopLogprob{Token: tt, Logprob: t.LogProb, Bytes: tokenBytes(tt)})
					}
				}
				lp.Content[j] = e
			}
			ch.Logprobs = lp
		}
		resp.Choices = append(resp.Choices, ch)
	}
	resp.Usage = usageInfo{PromptTokens: len(prompt), CompletionTokens: completion, TotalTokens: len(prompt) + completion}
	return resp, nil
}
