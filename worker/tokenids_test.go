package worker_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTokenIDsOnlyForAReference: the worker asks the policy for token ids
// (return_token_ids) only when the iteration scores its samples under a
// reference, which teacher-forces them by id; without one, a vLLM server
// need not write 5 × 512 ids into every reply, nor the worker read them.
// The policy's requests go through a proxy that records their bodies.
func TestTokenIDsOnlyForAReference(t *testing.T) {
	lm := startTinyLM(t)
	for _, withReference := range []bool{false, true} {
		t.Run(map[bool]string{false: "no reference", true: "reference"}[withReference], func(t *testing.T) {
			proxy := &recordingProxy{target: lm}
			srv := httptest.NewServer(proxy)
			t.Cleanup(srv.Close)
			o := envOptions{lmAddr: strings.TrimPrefix(srv.URL, "http://")}
			if withReference {
				o.reference = lm
			}
			e := setupOn(t, o)
			ids := e.addTasks(t, "How do I water tomatoes?", "What is a good first houseplant?")
			w := e.worker(t)
			e.waitSettled(t, ids)
			e.requireDone(t, ids)
			require.NoError(t, w.Signal(syscall.SIGTERM))
			require.NoError(t, w.Wait(time.Minute), w.Tail(20))

			chats := proxy.bodies("/v1/chat/completions")
			require.Len(t, chats, len(ids), "one chat request per prompt")
			for _, b := range chats {
				require.Equal(t, withReference, bytes.Contains(b, []byte(`"return_token_ids":true`)), "request body %s", b)
			}
			var refScored int
			require.NoError(t, e.pool.QueryRow(context.Background(),
				`SELECT count(*) FROM responses WHERE iteration_id = $1 AND ref_logprob_sum IS NOT NULL`, e.iterationID).Scan(&refScored))
			if withReference {
				require.Equal(t, len(ids)*e.samples, refScored, "every response scored under the reference")
			} else {
				require.Zero(t, refScored)
			}
		})
	}
}

// recordingProxy passes requests to target, keeping each one's path and
// body.
type recordingProxy struct {
	target string
	mu     sync.Mutex
	seen   []recorded
}

type recorded struct {
	path string
	body []byte
}

func (p *recordingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.seen = append(p.seen, recorded{r.URL.Path, body})
	p.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
	httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: p.target}).ServeHTTP(w, r)
}

func (p *recordingProxy) bodies(path string) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][]byte
	for _, s := range p.seen {
		if s.path == path {
			out = append(out, s.body)
		}
	}
	return out
}
