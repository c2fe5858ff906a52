package tinylm_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// TestResponseTimeIsAFloor checks that with ResponseTime every served
// request answers no sooner than that after it was sent, and correctly.
func TestResponseTimeIsAFloor(t *testing.T) {
	t.Parallel()
	const rt = 80 * time.Millisecond
	base := tinylmtest.Start(t, tinylm.ServerOptions{Faults: tinylm.Faults{ResponseTime: rt}})
	body := []byte(`{"model": "tiny-0", "messages": [{"role": "user", "content": "how do i cook rice ?"}], "n": 2, "seed": 1, "logprobs": true}`)
	for range 3 {
		start := time.Now()
		resp, err := http.Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.GreaterOrEqual(t, time.Since(start), rt)
	}
	resp, err := http.Get(base + "/health")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
