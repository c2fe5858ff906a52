package tinylm

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultMaxModelLen is the context length (prompt plus generated tokens)
// the server reports and enforces when ServerOptions.MaxModelLen is 0.
const DefaultMaxModelLen = 4096

// DefaultMaxTokens is the generation cap when a request sets no max_tokens.
const DefaultMaxTokens = 256

// DefaultRewardModel is the model name /classify serves by default.
const DefaultRewardModel = "reward"

// maxN and maxLogprobs bound request sizes; maxBodyBytes bounds the body.
const (
	maxN         = 256
	maxLogprobs  = 20
	maxBodyBytes = 16 << 20
)

// ServerOptions configures NewServer.
type ServerOptions struct {
	// Models are the generative models by served name. When nil, the
	// server serves Builtin() as "tiny-0". The models are read, never
	// written, while serving.
	Models map[string]*Model
	// RewardModel is the name under which /classify serves the reward
	// function (default "reward"). It must not also be a key of Models.
	RewardModel string
	// Faults are injected into the model endpoints; the zero value injects
	// none.
	Faults Faults
	// Logger receives request logs (debug) and injected faults (debug);
	// nil discards them.
	Logger *slog.Logger
	// ModelsDir, when set, is a directory whose files NAME.bin.gz are
	// served as model NAME besides Models (a name of Models wins). The
	// server reads it once in NewServer and again on every Rescan, on POST
	// /v1/load and, with Watch, periodically; see Rescan.
	ModelsDir string
	// MaxModelLen is the context length in tokens, prompt plus generated
	// tokens, that the server enforces and reports as max_model_len on
	// /tokenize and /v1/models, as vLLM's --max-model-len; 0 means
	// DefaultMaxModelLen.
	MaxModelLen int
	// RuntimeLoRAUpdating serves POST /v1/load_lora_adapter and
	// /v1/unload_lora_adapter, which vLLM serves only when its environment
	// variable VLLM_ALLOW_RUNTIME_LORA_UPDATING is true (see
	// RuntimeLoRAUpdatingEnv); without it the routes do not exist (404).
	RuntimeLoRAUpdating bool
	// RewardLengthBonus is added to /classify's reward per response word
	// (RewardBreakdown.WithLengthBonus); 0 (default) adds nothing.
	RewardLengthBonus float64
}

// Server is the vLLM-compatible HTTP server of tinylm. It implements
// http.Handler and is safe for concurrent use.
type Server struct {
	// mu guards models, names and adapters, which change when the models
	// directory does and when adapters are loaded; the *Model values
	// themselves are never written.
	mu     sync.RWMutex
	models map[string]*Model
	names  []string
	// adapters are the names loaded through /v1/load_lora_adapter, with the
	// path each was loaded from; they are in models too.
	adapters map[string]string
	// loraMu serialises adapter loads and unloads, so a check and the
	// change it allows are one step (vLLM locks per name).
	loraMu      sync.Mutex
	fixed       map[string]bool
	base        string
	dir         *modelDir
	reward      string
	bonus       float64 // RewardLengthBonus
	maxModelLen int
	log         *slog.Logger
	faults      *faultInjector
	created     int64
	routes      map[string]route
}

type route struct {
	method string
	h      http.HandlerFunc
}

// NewServer validates opts and builds a server.
func NewServer(opts ServerOptions) (*Server, error) {
	s := &Server{models: map[string]*Model{}, adapters: map[string]string{}, fixed: map[string]bool{}, reward: opts.RewardModel,
		maxModelLen: opts.MaxModelLen, log: opts.Logger, created: time.Now().Unix()}
	if s.maxModelLen == 0 {
		s.maxModelLen = DefaultMaxModelLen
	}
	if s.maxModelLen < 2 {
		return nil, fmt.Errorf("new server: max model len %d: want at least 2 (a prompt token and a generated one)", opts.MaxModelLen)
	}
	if s.reward == "" {
		s.reward = DefaultRewardModel
	}
	if s.bonus = opts.RewardLengthBonus; math.IsNaN(s.bonus) || math.IsInf(s.bonus, 0) {
		return nil, fmt.Errorf("new server: reward length bonus must be finite, got %g", s.bonus)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	models := opts.Models
	if models == nil {
		models = map[string]*Model{"tiny-0": Builtin()}
	}
	for name, m := range models {
		if name == "" {
			return nil, fmt.Errorf("new server: empty model name")
		}
		if name == s.reward {
			return nil, fmt.Errorf("new server: model name %q is also the reward model name; pick another --reward-model", name)
		}
		if m == nil {
			return nil, fmt.Errorf("new server: model %q is nil", name)
		}
		if err := m.validate(); err != nil {
			return nil, fmt.Errorf("new server: model %q: %w", name, err)
		}
		s.models[name] = m
		s.fixed[name] = true
		s.names = append(s.names, name)
	}
	slices.Sort(s.names)
	if len(s.names) > 0 {
		s.base = s.names[0]
	}
	if opts.ModelsDir != "" {
		if err := s.openModelsDir(opts.ModelsDir); err != nil {
			return nil, fmt.Errorf("new server: %w", err)
		}
	}
	if err := opts.Faults.validate(); err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	wrap := func(h http.HandlerFunc) http.HandlerFunc { return h }
	if opts.Faults.active() {
		s.faults = newFaultInjector(opts.Faults)
		wrap = s.faults.wrap
	}
	modelsHandler := http.HandlerFunc(s.handleModels)
	if opts.Faults.IncludeModels {
		modelsHandler = wrap(modelsHandler)
	}
	s.routes = map[string]route{
		"/health":              {http.MethodGet, s.handleHealth},
		"/v1/models":           {http.MethodGet, modelsHandler},
		"/v1/chat/completions": {http.MethodPost, wrap(s.handleChat)},
		"/v1/completions":      {http.MethodPost, wrap(s.handleCompletions)},
		"/tokenize":            {http.MethodPost, wrap(s.handleTokenize)},
		"/detokenize":          {http.MethodPost, wrap(s.handleDetokenize)},
		"/classify":            {http.MethodPost, wrap(s.handleClassify)},
		"/pooling":             {http.MethodPost, wrap(s.handlePooling)},
		"/v1/load":             {http.MethodPost, s.handleLoad},
	}
	if opts.RuntimeLoRAUpdating {
		s.routes["/v1/load_lora_adapter"] = route{http.MethodPost, s.handleLoadLoRA}
		s.routes["/v1/unload_lora_adapter"] = route{http.MethodPost, s.handleUnloadLoRA}
	}
	return s, nil
}

// ModelNames returns the served generative model names, sorted.
func (s *Server) ModelNames() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.names)
}

// lookup returns the generative model served as name.
func (s *Server) lookup(name string) (*Model, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.models[name]
	return m, ok
}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	path := strings.TrimSuffix(r.URL.Path, "/")
	rt, ok := s.routes[path]
	switch {
	case !ok:
		writeError(sw, notFound("", "no route for %s %s", r.Method, r.URL.Path))
	case r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead):
		sw.Header().Set("Allow", rt.method)
		writeError(sw, &apiError{status: http.StatusMethodNotAllowed, typ: "BadRequestError", msg: fmt.Sprintf("method %s is not allowed on %s; use %s", r.Method, path, rt.method)})
	default:
		rt.h(sw, r)
	}
	s.log.DebugContext(r.Context(), "request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
		"fault", sw.Header().Get(FaultHeader), "duration", time.Since(start))
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	list := modelList{Object: "list", Data: []modelCard{}}
	s.mu.RLock()
	for _, name := range append(slices.Clone(s.names), s.reward) {
		card := modelCard{ID: name, Object: "model", Created: s.created, OwnedBy: "tinylm", Root: name, MaxModelLen: &s.maxModelLen, Permission: []any{}}
		if path, ok := s.adapters[name]; ok {
			// vLLM's card of a LoRA adapter: root is the path it was loaded
			// from, parent the base model, no max_model_len
			// (OpenAIServingModels.show_available_models).
			card.Root, card.MaxModelLen = path, nil
			if s.base != "" {
				card.Parent = &s.base
			}
		}
		list.Data = append(list.Data, card)
	}
	s.mu.RUnlock()
	writeJSON(w, http.StatusOK, list)
}

// model resolves a generative model name; an empty name means the only
// served model.
func (s *Server) model(name string) (string, *Model, error) {
	names := s.ModelNames()
	if name == "" {
		if len(names) == 1 {
			m, ok := s.lookup(names[0])
			if ok {
				return names[0], m, nil
			}
		}
		return "", nil, badRequest("model", "model is required: this server serves %s", strings.Join(names, ", "))
	}
	if name == s.reward {
		return "", nil, badRequest("model", "model `%s` is the reward model: use /classify, or one of %s", name, strings.Join(names, ", "))
	}
	m, ok := s.lookup(name)
	if !ok {
		return "", nil, notFound("model", "The model `%s` does not exist. Served models: %s", name, strings.Join(append(s.ModelNames(), s.reward), ", "))
	}
	return name, m, nil
}

func randomID(prefix string) string {
	return fmt.Sprintf("%s-%016x%016x", prefix, rand.Uint64(), rand.Uint64())
}

// samplingParams are the validated sampling fields shared by chat and
// completions.
type samplingParams struct {
	n           int
	temperature float64
	topP        float64
	maxTokens   int
	maxExplicit bool
	seed        *int64
}

func parseSampling(n *int, temperature, topP *float64, maxTokens *int, seed *int64, knobs samplingKnobs) (samplingParams, error) {
	p := samplingParams{n: 1, temperature: 1, topP: 1, maxTokens: DefaultMaxTokens, seed: seed}
	if n != nil {
		p.n = *n
	}
	if p.n < 1 || p.n > maxN {
		return p, badRequest("n", "n must be between 1 and %d, got %d", maxN, p.n)
	}
	if temperature != nil {
		p.temperature = *temperature
	}
	if topP != nil {
		p.topP = *topP
	}
	if maxTokens != nil {
		p.maxTokens = *maxTokens
		p.maxExplicit = true
	}
	if err := p.checkLikeVLLM(knobs); err != nil {
		return p, err
	}
	return p, nil
}

// fitContext caps max tokens to the context length maxLen: an explicit
// request that does not fit is an error, the default is shortened.
func (p *samplingParams) fitContext(promptLen, maxLen int) error {
	if promptLen > maxLen {
		return badRequest("messages", "This model's maximum context length is %d tokens. However, your request has %d input tokens. Please reduce the length of the input messages.", maxLen, promptLen)
	}
	if promptLen+p.maxTokens > maxLen {
		if p.maxExplicit {
			return badRequest("max_tokens", "This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the input, %d for the completion). Please reduce the length of the input or max_tokens.", maxLen, promptLen+p.maxTokens, promptLen, p.maxTokens)
		}
		p.maxTokens = maxLen - promptLen
	}
	return nil
}

// rng returns the sampling source of choice i: seed+i when the request has
// a seed (so n=4 with seed s samples like four n=1 requests with seeds s,
// s+1, s+2, s+3), a random one otherwise.
func (p *samplingParams) rng(i int) *rand.Rand {
	if p.seed == nil {
		return NewRand(rand.Uint64())
	}
	return NewRand(uint64(*p.seed + int64(i)))
}

func checkUnsupported(stream bool, stop []byte) error {
	if stream {
		return badRequest("stream", "stream=true is not supported by tinylm; send stream=false")
	}
	st := strings.TrimSpace(string(stop))
	if st != "" && st != "null" && st != "[]" && st != `""` {
		return badRequest("stop", "stop sequences are not supported by tinylm; generation stops at <|end|> or max_tokens")
	}
	return nil
}

func checkLogprobCount(param string, v *int) (int, error) {
	if v == nil {
		return 0, nil
	}
	if *v < 0 || *v > maxLogprobs {
		return 0, badRequest(param, "%s must be between 0 and %d, got %d", param, maxLogprobs, *v)
	}
	return *v, nil
}

// promptLogprobsOf returns vLLM's prompt_logprobs for seq: null for the
// first position, then per position a dict of the actual token and the top
// k tokens by id.
func promptLogprobsOf(m *Model, seq []int, k int) ([]map[string]promptLogprob, error) {
	lps, tops, ranks, err := m.SequenceLogProbs(seq, k)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]promptLogprob, len(seq))
	for t := 1; t < len(seq); t++ {
		d := map[string]promptLogprob{}
		d[fmt.Sprint(seq[t])] = promptLogprob{Logprob: clampLogprob(lps[t]), Rank: ranks[t], DecodedToken: m.Tok.Token(seq[t])}
		if k > 0 {
			for r, tl := range tops[t] {
				key := fmt.Sprint(tl.ID)
				if _, ok := d[key]; !ok {
					d[key] = promptLogprob{Logprob: tl.LogProb, Rank: r + 1, DecodedToken: m.Tok.Token(tl.ID)}
				}
			}
		}
		out[t] = d
	}
	return out, nil
}

// clampLogprob sends -Inf as -9999.0, as vLLM does for a token of
// probability 0 (here: BOS predicted after the first position).
func clampLogprob(x float64) float64 {
	return max(x, -9999.0)
}

func tokenBytes(s string) []int {
	b := make([]int, len(s))
	for i := range len(s) {
		b[i] = int(s[i])
	}
	return b
}

// textOffsets returns, for each token, its byte offset in text: tokens are
// looked up in order in the lowercased text; tokens not found there (role
// tokens left out of generated text) get the current offset.
func textOffsets(text string, tokens []string) []int {
	low := strings.ToLower(text)
	out := make([]int, len(tokens))
	pos := 0
	for i, tok := range tokens {
		j := strings.Index(low[pos:], tok)
		if j < 0 {
			out[i] = pos
			continue
		}
		out[i] = pos + j
		pos += j + len(tok)
	}
	return out
}
