package vllm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// The request bodies selfplay sends to vLLM, read by vLLM's own request
// classes: selfplay's clients (and train_dpo.load_adapter) talk to a real
// tinylm server through a proxy that records each request and tinylm's
// reply; vllm_requests.py then validates every body with the class vLLM's
// router declares for the route, at the version of the default vLLM image
// (examples/vllm/requirements-vllm-protocol.txt, installed by
// scripts/install-vllm-protocol), and turns chat and completion requests
// into vLLM's SamplingParams as its serving code does. The vLLM files read:
// vllm/entrypoints/openai/chat_completion/protocol.py (ChatCompletionRequest,
// to_sampling_params), openai/completion/protocol.py (CompletionRequest),
// serve/tokenize/protocol.py (TokenizeCompletionRequest, TokenizeChatRequest),
// pooling/classify/protocol.py and pooling/pooling/protocol.py (the
// completion and chat forms, to_pooling_params), pooling/base/protocol.py
// (use_activation), serve/lora/protocol.py (LoadLoRAAdapterRequest),
// openai/engine/protocol.py (OpenAIBaseModel: extra fields allowed, logged
// at debug level and ignored), entrypoints/utils.py (get_max_tokens) and
// sampling_params.py (greedy sampling resets top_p, top_k and min_p).

// exchange is one request a client sent and the server's reply.
type exchange struct {
	Path     string          `json:"path"`
	Body     json.RawMessage `json:"body"`
	Response json.RawMessage `json:"response"`
	status   int
}

// recorder is a reverse proxy in front of a real server: it forwards each
// request unchanged, returns the server's reply and keeps both.
type recorder struct {
	url string
	mu  sync.Mutex
	got []exchange
}

func startRecorder(t *testing.T, upstream string) *recorder {
	t.Helper()
	target, err := url.Parse(upstream)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	r := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		tee := &teeWriter{ResponseWriter: w, status: http.StatusOK}
		proxy.ServeHTTP(tee, req)
		if req.Method != http.MethodPost {
			return // GET /v1/models and /health carry no body
		}
		reply := tee.body.Bytes()
		if !json.Valid(reply) { // vLLM's LoRA routes answer in plain text
			reply, _ = json.Marshal(string(reply))
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.got = append(r.got, exchange{Path: req.URL.Path, Body: body, Response: reply, status: tee.status})
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// since returns the exchanges recorded from index from on.
func (r *recorder) since(from int) []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got[from:])
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

type teeWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *teeWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

func (w *teeWriter) Write(p []byte) (int, error) {
	w.body.Write(p)
	return w.ResponseWriter.Write(p)
}

// vllmRead is what vllm_requests.py reports for one body.
type vllmRead struct {
	Path     string            `json:"path"`
	Class    string            `json:"class"`
	Error    *string           `json:"error"`
	Ignored  []string          `json:"ignored"`
	Changed  []json.RawMessage `json:"changed"`
	Sampling *samplingParams   `json:"sampling"`
	Pooling  *struct {
		UseActivation *bool `json:"use_activation"`
	} `json:"pooling"`
}

// samplingParams are the vLLM SamplingParams fields checked.
type samplingParams struct {
	N                 int     `json:"n"`
	Temperature       float64 `json:"temperature"`
	TopP              float64 `json:"top_p"`
	TopK              int     `json:"top_k"`
	MinP              float64 `json:"min_p"`
	Seed              *int64  `json:"seed"`
	MaxTokens         *int    `json:"max_tokens"`
	Logprobs          *int    `json:"logprobs"`
	PromptLogprobs    *int    `json:"prompt_logprobs"`
	RepetitionPenalty float64 `json:"repetition_penalty"`
	PresencePenalty   float64 `json:"presence_penalty"`
	FrequencyPenalty  float64 `json:"frequency_penalty"`
}

// vllmProtocol returns the Python interpreter of the environment
// scripts/install-vllm-protocol installs, failing the test when it is not
// installed.
func vllmProtocol(t *testing.T) string {
	t.Helper()
	return installedPython(t, "install-vllm-protocol", "vLLM's request classes")
}

// readWithVLLM runs vllm_requests.py on the exchanges.
func readWithVLLM(t *testing.T, python string, maxModelLen int, exchanges []exchange) []vllmRead {
	t.Helper()
	in := filepath.Join(t.TempDir(), "recorded.json")
	raw, err := json.Marshal(map[string]any{"max_model_len": maxModelLen, "requests": exchanges})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(in, raw, 0o600))
	result := filepath.Join(filepath.Dir(in), "read.json")
	cmd := exec.Command(python, "vllm_requests.py", in, result)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "HF_HUB_OFFLINE=1", "VLLM_LOGGING_LEVEL=WARNING")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "vllm_requests.py:\n%s", out)
	raw, err = os.ReadFile(result)
	require.NoError(t, err)
	var reads []vllmRead
	require.NoError(t, json.Unmarshal(raw, &reads), "vllm_requests.py wrote:\n%s", raw)
	require.Len(t, reads, len(exchanges))
	return reads
}

// call is one client call: the exchanges it caused and what vLLM must have
// read from them.
type call struct {
	name      string
	exchanges []exchange
	check     func(t *testing.T, reads []vllmRead, exchanges []exchange)
}

// Fields vLLM 0.18.0 ignores that selfplay sends on purpose: activation
// asks vLLM before 0.11.1, which reads it instead of use_activation
// (renamed in vllm-project/vllm#25524), for the raw score; use_activation
// asks current versions (classifyRequest in llm/protocol.go; the table in
// docs/production.md).
var ignoredOnPurpose = map[string][]string{
	"/classify": {"activation"},
	"/pooling":  {"activation"},
}

func TestRequestsReadByVLLM(t *testing.T) {
	t.Parallel()
	python := vllmProtocol(t)
	lm := tinylmtest.Start(t, tinylm.ServerOptions{RuntimeLoRAUpdating: true})
	rec := startRecorder(t, lm)
	ctx := context.Background()
	const maxModelLen = tinylm.DefaultMaxModelLen
	prompt := []llm.Message{
		{Role: "system", Content: "you answer in one sentence ."},
		{Role: "user", Content: "how do i keep my garden healthy in summer ?"},
	}
	var calls []call
	do := func(name string, fn func() error, check func(t *testing.T, reads []vllmRead, ex []exchange)) {
		t.Helper()
		from := rec.len()
		require.NoError(t, fn(), name)
		ex := rec.since(from)
		require.NotEmpty(t, ex, "%s sent nothing", name)
		calls = append(calls, call{name: name, exchanges: ex, check: check})
	}
	seed := func(s int64) *int64 { return &s }
	intp := func(v int) *int { return &v }

	// The policy sampler: n samples in one request, every knob as set.
	policyEP := llm.Endpoint{Name: "policy", BaseURL: rec.url + "/v1", Timeout: time.Minute}
	policy, err := llm.NewPolicy(policyEP)
	require.NoError(t, err)
	var samples []llm.Sample
	do("sample n=3", func() error {
		samples, err = policy.Sample(ctx, prompt, llm.SampleParams{Model: "tiny-0", N: 3, Temperature: 0.3, TopP: 0.9, MaxTokens: 24, Seed: seed(11)})
		return err
	}, func(t *testing.T, reads []vllmRead, _ []exchange) {
		require.Len(t, reads, 1)
		require.Equal(t, samplingParams{N: 3, Temperature: 0.3, TopP: 0.9, TopK: 0, MinP: 0, Seed: seed(11), MaxTokens: intp(24),
			Logprobs: intp(0), RepetitionPenalty: 1}, *reads[0].Sampling)
	})
	// Greedy, no max_tokens: vLLM's get_max_tokens takes the model's
	// generation_config max_tokens (3000 in vllm_requests.py), below
	// max_model_len minus the prompt's few tokens; greedy sampling resets
	// top_p to 1 whatever the model's default.
	do("sample greedy", func() error {
		_, err := policy.Sample(ctx, prompt, llm.SampleParams{Model: "tiny-0", N: 1, Temperature: 0})
		return err
	}, func(t *testing.T, reads []vllmRead, _ []exchange) {
		require.Len(t, reads, 1)
		require.Equal(t, samplingParams{N: 1, Temperature: 0, TopP: 1, MaxTokens: intp(3000), Logprobs: intp(0), RepetitionPenalty: 1}, *reads[0].Sampling)
	})
	// More samples than the endpoint's max_n: one request per sample,
	// seeds Seed+i.
	limited := policyEP
	limited.MaxN = 2
	split, err := llm.NewPolicy(limited)
	require.NoError(t, err)
	do("sample n=3 above max_n", func() error {
		_, err := split.Sample(ctx, prompt, llm.SampleParams{Model: "tiny-0", N: 3, Temperature: 1, MaxTokens: 16, Seed: seed(100)})
		return err
	}, func(t *testing.T, reads []vllmRead, _ []exchange) {
		require.Len(t, reads, 3)
		var seeds []int64
		for _, r := range reads {
			seeds = append(seeds, *r.Sampling.Seed)
			r.Sampling.Seed = nil
			// TopP 0 leaves the server's default, the model's.
			require.Equal(t, samplingParams{N: 1, Temperature: 1, TopP: 0.85, MaxTokens: intp(16), Logprobs: intp(0), RepetitionPenalty: 1}, *r.Sampling)
		}
		require.ElementsMatch(t, []int64{100, 101, 102}, seeds)
	})

	// The reference scorer: /tokenize both forms and teacher forcing.
	reference, err := llm.NewReference(llm.Endpoint{Name: "reference", BaseURL: rec.url, Model: "tiny-0", Timeout: time.Minute})
	require.NoError(t, err)
	// Greedy, one token, the prompt's own log-probs. The repetition
	// penalty the request leaves to the model touches sampling only:
	// prompt_logprobs come from the raw logits
	// (vllm/v1/worker/gpu_model_runner.py, _get_prompt_logprobs_dict).
	teacherForced := samplingParams{N: 1, Temperature: 0, TopP: 1, MaxTokens: intp(1), PromptLogprobs: intp(0), RepetitionPenalty: 1.07}
	checkTokenize := func(t *testing.T, r vllmRead, body map[string]any) {
		if _, chat := body["messages"]; chat {
			require.Equal(t, "TokenizeChatRequest", r.Class)
		} else {
			require.Equal(t, "TokenizeCompletionRequest", r.Class)
			require.Equal(t, false, body["add_special_tokens"], "response text is tokenized without a BOS")
		}
	}
	checkReference := func(t *testing.T, reads []vllmRead, ex []exchange) {
		for i, r := range reads {
			body := decodeBody(t, ex[i])
			switch r.Path {
			case "/tokenize":
				checkTokenize(t, r, body)
			case "/v1/completions":
				require.Equal(t, "CompletionRequest", r.Class)
				require.Equal(t, teacherForced, *r.Sampling)
			default:
				t.Fatalf("the reference sent %s", r.Path)
			}
		}
	}
	do("reference probe", func() error { return reference.Probe(ctx, "") }, checkReference)
	do("reference max_model_len", func() error {
		n, err := reference.MaxModelLen(ctx, "")
		require.Equal(t, maxModelLen, n)
		return err
	}, checkReference)
	do("reference log-prob of text", func() error {
		_, err := reference.LogProb(ctx, "", prompt, "water it early in the morning .")
		return err
	}, checkReference)
	do("reference log-prob of a sample", func() error {
		_, err := reference.LogProbSample(ctx, "", prompt, samples[0])
		return err
	}, func(t *testing.T, reads []vllmRead, ex []exchange) {
		require.Len(t, reads, 1, "the sample's own token ids: no /tokenize")
		checkReference(t, reads, ex)
		require.Equal(t, append(slices.Clone(samples[0].PromptTokenIDs), samples[0].TokenIDs...), decodeInts(t, decodeBody(t, ex[0])["prompt"]))
	})

	// The reward model, each kind vLLM serves, batched (rendered input)
	// and in the chat form; an empty reply among them.
	replies := []string{samples[0].Content, samples[1].Content, ""}
	for _, kind := range []string{llm.KindClassify, llm.KindPooling} {
		route := "/" + kind
		checkReward := func(form string) func(t *testing.T, reads []vllmRead, ex []exchange) {
			return func(t *testing.T, reads []vllmRead, ex []exchange) {
				class := map[string]string{llm.KindClassify: "Classification", llm.KindPooling: "Pooling"}[kind] + form + "Request"
				for _, r := range reads {
					require.Equal(t, route, r.Path)
					require.Equal(t, class, r.Class)
					require.NotNil(t, r.Pooling.UseActivation)
					require.False(t, *r.Pooling.UseActivation, "the raw score, no sigmoid")
				}
			}
		}
		ep := llm.Endpoint{Name: "reward", BaseURL: rec.url, Model: "reward", Kind: kind, Timeout: time.Minute}
		batched, err := llm.NewReward(ep, llm.WithChatTemplate(llm.TemplateTinyLM))
		require.NoError(t, err)
		do(kind+" check template", func() error { return batched.CheckTemplate(ctx) }, func(t *testing.T, reads []vllmRead, ex []exchange) {
			require.Len(t, reads, 2)
			for i, r := range reads {
				require.Equal(t, "/tokenize", r.Path)
				body := decodeBody(t, ex[i])
				checkTokenize(t, r, body)
				require.Equal(t, false, body["add_special_tokens"])
			}
		})
		do(kind+" batched", func() error {
			_, err := batched.Score(ctx, prompt, replies)
			return err
		}, func(t *testing.T, reads []vllmRead, ex []exchange) {
			require.Len(t, reads, 1, "one request for the prompt's replies")
			checkReward("Completion")(t, reads, ex)
		})
		chat, err := llm.NewReward(ep)
		require.NoError(t, err)
		do(kind+" chat form", func() error {
			_, err := chat.Score(ctx, prompt, replies)
			return err
		}, func(t *testing.T, reads []vllmRead, ex []exchange) {
			require.Len(t, reads, len(replies), "one request per reply")
			checkReward("Chat")(t, reads, ex)
		})
	}
	judge, err := llm.NewReward(llm.Endpoint{Name: "judge", BaseURL: rec.url + "/v1", Model: "tiny-0", Kind: llm.KindJudge, Timeout: time.Minute})
	require.NoError(t, err)
	do("judge", func() error {
		// tiny-0 writes no grade: the judge's request is what is checked.
		_, err := judge.Score(ctx, prompt, replies[:1])
		require.True(t, llm.IsPermanent(err), "%v", err)
		return nil
	}, func(t *testing.T, reads []vllmRead, _ []exchange) {
		require.Len(t, reads, 1)
		require.Equal(t, "ChatCompletionRequest", reads[0].Class)
		// Greedy, 16 tokens; the repetition penalty the judge does not
		// send comes from the model's generation_config.
		require.Equal(t, samplingParams{N: 1, Temperature: 0, TopP: 1, MaxTokens: intp(16), RepetitionPenalty: 1.07}, *reads[0].Sampling)
	})

	// The train hook's reload: train_dpo.load_adapter itself.
	adapter := filepath.Join(t.TempDir(), "policy-1.bin.gz")
	require.NoError(t, tinylm.Builtin().Save(adapter))
	do("load adapter", func() error {
		cmd := exec.Command(python, "-c", "import sys; import train_dpo; train_dpo.load_adapter(sys.argv[1], 'policy-1', sys.argv[2])", rec.url, adapter)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return nil
	}, func(t *testing.T, reads []vllmRead, ex []exchange) {
		require.Len(t, reads, 1)
		require.Equal(t, "LoadLoRAAdapterRequest", reads[0].Class)
		require.Equal(t, map[string]any{"lora_name": "policy-1", "lora_path": adapter, "load_inplace": true}, decodeBody(t, ex[0]))
	})

	var all []exchange
	for _, c := range calls {
		all = append(all, c.exchanges...)
	}
	// Controls, to show each check can fail: bodies vLLM ignores a field
	// of, refuses, or reads differently from what was sent.
	chatBody := decodeBody(t, calls[0].exchanges[0])
	controls := []struct {
		edit func(map[string]any)
		want func(t *testing.T, r vllmRead)
	}{
		{func(b map[string]any) { b["guided_json"] = map[string]any{"type": "object"} }, func(t *testing.T, r vllmRead) {
			require.Nil(t, r.Error)
			require.Equal(t, []string{"guided_json"}, r.Ignored)
		}},
		{func(b map[string]any) { b["top_k"] = "all" }, func(t *testing.T, r vllmRead) {
			require.NotNil(t, r.Error, "top_k must be an integer")
		}},
		{func(b map[string]any) { b["seed"] = "11" }, func(t *testing.T, r vllmRead) {
			require.Nil(t, r.Error)
			require.Len(t, r.Changed, 1, "a seed sent as a string is read as a number")
		}},
	}
	for _, c := range controls {
		b := maps.Clone(chatBody)
		c.edit(b)
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		all = append(all, exchange{Path: "/v1/chat/completions", Body: raw, Response: calls[0].exchanges[0].Response, status: http.StatusOK})
	}

	start := time.Now()
	reads := readWithVLLM(t, python, maxModelLen, all)
	t.Logf("vLLM read %d request bodies in %v", len(all), time.Since(start).Round(time.Millisecond))
	at := 0
	for _, c := range calls {
		got := reads[at : at+len(c.exchanges)]
		at += len(c.exchanges)
		t.Run(c.name, func(t *testing.T) {
			for i, r := range got {
				ex := c.exchanges[i]
				require.Equal(t, http.StatusOK, ex.status, "tinylm answered %s with %d: %s", ex.Path, ex.status, ex.Response)
				require.Nil(t, r.Error, "vLLM refuses the body sent to %s: %s", ex.Path, ex.Body)
				require.ElementsMatch(t, ignoredOnPurpose[ex.Path], r.Ignored, "fields of %s vLLM ignores: %s", ex.Path, ex.Body)
				require.Empty(t, r.Changed, "fields of %s vLLM reads differently from what was sent: %s", ex.Path, ex.Body)
				require.Equal(t, r.Path == "/v1/chat/completions" || r.Path == "/v1/completions", r.Sampling != nil)
			}
			c.check(t, got, c.exchanges)
		})
	}
	for i, c := range controls {
		c.want(t, reads[at+i])
	}
}

func decodeBody(t *testing.T, ex exchange) map[string]any {
	t.Helper()
	var body map[string]any
	require.NoError(t, json.Unmarshal(ex.Body, &body), "%s", ex.Body)
	return body
}

func decodeInts(t *testing.T, v any) []int {
	t.Helper()
	list, ok := v.([]any)
	require.True(t, ok, "%v is not a list", v)
	out := make([]int, len(list))
	for i, x := range list {
		f, ok := x.(float64)
		require.True(t, ok, "%v is not a number", x)
		out[i] = int(f)
	}
	return out
}

// installedPython returns the Python interpreter of the environment that
// scripts/<script> installs, failing the test when it is not installed.
func installedPython(t *testing.T, script, what string) string {
	t.Helper()
	path := filepath.Join(selfplaytest.Root(), "scripts", script)
	out, err := exec.Command("bash", path, "--print-path").CombinedOutput()
	require.NoError(t, err, "%s --print-path: %s", path, out)
	venv := string(bytes.TrimSpace(out))
	if _, err := os.Stat(filepath.Join(venv, ".installed")); err != nil {
		t.Fatalf("%s: not installed at %s (%v); run scripts/%s", what, venv, err, script)
	}
	return filepath.Join(venv, "bin", "python")
}
