package tinylm

import (
	"net/http"
	"time"
)

// poolingRequest is vLLM's PoolingCompletionRequest (input) or
// PoolingChatRequest (messages), vllm/entrypoints/pooling/pooling/
// protocol.py; task picks the pooled form.
type poolingRequest struct {
	classifyRequest
	Task           *string `json:"task"`
	EncodingFormat *string `json:"encoding_format"`
}

// poolingData is vLLM's PoolingResponseData: a vector (list[float]) or a
// per-token matrix (list[list[float]]).
type poolingData struct {
	Index  int    `json:"index"`
	Object string `json:"object"`
	Data   any    `json:"data"`
}

type poolingResponse struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Data    []poolingData `json:"data"`
	Usage   usageInfo     `json:"usage"`
}

func (s *Server) handlePooling(w http.ResponseWriter, r *http.Request) {
	var req poolingRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	resp, err := s.pool(&req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// pool serves the reward model through /pooling: task "classify" (the
// default) pools the sequence into a one-value vector, the same number
// /classify returns; "token_classify" returns one row per token of the
// scored sequence (BOS included), the reward head's output at each
// position, of which only the last (the whole sequence) carries the score —
// earlier positions are 0, as this reward is defined on whole replies. Other tasks are not ones
// a reward model serves.
func (s *Server) pool(req *poolingRequest) (*poolingResponse, error) {
	task := "classify"
	if req.Task != nil {
		task = *req.Task
	}
	if task != "classify" && task != "token_classify" {
		return nil, badRequest("task", "task %q is not supported by the reward model `%s`; use classify or token_classify", task, s.reward)
	}
	if req.EncodingFormat != nil && *req.EncodingFormat != "float" {
		return nil, badRequest("encoding_format", "tinylm returns encoding_format float only, got %q", *req.EncodingFormat)
	}
	cls, seqs, err := s.classify(&req.classifyRequest)
	if err != nil {
		return nil, err
	}
	resp := &poolingResponse{ID: randomID("pool"), Object: "list", Created: time.Now().Unix(), Model: cls.Model, Usage: cls.Usage}
	for i, d := range cls.Data {
		var data any = d.Probs
		if task == "token_classify" {
			// One row per token of the scored sequence, BOS included.
			n := max(1, len(seqs[i]))
			rows := make([][]float64, n)
			for j := range rows {
				rows[j] = []float64{0}
			}
			rows[n-1][0] = d.Probs[0]
			data = rows
		}
		resp.Data = append(resp.Data, poolingData{Index: i, Object: "pooling", Data: data})
	}
	return resp, nil
}

// builtinTokenizer is the reward model's tokenizer: the built-in model's.
func builtinTokenizer() *Tokenizer {
	m, err := builtinModel()
	if err != nil {
		panic("tinylm: embedded weights: " + err.Error())
	}
	return m.Tok
}
