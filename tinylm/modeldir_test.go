package tinylm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// variant is the built-in model with the bias of one word raised, so its
// log-probabilities differ from the built-in model's.
func variant(t *testing.T, word string, by float64) *tinylm.Model {
	t.Helper()
	m := tinylm.Builtin()
	id, ok := m.Tok.ID(word)
	require.True(t, ok, word)
	m.B[id] += by
	return m
}

// servedModels lists the generative models of /v1/models (the reward model
// left out).
func servedModels(t *testing.T, base string) []string {
	t.Helper()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	ok(t, base, "/v1/models", nil, &list)
	var ids []string
	for _, d := range list.Data {
		if d.ID != tinylm.DefaultRewardModel {
			ids = append(ids, d.ID)
		}
	}
	return ids
}

// scoredLogProb is the teacher-forced log-probability of the reply "rice
// is good ." to a fixed prompt under model, as the reference scorer asks
// for it over HTTP.
func scoredLogProb(t *testing.T, base, model string) float64 {
	t.Helper()
	tok := tinylm.Builtin().Tok
	prompt, err := tok.EncodeChat([]tinylm.Message{{Role: "user", Content: "how do i cook rice ?"}}, true)
	require.NoError(t, err)
	reply := append(tok.Encode("rice is good ."), tinylm.EndID)
	var r completionResp
	ok(t, base, "/v1/completions", map[string]any{"model": model, "prompt": append(slices.Clone(prompt), reply...), "max_tokens": 1, "prompt_logprobs": 0}, &r)
	var sum float64
	for i, id := range reply {
		sum += r.Choices[0].PromptLogprobs[len(prompt)+i][fmt.Sprint(id)].Logprob
	}
	return sum
}

type loadResp struct {
	Loaded  []string          `json:"loaded"`
	Removed []string          `json:"removed"`
	Failed  map[string]string `json:"failed"`
	Models  []string          `json:"models"`
}

func TestModelsDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, variant(t, "rice", 1).Save(filepath.Join(dir, "tiny-1.bin.gz")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a model"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".tinylm-123.tmp"), []byte("half written"), 0o644))
	base := tinylmtest.Start(t, tinylm.ServerOptions{Models: map[string]*tinylm.Model{"tiny-0": tinylm.Builtin()}, ModelsDir: dir})

	require.Equal(t, []string{"tiny-0", "tiny-1"}, servedModels(t, base), "files present at start are served")
	lp0, lp1 := scoredLogProb(t, base, "tiny-0"), scoredLogProb(t, base, "tiny-1")
	require.Greater(t, lp1, lp0, "tiny-1 is the file's model: the raised bias of \"rice\" makes the reply likelier")

	var r loadResp
	ok(t, base, "/v1/load", "", &r)
	require.Equal(t, loadResp{Loaded: []string{}, Removed: []string{}, Models: []string{"tiny-0", "tiny-1"}}, r, "nothing changed")

	// A new file, a replaced file, a corrupt file and a file named like a
	// fixed model, then one rescan.
	require.NoError(t, variant(t, "rice", 2).Save(filepath.Join(dir, "tiny-2.bin.gz")))
	require.NoError(t, variant(t, "rice", -1).Save(filepath.Join(dir, "tiny-1.bin.gz")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "broken.bin.gz"), []byte("not gzip"), 0o644))
	require.NoError(t, tinylm.Builtin().Save(filepath.Join(dir, "tiny-0.bin.gz")))
	ok(t, base, "/v1/load", "", &r)
	require.Equal(t, []string{"tiny-1", "tiny-2"}, r.Loaded)
	require.Empty(t, r.Removed)
	require.Len(t, r.Failed, 2)
	require.Contains(t, r.Failed["broken"], "not a gzip weights file")
	require.Contains(t, r.Failed["tiny-0"], "taken by a --model")
	require.Equal(t, []string{"tiny-0", "tiny-1", "tiny-2"}, r.Models)
	require.Less(t, scoredLogProb(t, base, "tiny-1"), lp0, "tiny-1 now serves the replaced file (bias lowered)")
	require.Greater(t, scoredLogProb(t, base, "tiny-2"), lp1)

	r = loadResp{}
	ok(t, base, "/v1/load", "", &r)
	require.Empty(t, r.Failed, "a bad file is reported once per version")

	require.NoError(t, os.Remove(filepath.Join(dir, "tiny-2.bin.gz")))
	r = loadResp{}
	ok(t, base, "/v1/load", "", &r)
	require.Equal(t, []string{"tiny-2"}, r.Removed)
	require.Equal(t, []string{"tiny-0", "tiny-1"}, servedModels(t, base))
	status, _, raw := call(t, base, "/v1/chat/completions", map[string]any{"model": "tiny-2", "messages": userMsg("hi")})
	require.Equal(t, http.StatusNotFound, status, "%s", raw)
}

func TestModelsDirectoryWatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, base := tinylmtest.StartServer(t, tinylm.ServerOptions{ModelsDir: dir})
	require.Equal(t, []string{"tiny-0"}, servedModels(t, base), "no --model: the built-in model is tiny-0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Watch(ctx, 10*time.Millisecond) }()

	require.NoError(t, variant(t, "cake", 1).Save(filepath.Join(dir, "tiny-1.bin.gz")))
	require.Eventually(t, func() bool { return slices.Contains(srv.ModelNames(), "tiny-1") }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"tiny-0", "tiny-1"}, servedModels(t, base))
	cancel()
	require.NoError(t, <-done)
}

func TestModelsDirectoryErrors(t *testing.T) {
	t.Parallel()
	_, err := tinylm.NewServer(tinylm.ServerOptions{ModelsDir: filepath.Join(t.TempDir(), "missing")})
	require.ErrorContains(t, err, "models directory")
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err = tinylm.NewServer(tinylm.ServerOptions{ModelsDir: file})
	require.ErrorContains(t, err, "is not a directory")

	srv, base := tinylmtest.StartServer(t, tinylm.ServerOptions{})
	status, _, raw := call(t, base, "/v1/load", "")
	require.Equal(t, http.StatusBadRequest, status)
	var e struct {
		Error struct{ Message string } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(raw, &e))
	require.Contains(t, e.Error.Message, "--models-dir")
	require.ErrorIs(t, srv.Watch(context.Background(), time.Second), tinylm.ErrNoModelsDir)
	_, err = srv.Rescan()
	require.ErrorIs(t, err, tinylm.ErrNoModelsDir)
}
