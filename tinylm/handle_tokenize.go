package tinylm

import "net/http"

func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	var req tokenizeRequest
	var err error
	if err = decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	var m *Model
	if req.Model != "" && req.Model == s.reward {
		// Like a vLLM server running a reward model, use the reward
		// model's tokenizer: the built-in one.
		if m, err = builtinModel(); err != nil {
			writeError(w, err)
			return
		}
	} else if _, m, err = s.model(req.Model); err != nil {
		writeError(w, err)
		return
	}
	var ids []int
	switch {
	case req.Prompt != nil && req.Messages != nil:
		writeError(w, badRequest("prompt", "send either prompt or messages, not both"))
		return
	case req.Prompt != nil:
		// TokenizeCompletionRequest: add_special_tokens defaults to true,
		// which puts BOS in front (vllm/entrypoints/serve/tokenize/protocol.py).
		ids = m.Tok.Encode(*req.Prompt)
		if req.AddSpecialTokens == nil || *req.AddSpecialTokens {
			ids = m.Tok.AddSpecial(ids)
		}
	case req.Messages != nil:
		msgs, err := toMessages(req.Messages)
		if err != nil {
			writeError(w, badRequest("messages", "%v", err))
			return
		}
		addGen := req.AddGenerationPrompt == nil || *req.AddGenerationPrompt
		if req.ContinueFinalMessage {
			if addGen && req.AddGenerationPrompt != nil {
				writeError(w, badRequest("continue_final_message", "continue_final_message and add_generation_prompt cannot both be true"))
				return
			}
			addGen = false
		}
		// TokenizeChatRequest: the template writes BOS; add_special_tokens
		// (default false) adds another in front of it.
		if ids, err = m.Tok.EncodeChatTemplate(msgs, addGen); err != nil {
			writeError(w, badRequest("messages", "%v", err))
			return
		}
		if req.AddSpecialTokens != nil && *req.AddSpecialTokens {
			ids = m.Tok.AddSpecial(ids)
		}
		if req.ContinueFinalMessage && len(ids) > 0 && ids[len(ids)-1] == EndID {
			ids = ids[:len(ids)-1]
		}
	default:
		writeError(w, badRequest("prompt", "send prompt (text) or messages (chat)"))
		return
	}
	resp := tokenizeResponse{Count: len(ids), MaxModelLen: s.maxModelLen, Tokens: ids}
	if req.ReturnTokenStrs {
		resp.TokenStrs = make([]string, len(ids))
		for i, id := range ids {
			resp.TokenStrs[i] = m.Tok.Token(id)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleDetokenize(w http.ResponseWriter, r *http.Request) {
	var req detokenizeRequest
	var err error
	if err = decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	var m *Model
	if req.Model != "" && req.Model == s.reward {
		// Like a vLLM server running a reward model, use the reward
		// model's tokenizer: the built-in one.
		if m, err = builtinModel(); err != nil {
			writeError(w, err)
			return
		}
	} else if _, m, err = s.model(req.Model); err != nil {
		writeError(w, err)
		return
	}
	if err := m.checkSeqIDs(req.Tokens); err != nil {
		writeError(w, badRequest("tokens", "%v", err))
		return
	}
	writeJSON(w, http.StatusOK, detokenizeResponse{Prompt: m.Tok.Decode(req.Tokens, false)})
}
