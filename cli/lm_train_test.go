package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/corpus"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// run executes the selfplay command line and returns its standard output.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// writeExport writes a train.jsonl in the shape selfplay exports (TRL's
// conversational format plus score columns) from best-vs-worst pairs
// sampled from the built-in model, and returns its path and row count.
func writeExport(t *testing.T, dir string, prompts int, seed uint64) (string, int) {
	t.Helper()
	prefs := tinylmtest.Preferences(t, tinylm.Builtin(), corpus.Prompts(seed, prompts), 4, seed)
	var b strings.Builder
	for i, p := range prefs {
		row := map[string]any{
			"prompt":          p.Prompt,
			"chosen":          []tinylm.Message{{Role: "assistant", Content: p.Chosen}},
			"rejected":        []tinylm.Message{{Role: "assistant", Content: p.Rejected}},
			"prompt_id":       i + 1,
			"score_chosen":    1.5,
			"score_rejected":  -0.5,
			"explicit_margin": 2.0,
		}
		line, err := json.Marshal(row)
		require.NoError(t, err)
		b.Write(line)
		b.WriteByte('\n')
	}
	path := filepath.Join(dir, "train.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	return path, len(prefs)
}

var epochLine = regexp.MustCompile(`(?m)^epoch (\d+)/(\d+)  loss ([0-9.]+)  reward_accuracy ([0-9.]+)`)

func TestLMTrainWritesAModelThatFitsTheExport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	models := filepath.Join(dir, "models")
	require.NoError(t, os.Mkdir(models, 0o755))
	data, rows := writeExport(t, dir, 40, 3)

	args := []string{"lm", "train", "--models-dir", models, "--data", data, "--init", "tiny-0", "--out", "tiny-1", "--epochs", "4", "--seed", "7"}
	out, err := run(t, args...)
	require.NoError(t, err, out)
	require.Contains(t, out, "lm train: "+strconv.Itoa(rows)+" pairs from "+data+"; loss dpo, beta 0.1; init builtin, ref builtin")
	epochs := epochLine.FindAllStringSubmatch(out, -1)
	require.Len(t, epochs, 4, out)
	first, _ := strconv.ParseFloat(epochs[0][3], 64)
	last, _ := strconv.ParseFloat(epochs[3][3], 64)
	require.Less(t, last, first, "the loss goes down over the epochs")
	acc, _ := strconv.ParseFloat(epochs[3][4], 64)
	require.Greater(t, acc, 0.7)

	path := filepath.Join(models, "tiny-1.bin.gz")
	require.Contains(t, out, "wrote "+path)
	trained, err := tinylm.Load(path)
	require.NoError(t, err)
	require.False(t, slices.Equal(trained.U, tinylm.Builtin().U), "the written model is trained")

	// The same command again gives the very same weights.
	args[slices.Index(args, "tiny-1")] = "tiny-1b"
	_, err = run(t, args...)
	require.NoError(t, err)
	again, err := tinylm.Load(filepath.Join(models, "tiny-1b.bin.gz"))
	require.NoError(t, err)
	for _, p := range [][2][]float64{{trained.B, again.B}, {trained.U, again.U}, {trained.E, again.E}, {trained.F, again.F}} {
		require.True(t, slices.Equal(p[0], p[1]), "deterministic given the seed")
	}

	// The last iteration's hook has an empty {next_model}: --final-model.
	out, err = run(t, "lm", "train", "--models-dir", models, "--data", data, "--init", "tiny-1", "--out", "", "--final-model", "tiny-final",
		"--loss", "epsilon-dpo", "--beta", "0.1", "--epochs", "1")
	require.NoError(t, err, out)
	require.Contains(t, out, "init "+path)
	require.Regexp(t, `beta 0\.\d+  relaxed \d+  tightened \d+`, out)
	_, err = tinylm.Load(filepath.Join(models, "tiny-final.bin.gz"))
	require.NoError(t, err)

	// lm eval scores both; the trained model's replies differ.
	prompts := filepath.Join(dir, "heldout.jsonl")
	var pl strings.Builder
	for _, msgs := range corpus.Prompts(99, 12) {
		b, err := json.Marshal(map[string]any{"messages": msgs})
		require.NoError(t, err)
		pl.Write(b)
		pl.WriteByte('\n')
	}
	require.NoError(t, os.WriteFile(prompts, []byte(pl.String()), 0o644))
	out, err = run(t, "lm", "eval", "--prompts", prompts, "--models-dir", models, "--samples", "2", "--json", "tiny-0", "tiny-1")
	require.NoError(t, err, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2)
	var r0, r1 evalLine
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &r0))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &r1))
	require.Equal(t, "tiny-0", r0.Model)
	require.Equal(t, 24, r0.Responses)
	want, err := tinylm.Evaluate(tinylm.Builtin(), corpus.Prompts(99, 12), tinylm.EvalOptions{
		Sampling: tinylm.SampleOptions{Temperature: 0.8, TopP: 0.95, MaxTokens: 128}, Samples: 2, Seed: 1})
	require.NoError(t, err)
	require.Equal(t, want, r0.EvalResult, "lm eval is tinylm.Evaluate with the flags' defaults")
	require.NotEqual(t, r0.MeanReward, r1.MeanReward)

	out, err = run(t, "lm", "eval", "--prompts", prompts, "--samples", "1", "builtin")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^\s*model\s+mean_reward\s+stderr`, out)
	require.Regexp(t, `(?m)^\s*builtin\s+-?\d+\.\d{4}`, out)
}

func TestLMTrainRejectsBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "train.jsonl")
	require.NoError(t, os.WriteFile(good, []byte(`{"prompt":"how do i cook rice?","chosen":"rinse it well .","rejected":"no"}`+"\n"), 0o644))
	bad := filepath.Join(dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte(`{"prompt":"a","chosen":"b","rejected":"c"}`+"\n"+`{"prompt":"a"}`+"\n"), 0o644))
	out := filepath.Join(dir, "out.bin.gz")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown loss", args: []string{"--data", good, "--init", "builtin", "--out", out, "--loss", "ipo"}, want: `unknown loss "ipo"`},
		{name: "gamma with dpo", args: []string{"--data", good, "--init", "builtin", "--out", out, "--gamma", "1"}, want: "--gamma is SimPO's margin"},
		{name: "epsilon with simpo", args: []string{"--data", good, "--init", "builtin", "--out", out, "--loss", "simpo", "--epsilon", "0.1"}, want: "--epsilon belongs to ε-DPO"},
		{name: "ref with simpo", args: []string{"--data", good, "--init", "builtin", "--out", out, "--loss", "simpo", "--ref", "builtin"}, want: "needs no reference"},
		{name: "no data", args: []string{"--init", "builtin", "--out", out}, want: "--data is required"},
		{name: "no init", args: []string{"--data", good, "--out", out}, want: "--init is empty"},
		{name: "empty out without final model", args: []string{"--data", good, "--init", "builtin", "--out", ""}, want: "--final-model"},
		{name: "zero epochs", args: []string{"--data", good, "--init", "builtin", "--out", out, "--epochs", "0"}, want: "--epochs 0"},
		{name: "negative beta", args: []string{"--data", good, "--init", "builtin", "--out", out, "--beta", "-1"}, want: "--beta -1"},
		{name: "bad line", args: []string{"--data", bad, "--init", "builtin", "--out", out}, want: bad + `:2: "chosen" is missing`},
		{name: "missing data file", args: []string{"--data", filepath.Join(dir, "none.jsonl"), "--init", "builtin", "--out", out}, want: "no such file"},
		{name: "missing model name", args: []string{"--data", good, "--models-dir", dir, "--init", "tiny-4", "--out", out}, want: "--init tiny-4"},
		{name: "bad model alias", args: []string{"--data", good, "--model", "tiny-0", "--init", "tiny-0", "--out", out}, want: "want NAME=PATH"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := run(t, append([]string{"lm", "train"}, tc.args...)...)
			require.ErrorContains(t, err, tc.want)
			require.NoFileExists(t, out)
		})
	}
	_, err := run(t, "lm", "eval", "--prompts", good)
	require.ErrorContains(t, err, "at least one MODEL")
	_, err = run(t, "lm", "eval", "builtin")
	require.ErrorContains(t, err, "--prompts is required")
}

func TestLMServeModelsDir(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	dir := t.TempDir()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := NewRoot()
	root.SetErr(&bytes.Buffer{})
	root.SetArgs([]string{"lm", "serve", "--addr", addr, "--models-dir", dir, "--rescan-interval", "20ms"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	models := func() []string {
		resp, err := http.Get("http://" + addr + "/v1/models")
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var list struct {
			Data []struct{ ID string } `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&list) != nil {
			return nil
		}
		var ids []string
		for _, d := range list.Data {
			ids = append(ids, d.ID)
		}
		return ids
	}
	require.Eventually(t, func() bool { return slices.Equal(models(), []string{"tiny-0", "reward"}) }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, tinylm.Builtin().Save(filepath.Join(dir, "tiny-1.bin.gz")))
	require.Eventually(t, func() bool { return slices.Equal(models(), []string{"tiny-0", "tiny-1", "reward"}) }, 10*time.Second, 20*time.Millisecond,
		"a file written to the models directory is served without a request")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("lm serve did not stop")
	}

	_, err = run(t, "lm", "serve", "--addr", "127.0.0.1:0", "--models-dir", filepath.Join(dir, "missing"))
	require.ErrorContains(t, err, "models directory")
}
