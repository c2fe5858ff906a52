package cli

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
)

func TestLMServeRejectsBadFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "model without path", args: []string{"--model", "tiny-0"}, want: "want NAME=PATH"},
		{name: "missing weights file", args: []string{"--model", "tiny-0=" + filepath.Join(t.TempDir(), "none.bin.gz")}, want: "no such file"},
		{name: "duplicate model name", args: []string{"--model", "a=builtin", "--model", "a=builtin"}, want: "given twice"},
		{name: "model named like the reward model", args: []string{"--model", "reward=builtin"}, want: "reward model name"},
		{name: "bad fault rate", args: []string{"--error-rate", "2"}, want: "error rate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := NewRoot()
			root.SetArgs(append([]string{"lm", "serve", "--addr", "127.0.0.1:0"}, tc.args...))
			root.SetErr(&bytes.Buffer{})
			err := root.ExecuteContext(context.Background())
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestLMServeServesAndShutsDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	weights := filepath.Join(t.TempDir(), "tiny-1.bin.gz")
	require.NoError(t, tinylm.Builtin().Save(weights))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := NewRoot()
	var logs bytes.Buffer
	root.SetErr(&logs)
	root.SetArgs([]string{"lm", "serve", "--addr", addr, "--model", "tiny-0=builtin", "--model", "tiny-1=" + weights, "--reward-model", "judge"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	base := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)

	resp, err := http.Post(base+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"tiny-1","messages":[{"role":"user","content":"how do i cook rice?"}],"max_tokens":5}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = http.Post(base+"/classify", "application/json", strings.NewReader(`{"model":"judge","input":"x"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "SIGTERM (a cancelled context) shuts down cleanly")
	case <-time.After(15 * time.Second):
		t.Fatal("lm serve did not stop after its context was cancelled")
	}
	require.Contains(t, logs.String(), "tinylm serving")
}
