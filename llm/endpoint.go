package llm

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/selfplay/selfplay/config"
)

// Defaults applied by the constructors to zero Endpoint fields.
const (
	// DefaultMaxConcurrency is the number of requests one client keeps in
	// flight to its endpoint when Endpoint.MaxConcurrency is 0.
	DefaultMaxConcurrency = 64
	// DefaultTimeout bounds one HTTP attempt when Endpoint.Timeout is 0.
	DefaultTimeout = 120 * time.Second
	// DefaultMaxRetries is the number of retries after the first attempt when
	// Endpoint.MaxRetries is 0.
	DefaultMaxRetries = 5
)

// Reward kinds accepted in Endpoint.Kind by NewReward.
const (
	// KindClassify scores with vLLM's /classify (use_activation false, so the
	// raw reward-head output is returned).
	KindClassify = "classify"
	// KindPooling scores with vLLM's /pooling; the score is the last value of
	// the pooled output.
	KindPooling = "pooling"
	// KindGetReward scores with an OpenRLHF-style /get_reward server.
	KindGetReward = "get_reward"
	// KindJudge asks an LLM over chat completions for a 1–10 score.
	KindJudge = "judge"
)

// Endpoint describes one OpenAI-compatible server. The zero values of
// MaxConcurrency, Timeout and MaxRetries select the defaults above.
type Endpoint struct {
	// Name is the role of the endpoint ("policy", "reward", "reference"); it
	// appears in errors, logs and hooks.
	Name string
	// BaseURL is the server address, with or without the /v1 suffix:
	// http://127.0.0.1:8000/v1 and http://127.0.0.1:8000 are the same
	// endpoint. vLLM's extra routes (/tokenize, /classify, /pooling) are
	// resolved against the address without /v1. For KindGetReward the full
	// URL of the route (…/get_reward) is accepted too.
	BaseURL string
	// BaseURLs lists further replicas of the same server (vLLM instances
	// serving the same models), in the same form as BaseURL; BaseURL, when
	// set, is the first replica. Each attempt goes to the healthy replica
	// with the fewest requests in flight; one that refuses connections,
	// times out or answers 5xx is ejected and probed at GET /health until
	// it answers below 500 (see WithProbeInterval).
	BaseURLs []string
	// APIKey is sent as a bearer token when non-empty. The caller reads it
	// from the environment; it is never logged or put in an error.
	APIKey string
	// MaxConcurrency bounds the HTTP requests this client has in flight at
	// once to each replica (default 64). Requests beyond it wait for a
	// slot; a retry's backoff does not hold a slot.
	MaxConcurrency int
	// Timeout bounds one HTTP attempt, from sending the request to reading
	// the whole body (default 120s). Time spent waiting for a slot or in
	// backoff is not counted.
	Timeout time.Duration
	// MaxRetries is the number of retries after the first attempt for
	// transient failures (default 5; a negative value disables retries).
	MaxRetries int
	// Kind selects the reward protocol, reward endpoints only: classify,
	// pooling, get_reward or judge.
	Kind string
	// Model is the model name used when a call does not name one (reward
	// and reference endpoints, whose model is fixed by the endpoint).
	Model string
	// MaxN is the most choices one chat request may ask for (policy and
	// evolver endpoints); Policy.Sample sends one request per sample when
	// SampleParams.N is above it. 0 means no limit; negative is an error.
	MaxN int
}

// withDefaults returns a copy of ep with defaults applied, or an error that
// names the bad field.
func (ep Endpoint) withDefaults() (Endpoint, error) {
	if ep.Name == "" {
		return ep, fmt.Errorf("llm: endpoint name is empty (use policy, reward or reference)")
	}
	switch {
	case ep.MaxConcurrency == 0:
		ep.MaxConcurrency = DefaultMaxConcurrency
	case ep.MaxConcurrency < 0:
		return ep, fmt.Errorf("llm: %s endpoint: max_concurrency %d must be positive", ep.Name, ep.MaxConcurrency)
	}
	switch {
	case ep.Timeout == 0:
		ep.Timeout = DefaultTimeout
	case ep.Timeout < 0:
		return ep, fmt.Errorf("llm: %s endpoint: timeout %s must be positive", ep.Name, ep.Timeout)
	}
	if ep.MaxN < 0 {
		return ep, fmt.Errorf("llm: %s endpoint: max_n %d must be 0 (no limit) or positive", ep.Name, ep.MaxN)
	}
	switch {
	case ep.MaxRetries == 0:
		ep.MaxRetries = DefaultMaxRetries
	case ep.MaxRetries < 0:
		ep.MaxRetries = 0
	}
	return ep, nil
}

// baseURLs splits an endpoint address into the server root (no /v1, no
// trailing slash) and the OpenAI API base (root + /v1).
func baseURLs(name, raw string) (root, v1 string, err error) {
	shown := config.RedactURL(strings.TrimSpace(raw)) // errors never echo a secret
	if strings.TrimSpace(raw) == "" {
		return "", "", fmt.Errorf("llm: %s endpoint: base URL is empty (e.g. http://127.0.0.1:8000/v1)", name)
	}
	if !strings.Contains(raw, "://") {
		return "", "", fmt.Errorf("llm: %s endpoint: base URL %q must start with http:// or https://", name, shown)
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", "", fmt.Errorf("llm: %s endpoint: base URL %q does not parse as a URL", name, shown)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", fmt.Errorf("llm: %s endpoint: base URL %q must start with http:// or https://", name, shown)
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("llm: %s endpoint: base URL %q has no host", name, shown)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("llm: %s endpoint: base URL %q must not carry a query or fragment", name, shown)
	}
	if u.User != nil {
		return "", "", fmt.Errorf("llm: %s endpoint: base URL must not carry credentials; pass the key as the endpoint's API key", name)
	}
	path := strings.TrimRight(u.Path, "/")
	path = strings.TrimSuffix(path, "/v1")
	u.Path = path
	u.RawPath = ""
	root = strings.TrimRight(u.String(), "/")
	return root, root + "/v1", nil
}

// Option configures a client built by NewPolicy, NewReward or NewReference.
type Option func(*options)

// Hooks receive callbacks for metrics. Every field is optional. Callbacks run
// synchronously on the goroutine that made the request, possibly from many
// goroutines at once, so they must be safe for concurrent use and fast.
type Hooks struct {
	// OnRequest is called after every HTTP attempt, successful or not.
	OnRequest func(RequestInfo)
	// OnRetry is called before the client sleeps to retry a failed attempt.
	OnRetry func(RetryInfo)
}

// RequestInfo describes one finished HTTP attempt.
type RequestInfo struct {
	// Endpoint is Endpoint.Name; Model the model of the request.
	Endpoint, Model string
	// Replica is the server root the attempt went to (one of the
	// endpoint's BaseURL and BaseURLs, without /v1).
	Replica string
	// Path is the request route, e.g. /v1/chat/completions.
	Path string
	// Status is the HTTP status, 0 when no response arrived.
	Status int
	// Duration covers sending the request and reading the whole body.
	Duration time.Duration
	// Attempt counts from 1.
	Attempt int
	// Err is the attempt's failure (nil on success).
	Err error
}

// RetryInfo describes a retry about to happen.
type RetryInfo struct {
	// Endpoint is Endpoint.Name; Model the model of the request.
	Endpoint, Model string
	// Path is the request route.
	Path string
	// Attempt is the attempt that failed, counting from 1.
	Attempt int
	// Delay is the backoff before the next attempt (Retry-After included).
	Delay time.Duration
	// Err is the transient failure being retried.
	Err error
}

// ChatRequestExtras are JSON fields merged into every chat-completions
// request body, for server extensions go-openai cannot express (vLLM's
// top_k, repetition_penalty, chat_template_kwargs, structured_outputs …).
// A nil value removes a field the client would otherwise send, e.g.
// {"return_token_ids": nil} for a server that rejects unknown fields.
type ChatRequestExtras map[string]any

type options struct {
	logger        *slog.Logger
	httpClient    *http.Client
	hooks         Hooks
	extras        ChatRequestExtras
	template      *ChatTemplate
	backoffBase   time.Duration
	backoffMax    time.Duration
	maxRetryWait  time.Duration
	probeInterval time.Duration
}

func defaultOptions() options {
	return options{
		logger:        slog.New(slog.DiscardHandler),
		backoffBase:   250 * time.Millisecond,
		backoffMax:    20 * time.Second,
		maxRetryWait:  time.Minute,
		probeInterval: DefaultProbeInterval,
	}
}

// WithProbeInterval sets how often an ejected replica is probed at GET
// /health (default DefaultProbeInterval, 2s). It matters only for an
// endpoint with several replicas.
func WithProbeInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.probeInterval = d
		}
	}
}

// WithLogger sets the logger for retries and fallbacks (default: discard).
// Logs carry the endpoint name, never the API key.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithHTTPClient replaces the HTTP client. By default each client builds its
// own with a transport keeping MaxConcurrency idle connections per host; a
// replacement should do the same or throughput drops under load. The
// client's Timeout should be 0: Endpoint.Timeout bounds each attempt.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) {
		if c != nil {
			o.httpClient = c
		}
	}
}

// WithHooks installs metrics callbacks (see Hooks).
func WithHooks(h Hooks) Option {
	return func(o *options) { o.hooks = h }
}

// WithChatRequestExtras merges fields into chat-completions requests of the
// policy sampler and the judge (see ChatRequestExtras). Later options win.
func WithChatRequestExtras(extras ChatRequestExtras) Option {
	return func(o *options) {
		if o.extras == nil {
			o.extras = ChatRequestExtras{}
		}
		for k, v := range extras {
			o.extras[k] = v
		}
	}
}

// WithChatTemplate makes the reward client render conversations as text with
// t, so the n responses of a prompt go to the server in one request
// (classify, pooling) or at all (get_reward, which only takes text). It must
// match the reward model's own chat template. Without it, classify and
// pooling send the chat form (messages), which the server renders with the
// model's template, one request per response.
func WithChatTemplate(t ChatTemplate) Option {
	return func(o *options) { o.template = &t }
}

// WithBackoff sets the first retry delay and the cap of the exponential
// backoff (defaults 250ms and 20s). The delay doubles per retry and is
// jittered to between half and all of its value.
func WithBackoff(base, maxDelay time.Duration) Option {
	return func(o *options) {
		if base > 0 {
			o.backoffBase = base
		}
		if maxDelay > 0 {
			o.backoffMax = maxDelay
		}
	}
}

// WithMaxRetryAfter caps how long the client itself waits for a server's
// Retry-After (default 1m). A longer hint ends the call with a transient
// *Error carrying RetryAfter, so the caller can requeue the work instead of
// holding it.
func WithMaxRetryAfter(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.maxRetryWait = d
		}
	}
}
