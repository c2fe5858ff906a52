package tinylm

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"
)

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	resp, err := s.complete(&req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// completionPrompt is one prompt of a completions request.
type completionPrompt struct {
	ids  []int
	text string
}

// parsePrompts accepts a string, a list of strings, a list of token ids or
// a list of lists of token ids, as vLLM does. With addSpecial, text
// prompts get BOS in front; token ids are taken as they are.
func parsePrompts(m *Model, raw json.RawMessage, addSpecial bool) ([]completionPrompt, error) {
	encode := func(text string) []int {
		if addSpecial {
			return m.Tok.AddSpecial(m.Tok.Encode(text))
		}
		return m.Tok.Encode(text)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, badRequest("prompt", "prompt is required: a string, a list of strings, a list of token ids or a list of lists of token ids")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []completionPrompt{{ids: encode(one), text: one}}, nil
	}
	var texts []string
	if json.Unmarshal(raw, &texts) == nil && len(texts) > 0 {
		out := make([]completionPrompt, len(texts))
		for i, t := range texts {
			out[i] = completionPrompt{ids: encode(t), text: t}
		}
		return out, nil
	}
	var ids []int
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		return []completionPrompt{{ids: ids, text: m.Tok.Decode(ids, false)}}, nil
	}
	var batch [][]int
	if json.Unmarshal(raw, &batch) == nil && len(batch) > 0 {
		out := make([]completionPrompt, len(batch))
		for i, b := range batch {
			out[i] = completionPrompt{ids: b, text: m.Tok.Decode(b, false)}
		}
		return out, nil
	}
	return nil, badRequest("prompt", "prompt must be a non-empty string, list of strings, list of token ids or list of lists of token ids")
}

func (s *Server) complete(req *completionRequest) (*completionResponse, error) {
	name, m, err := s.model(req.Model)
	if err != nil {
		return nil, err
	}
	if err := checkUnsupported(req.Stream, req.Stop); err != nil {
		return nil, err
	}
	// vLLM's CompletionRequest defaults add_special_tokens to true
	// (vllm/entrypoints/openai/completion/protocol.py).
	prompts, err := parsePrompts(m, req.Prompt, req.AddSpecialTokens == nil || *req.AddSpecialTokens)
	if err != nil {
		return nil, err
	}
	knobs := req.samplingKnobs
	knobs.echo = req.Echo
	sp, err := parseSampling(req.N, req.Temperature, req.TopP, req.MaxTokens, req.Seed, knobs)
	if err != nil {
		return nil, err
	}
	logK, err := checkLogprobCount("logprobs", req.Logprobs)
	if err != nil {
		return nil, err
	}
	promptK, err := checkLogprobCount("prompt_logprobs", req.PromptLogprobs)
	if err != nil {
		return nil, err
	}
	resp := &completionResponse{ID: randomID("cmpl"), Object: "text_completion", Created: time.Now().Unix(), Model: name}
	for pi, p := range prompts {
		if len(p.ids) == 0 {
			return nil, badRequest("prompt", "prompt %d is empty; it needs at least one token", pi)
		}
		if err := m.checkSeqIDs(p.ids); err != nil {
			return nil, badRequest("prompt", "prompt %d: %v", pi, err)
		}
		psp := sp
		if err := psp.fitContext(len(p.ids), s.maxModelLen); err != nil {
			return nil, err
		}
		// Teacher-forced prompt log-probs, shared by echo and prompt_logprobs.
		var plps []float64
		var ptops [][]TokenLogProb
		needPrompt := (req.Echo && req.Logprobs != nil) || req.PromptLogprobs != nil
		if needPrompt {
			if plps, ptops, _, err = m.SequenceLogProbs(p.ids, max(logK, promptK)); err != nil {
				return nil, badRequest("prompt", "%v", err)
			}
		}
		var promptLP []map[string]promptLogprob
		if req.PromptLogprobs != nil {
			if promptLP, err = promptLogprobsOf(m, p.ids, promptK); err != nil {
				return nil, badRequest("prompt", "%v", err)
			}
		}
		resp.Usage.PromptTokens += len(p.ids)
		cache := m.AcquireStepCache() // the n choices of this prompt share per-step work
		defer m.ReleaseStepCache(cache)
		for i := range psp.n {
			g, err := m.Generate(p.ids, SampleOptions{Temperature: psp.temperature, TopP: psp.topP, MaxTokens: psp.maxTokens, TopLogProbs: logK, Cache: cache}, psp.rng(i))
			if err != nil {
				return nil, badRequest("", "%v", err)
			}
			resp.Usage.CompletionTokens += len(g.IDs)
			gen := m.Tok.Decode(g.IDs, true)
			ch := completionChoice{Index: pi*psp.n + i, Text: gen, FinishReason: g.FinishReason, PromptLogprobs: promptLP}
			if req.Echo {
				ch.Text = p.text + gen
				if gen != "" && p.text != "" && !isPunct(m.Tok.Token(firstNonSpecial(m, g.IDs))) {
					ch.Text = p.text + " " + gen
				}
			}
			if req.ReturnTokenIDs {
				ch.PromptTokenIDs = p.ids
				ch.TokenIDs = g.IDs
			}
			if req.Logprobs != nil {
				lp := &completionLogprobs{}
				add := func(id int, logprob *float64, top map[string]float64) {
					lp.Tokens = append(lp.Tokens, m.Tok.Token(id))
					lp.TokenLogprobs = append(lp.TokenLogprobs, logprob)
					lp.TopLogprobs = append(lp.TopLogprobs, top)
				}
				if req.Echo {
					for t, id := range p.ids {
						if t == 0 {
							add(id, nil, nil)
							continue
						}
						x := clampLogprob(plps[t])
						add(id, &x, topMap(m, id, x, ptops[t], logK))
					}
				}
				for j, id := range g.IDs {
					x := g.LogProbs[j]
					var top []TokenLogProb
					if g.Top != nil {
						top = g.Top[j]
					}
					add(id, &x, topMap(m, id, x, top, logK))
				}
				lp.TextOffset = textOffsets(ch.Text, lp.Tokens)
				if lp.Tokens == nil {
					lp.Tokens, lp.TokenLogprobs, lp.TopLogprobs, lp.TextOffset = []string{}, []*float64{}, []map[string]float64{}, []int{}
				}
				ch.Logprobs = lp
			}
			resp.Choices = append(resp.Choices, ch)
		}
	}
	resp.Usage.TotalTokens = resp.Usage.PromptTokens + resp.Usage.CompletionTokens
	return resp, nil
}

func firstNonSpecial(m *Model, ids []int) int {
	for _, id := range ids {
		if !m.Tok.IsSpecial(id) {
			return id
		}
	}
	return UnkID
}

// topMap is a completions top_logprobs entry: the k best tokens plus the
// chosen one, keyed by token text.
func topMap(m *Model, id int, lp float64, top []TokenLogProb, k int) map[string]float64 {
	out := map[string]float64{m.Tok.Token(id): lp}
	for i, t := range top {
		if i >= k {
			break
		}
		out[m.Tok.Token(t.ID)] = t.LogProb
	}
	return out
}
