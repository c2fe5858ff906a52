package tinylm

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strings"
)

// Runtime adapter loading follows vLLM's routes of the same names
// (vllm/entrypoints/serve/lora/api_router.py, the checks and messages of
// OpenAIServingModels in vllm/entrypoints/openai/models/serving.py, the
// request fields of vllm/entrypoints/serve/lora/protocol.py). tinylm has no
// LoRA: the "adapter" at lora_path is a whole tinylm weights file, as
// `selfplay lm train` writes, served under lora_name beside the other
// models.

// RuntimeLoRAUpdatingEnv is the environment variable that switches runtime
// adapter loading on, as in vLLM.
const RuntimeLoRAUpdatingEnv = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"

// RuntimeLoRAUpdating reports whether value, the value of
// RuntimeLoRAUpdatingEnv, switches runtime adapter loading on: "1" or
// "true" in any case, around spaces, as vLLM's envs.py reads it; anything
// else, the empty string included, leaves it off.
func RuntimeLoRAUpdating(value string) bool {
	v := strings.ToLower(strings.TrimSpace(value))
	return v == "1" || v == "true"
}

// loadLoRARequest is vLLM's LoadLoRAAdapterRequest; the pointers tell a
// missing field (a validation error in vLLM) from an empty one.
type loadLoRARequest struct {
	LoRAName    *string `json:"lora_name"`
	LoRAPath    *string `json:"lora_path"`
	LoadInplace bool    `json:"load_inplace"`
}

// unloadLoRARequest is vLLM's UnloadLoRAAdapterRequest; lora_int_id is
// accepted and, as in vLLM's handler, not used.
type unloadLoRARequest struct {
	LoRAName  *string `json:"lora_name"`
	LoRAIntID *int    `json:"lora_int_id"`
}

// invalidUserInput is the error type vLLM gives the adapter routes' own
// checks.
func invalidUserInput(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "InvalidUserInput", msg: fmt.Sprintf(format, args...)}
}

func requiredField(name string) *apiError {
	return badRequest(name, "Field required: %s", name)
}

// handleLoadLoRA serves POST /v1/load_lora_adapter: 400 when lora_name or
// lora_path is empty, or when the name is loaded already and load_inplace
// is false; 404 when nothing is at lora_path; 500 when the file there is
// not a tinylm weights file; otherwise 200 with vLLM's success text, and
// the name is then listed by /v1/models and usable as a model. With
// load_inplace a loaded name is replaced by the file's model; requests
// already running keep the model they started with.
func (s *Server) handleLoadLoRA(w http.ResponseWriter, r *http.Request) {
	var req loadLoRARequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	switch {
	case req.LoRAName == nil:
		writeError(w, requiredField("lora_name"))
		return
	case req.LoRAPath == nil:
		writeError(w, requiredField("lora_path"))
		return
	}
	name, path := *req.LoRAName, *req.LoRAPath
	if name == "" || path == "" {
		writeError(w, invalidUserInput("Both 'lora_name' and 'lora_path' must be provided."))
		return
	}
	s.loraMu.Lock()
	defer s.loraMu.Unlock()
	if err := s.checkAdapterName(name, req.LoadInplace); err != nil {
		writeError(w, err)
		return
	}
	m, err := loadAdapter(path)
	if errors.Is(err, fs.ErrNotExist) {
		// vLLM's LoRAAdapterNotFoundError, a VLLMNotFoundError: 404.
		writeError(w, notFound("", "Loading lora %s failed: No adapter found for %s", name, path))
		return
	}
	if err != nil {
		writeError(w, &apiError{status: http.StatusInternalServerError, typ: "InternalServerError", msg: err.Error()})
		return
	}
	s.mu.Lock()
	s.models[name] = m
	s.adapters[name] = path
	if !slices.Contains(s.names, name) {
		s.names = append(s.names, name)
		slices.Sort(s.names)
	}
	s.mu.Unlock()
	s.log.InfoContext(r.Context(), "loaded adapter", "model", name, "path", path)
	writeText(w, fmt.Sprintf("Success: LoRA adapter '%s' added successfully.", name))
}

// checkAdapterName refuses a name that is loaded already (unless
// inplace), in vLLM's words, and a name another kind of model holds.
func (s *Server) checkAdapterName(name string, inplace bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, loaded := s.adapters[name]
	switch {
	case loaded && !inplace:
		return invalidUserInput("The lora adapter '%s' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True.", name)
	case loaded:
		return nil
	case name == s.reward:
		return badRequest("lora_name", "lora_name %q is the reward model's name; pick another", name)
	case s.models[name] != nil:
		// vLLM does not check this; tinylm serves one model per name.
		return badRequest("lora_name", "lora_name %q is the name of a model served from --model or --models-dir; pick another", name)
	}
	return nil
}

// loadAdapter reads the weights file at path; a path with no regular file
// is fs.ErrNotExist.
func loadAdapter(path string) (*Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (a tinylm adapter is one weights file)", path, fs.ErrNotExist)
	}
	return Load(path)
}

// handleUnloadLoRA serves POST /v1/unload_lora_adapter: 400 when lora_name
// is empty, 404 when no adapter of that name is loaded (a model served
// from --model or --models-dir is not an adapter), otherwise 200 with
// vLLM's success text and the name is no longer served.
func (s *Server) handleUnloadLoRA(w http.ResponseWriter, r *http.Request) {
	var req unloadLoRARequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.LoRAName == nil {
		writeError(w, requiredField("lora_name"))
		return
	}
	name := *req.LoRAName
	if name == "" {
		writeError(w, invalidUserInput("'lora_name' needs to be provided to unload a LoRA adapter."))
		return
	}
	s.loraMu.Lock()
	defer s.loraMu.Unlock()
	s.mu.Lock()
	_, ok := s.adapters[name]
	if ok {
		delete(s.adapters, name)
		delete(s.models, name)
		s.names = slices.DeleteFunc(s.names, func(n string) bool { return n == name })
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, notFound("", "The lora adapter '%s' cannot be found.", name))
		return
	}
	s.log.InfoContext(r.Context(), "unloaded adapter", "model", name)
	writeText(w, fmt.Sprintf("Success: LoRA adapter '%s' removed successfully.", name))
}

// writeText answers 200 with a bare text body and no Content-Type, as
// vLLM's Response(status_code=200, content=…) does.
func writeText(w http.ResponseWriter, body string) {
	w.Header()["Content-Type"] = nil
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(body))
}
