package tinylm_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// The adapter routes are held to vLLM's source, read in vllm-project/vllm:
//   - vllm/entrypoints/serve/lora/api_router.py: the routes exist only when
//     envs.VLLM_ALLOW_RUNTIME_LORA_UPDATING is true (otherwise FastAPI answers
//     404 for them, as for any unknown path); success is 200 with the
//     handler's text as the body;
//   - vllm/entrypoints/serve/lora/protocol.py: lora_name, lora_path,
//     load_inplace (default false); unload takes lora_name;
//   - vllm/entrypoints/openai/models/serving.py (OpenAIServingModels):
//     400 InvalidUserInput for an empty name or path and for a second load of
//     a name without load_inplace, 404 NotFoundError for unloading a name not
//     loaded and (LoRAAdapterNotFoundError, vllm/exceptions.py, mapped by
//     create_error_response in vllm/entrypoints/serve/utils/error_response.py)
//     for a path with no adapter, the adapter's card on /v1/models with
//     root = its path and parent = the base model;
//   - vllm/envs.py: the variable is true for "1" or "true", any case, spaces
//     stripped.

func callErr(t *testing.T, base, path string, body any, status int) errResp {
	t.Helper()
	got, _, raw := call(t, base, path, body)
	require.Equal(t, status, got, "body: %s", raw)
	var e errResp
	require.NoError(t, json.Unmarshal(raw, &e), "body: %s", raw)
	require.Equal(t, status, e.Error.Code, "vLLM sets code to the HTTP status")
	return e
}

type card struct {
	ID          string  `json:"id"`
	Root        string  `json:"root"`
	Parent      *string `json:"parent"`
	MaxModelLen *int    `json:"max_model_len"`
}

func cards(t *testing.T, base string) map[string]card {
	t.Helper()
	var list struct {
		Data []card `json:"data"`
	}
	ok(t, base, "/v1/models", nil, &list)
	out := map[string]card{}
	for _, c := range list.Data {
		out[c.ID] = c
	}
	return out
}

func TestRuntimeLoRAUpdatingEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		value string
		on    bool
	}{
		{"True", true}, {"true", true}, {"TRUE", true}, {"1", true}, {" true\n", true},
		{"", false}, {"0", false}, {"False", false}, {"yes", false}, {"on", false}, {"11", false},
	} {
		require.Equal(t, tc.on, tinylm.RuntimeLoRAUpdating(tc.value), "%q", tc.value)
	}
}

func TestLoRARoutesNeedTheVariable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "a.bin.gz")
	require.NoError(t, variant(t, "rice", 1).Save(file))
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	for _, path := range []string{"/v1/load_lora_adapter", "/v1/unload_lora_adapter"} {
		status, _, raw := call(t, base, path, map[string]any{"lora_name": "a", "lora_path": file})
		require.Equal(t, http.StatusNotFound, status, "%s without VLLM_ALLOW_RUNTIME_LORA_UPDATING: %s", path, raw)
	}
	require.Equal(t, []string{"tiny-0"}, servedModels(t, base))
}

func TestLoRALoadAndUnload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.bin.gz"), filepath.Join(dir, "second.bin.gz")
	require.NoError(t, variant(t, "rice", 1).Save(first))
	require.NoError(t, variant(t, "rice", -1).Save(second))
	base := tinylmtest.Start(t, tinylm.ServerOptions{RuntimeLoRAUpdating: true})
	lp0 := scoredLogProb(t, base, "tiny-0")

	status, header, raw := call(t, base, "/v1/load_lora_adapter", map[string]any{"lora_name": "policy-1", "lora_path": first})
	require.Equal(t, http.StatusOK, status, "%s", raw)
	require.Equal(t, "Success: LoRA adapter 'policy-1' added successfully.", string(raw))
	require.Empty(t, header.Get("Content-Type"), "vLLM's Response(content=…) sets no media type")

	c := cards(t, base)
	require.Equal(t, []string{"tiny-0", "policy-1"}, []string{c["tiny-0"].ID, c["policy-1"].ID})
	require.Equal(t, first, c["policy-1"].Root, "root is the adapter's path")
	require.NotNil(t, c["policy-1"].Parent)
	require.Equal(t, "tiny-0", *c["policy-1"].Parent, "parent is the base model")
	require.Nil(t, c["policy-1"].MaxModelLen, "vLLM's adapter card has no max_model_len")
	require.Nil(t, c["tiny-0"].Parent)
	require.Equal(t, tinylm.DefaultMaxModelLen, *c["tiny-0"].MaxModelLen)
	lp1 := scoredLogProb(t, base, "policy-1")
	require.Greater(t, lp1, lp0, "policy-1 is the file's model: the raised bias of \"rice\" makes the reply likelier")
	var chat chatResp
	ok(t, base, "/v1/chat/completions", map[string]any{"model": "policy-1", "messages": userMsg("how do i cook rice ?"), "max_tokens": 5}, &chat)
	require.Equal(t, "policy-1", chat.Model)

	// A second load of the name: refused without load_inplace, whatever
	// the path, and the first model stays.
	e := callErr(t, base, "/v1/load_lora_adapter", map[string]any{"lora_name": "policy-1", "lora_path": second}, http.StatusBadRequest)
	require.Equal(t, "The lora adapter 'policy-1' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True.", e.Error.Message)
	require.Equal(t, "InvalidUserInput", e.Error.Type)
	require.Nil(t, e.Error.Param)
	require.Equal(t, lp1, scoredLogProb(t, base, "policy-1"))
	e = callErr(t, base, "/v1/load_lora_adapter", map[string]any{"lora_name": "policy-1", "lora_path": first, "load_inplace": false}, http.StatusBadRequest)
	require.Equal(t, "InvalidUserInput", e.Error.Type, "the same path again is refused too")

	// load_inplace replaces it, and again with the same file.
	status, _, raw = call(t, base, "/v1/load_lora_adapter", map[string]any{"lora_name": "policy-1", "lora_path": second, "load_inplace": true})
	require.Equal(t, http.StatusOK, status, "%s", raw)
	require.Less(t, scoredLogProb(t, base, "policy-1"), lp0, "policy-1 now serves the second file (bias lowered)")
	require.Equal(t, second, cards(t, base)["policy-1"].Root)
	status, _, raw = call(t, base, "/v1/load_lora_adapter", map[string]any{"lora_name": "policy-1", "lora_path": second, "load_inplace": true})
	require.Equal(t, http.StatusOK, status, "%s", raw)
	require.Equal(t, []string{"policy-1", "tiny-0"}, servedModels(t, base), "listed once")
	// load_inplace on a new name is a plain load.
	status, _, raw = call(t, base, "/v1/load_lora_adapter", map[string]any{"lora_name": "policy-2", "lora_path": first, "load_inplace": true})
	require.Equal(t, http.StatusOK, status, "%s", raw)
	require.Equal(t, lp1, scoredLogProb(t, base, "policy-2"))

	// Unload.
	e = callErr(t, base, "/v1/unload_lora_adapter", map[string]any{"lora_name": "policy-9"}, http.StatusNotFound)
	require.Equal(t, "The lora adapter 'policy-9' cannot be found.", e.Error.Message)
	require.Equal(t, "NotFoundError", e.Error.Type)
	e = callErr(t, base, "/v1/unload_lora_adapter", map[string]any{"lora_name": "tiny-0"}, http.StatusNotFound)
	require.Equal(t, "The lora adapter 'tiny-0' cannot be found.", e.Error.Message, "a base model is not an adapter")
	status, _, raw = call(t, base, "/v1/unload_lora_adapter", map[string]any{"lora_name": "policy-1", "lora_int_id": 1})
	require.Equal(t, http.StatusOK, status, "%s", raw)
	require.Equal(t, "Success: LoRA adapter 'policy-1' removed successfully.", string(raw))
	require.Equal(t, []string{"policy-2", "tiny-0"}, servedModels(t, base))
	status, _, raw = call(t, base, "/v1/chat/completions", map[string]any{"model": "policy-1", "messages": userMsg("hi")})
	require.Equal(t, http.StatusNotFound, status, "%s", raw)
	callErr(t, base, "/v1/unload_lora_adapter", map[string]any{"lora_name": "policy-1"}, http.StatusNotFound)
	// Unloaded, the name loads again without load_inplace.
	status, _, raw = call(t, base, "/v1/load_lora_adapter", map[string]any{"lora_name": "policy-1", "lora_path": first})
	require.Equal(t, http.StatusOK, status, "%s", raw)
}

func TestLoRALoadErrors(t *testing.T) {
	t.Parallel()
	dir, models := t.TempDir(), t.TempDir()
	good, broken := filepath.Join(dir, "good.bin.gz"), filepath.Join(dir, "broken.bin.gz")
	require.NoError(t, variant(t, "rice", 1).Save(good))
	require.NoError(t, os.WriteFile(broken, []byte("not gzip"), 0o644))
	require.NoError(t, variant(t, "cake", 1).Save(filepath.Join(models, "from-dir.bin.gz")))
	srv, base := tinylmtest.StartServer(t, tinylm.ServerOptions{RuntimeLoRAUpdating: true, ModelsDir: models})
	load := func(body map[string]any, status int) errResp {
		t.Helper()
		return callErr(t, base, "/v1/load_lora_adapter", body, status)
	}

	missing := filepath.Join(dir, "missing.bin.gz")
	e := load(map[string]any{"lora_name": "x", "lora_path": missing}, http.StatusNotFound)
	require.Equal(t, "Loading lora x failed: No adapter found for "+missing, e.Error.Message)
	require.Equal(t, "NotFoundError", e.Error.Type)
	e = load(map[string]any{"lora_name": "x", "lora_path": dir}, http.StatusNotFound)
	require.Equal(t, "Loading lora x failed: No adapter found for "+dir, e.Error.Message, "a folder is not a tinylm adapter")
	e = load(map[string]any{"lora_name": "x", "lora_path": broken}, http.StatusInternalServerError)
	require.Equal(t, "InternalServerError", e.Error.Type)
	require.Contains(t, e.Error.Message, "not a gzip weights file")

	for _, body := range []map[string]any{
		{"lora_name": "", "lora_path": good},
		{"lora_name": "x", "lora_path": ""},
	} {
		e = load(body, http.StatusBadRequest)
		require.Equal(t, "Both 'lora_name' and 'lora_path' must be provided.", e.Error.Message)
		require.Equal(t, "InvalidUserInput", e.Error.Type)
	}
	e = load(map[string]any{"lora_path": good}, http.StatusBadRequest)
	require.Equal(t, "lora_name", *e.Error.Param, "a missing field fails validation")
	e = load(map[string]any{"lora_name": "x"}, http.StatusBadRequest)
	require.Equal(t, "lora_path", *e.Error.Param)
	e = load(map[string]any{"lora_name": 7, "lora_path": good}, http.StatusBadRequest)
	require.Equal(t, "lora_name", *e.Error.Param)
	e = callErr(t, base, "/v1/unload_lora_adapter", map[string]any{"lora_name": ""}, http.StatusBadRequest)
	require.Equal(t, "'lora_name' needs to be provided to unload a LoRA adapter.", e.Error.Message)

	// Names other models hold (tinylm serves one model per name), even
	// with load_inplace.
	for _, name := range []string{"tiny-0", "from-dir", tinylm.DefaultRewardModel} {
		e = load(map[string]any{"lora_name": name, "lora_path": good, "load_inplace": true}, http.StatusBadRequest)
		require.Equal(t, "lora_name", *e.Error.Param, name)
	}
	require.Equal(t, []string{"from-dir", "tiny-0"}, servedModels(t, base), "nothing was loaded")

	// A models-directory file named like a loaded adapter is not served.
	status, _, raw := call(t, base, "/v1/load_lora_adapter", map[string]any{"lora_name": "later", "lora_path": good})
	require.Equal(t, http.StatusOK, status, "%s", raw)
	require.NoError(t, variant(t, "cake", 2).Save(filepath.Join(models, "later.bin.gz")))
	ch, err := srv.Rescan()
	require.NoError(t, err)
	require.Contains(t, ch.Failed["later"], "taken by an adapter")
	require.Empty(t, ch.Loaded)
	require.Equal(t, good, cards(t, base)["later"].Root, "the adapter stays")
}
