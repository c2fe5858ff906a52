package tinylm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Faults configures fault injection for tests of clients. Faults apply to
// the POST endpoints (/v1/chat/completions, /v1/completions, /tokenize,
// /detokenize, /classify) and, with IncludeModels, to GET /v1/models; never
// to /health. Each request first waits Latency plus a uniform random extra
// in [0, LatencyJitter), then draws one fault: with probability ErrorRate a
// 500, RateLimitRate a 429 with Retry-After, HangRate a hang, MalformedRate a
// malformed 200 body; otherwise it is served normally. Draws come from one
// PCG seeded by Seed, so a sequence of requests made one at a time gets the
// same faults on every run. The zero value injects nothing.
type Faults struct {
	// Latency is added to every request (default 0).
	Latency time.Duration
	// LatencyJitter is the upper bound of a uniform random extra latency.
	LatencyJitter time.Duration
	// ResponseTime, when set, makes every normally served request answer
	// no sooner than this long after it arrived, its own computation
	// included: a server whose requests take a fixed time, as a GPU
	// server's roughly do. Unlike Latency it is not added on top of the
	// model's work, so benchmarks of a client layer measure the client.
	ResponseTime time.Duration
	// ErrorRate is the fraction of requests answered with a 500 error object.
	ErrorRate float64
	// RateLimitRate is the fraction answered with a 429 error object and a
	// Retry-After header.
	RateLimitRate float64
	// HangRate is the fraction of requests that hang: the handler blocks
	// until the request's context ends (the client gives up or the server
	// closes) or HangMax has passed, then answers 504.
	HangRate float64
	// MalformedRate is the fraction answered with status 200 and a broken
	// body: either the real JSON response cut off in the middle, or an HTML
	// error page (Content-Type text/html); the two are equally likely.
	MalformedRate float64
	// RetryAfter is the Retry-After of 429s, sent in whole seconds rounded
	// up; the default 0 sends "Retry-After: 0".
	RetryAfter time.Duration
	// HangMax bounds a hang; 0 means until the request's context ends.
	HangMax time.Duration
	// Seed seeds the fault draws.
	Seed int64
	// IncludeModels also applies faults to GET /v1/models.
	IncludeModels bool
	// BadReply, when set, answers every request that draws no other fault
	// with a well-formed HTTP 200 whose body is wrong in the named way (one
	// of BadReplyKinds); "" (default) serves correct bodies. Kinds that
	// concern choices and log-probs apply to /v1/chat/completions and
	// /v1/completions, reward kinds to /classify, html and truncated to
	// every faulted route; other routes are served normally.
	BadReply string
	// BadReplyMatch limits BadReply to requests whose raw JSON body
	// contains this string (for example a marker placed in a prompt), so
	// one server can fail some tasks and serve others; "" matches every
	// request.
	BadReplyMatch string
}

// Fault kinds, reported in the X-Tinylm-Fault response header so tests and
// logs can tell an injected fault from a real one.
const (
	FaultError         = "error"
	FaultRateLimit     = "rate_limit"
	FaultHang          = "hang"
	FaultMalformedJSON = "malformed_json"
	FaultMalformedHTML = "malformed_html"
)

// FaultHeader is the response header naming an injected fault.
const FaultHeader = "X-Tinylm-Fault"

// Bad-reply kinds of Faults.BadReply. Each is a 200 response that a client
// must refuse with a reason naming the problem. The X-Tinylm-Fault header
// says "bad_reply:" and the kind.
const (
	// BadReplyNoChoices empties the choice list.
	BadReplyNoChoices = "no_choices"
	// BadReplyFewerChoices drops the last choice (n choices asked, n−1
	// returned; a single-choice request gets none).
	BadReplyFewerChoices = "fewer_choices"
	// BadReplyNoLogprobs removes the log-probs of every choice and the
	// prompt log-probs.
	BadReplyNoLogprobs = "no_logprobs"
	// BadReplyNaNLogprobs writes every log-prob as the bare token NaN, as
	// Python's json module does (not valid JSON).
	BadReplyNaNLogprobs = "nan_logprobs"
	// BadReplyInfLogprobs writes every log-prob as -9999.0, what vLLM sends
	// for a log-prob of -inf: it clamps them (max(logprob, -9999.0) in
	// vllm/entrypoints/openai/chat_completion/serving.py, and
	// clamp_prompt_logprobs in vllm/entrypoints/generate/base/serving.py),
	// so its replies stay valid JSON.
	BadReplyInfLogprobs = "inf_logprobs"
	// BadReplyReasoning answers chat as vLLM does with a --reasoning-parser:
	// the first word of each choice's content moves into message.reasoning
	// while the log-probs and token_ids still cover every generated token
	// (vllm/entrypoints/openai/chat_completion/serving.py builds them from
	// all output tokens; ChatMessage.reasoning in protocol.py).
	BadReplyReasoning = "reasoning"
	// BadReplyStringReward writes each /classify score as a JSON string.
	BadReplyStringReward = "string_reward"
	// BadReplyMissingReward drops the last /classify result.
	BadReplyMissingReward = "missing_reward"
	// BadReplyExtraReward appends one /classify result more than inputs.
	BadReplyExtraReward = "extra_reward"
	// BadReplyHTML answers with an HTML error page (Content-Type
	// text/html) and status 200.
	BadReplyHTML = "html"
	// BadReplyTruncated cuts the real JSON body in the middle.
	BadReplyTruncated = "truncated"
)

// BadReplyKinds lists the accepted values of Faults.BadReply.
var BadReplyKinds = []string{
	BadReplyNoChoices, BadReplyFewerChoices, BadReplyNoLogprobs, BadReplyNaNLogprobs, BadReplyInfLogprobs,
	BadReplyReasoning, BadReplyStringReward, BadReplyMissingReward, BadReplyExtraReward, BadReplyHTML, BadReplyTruncated,
}

func (f Faults) validate() error {
	rates := []struct {
		name string
		v    float64
	}{{"error rate", f.ErrorRate}, {"rate-limit rate", f.RateLimitRate}, {"hang rate", f.HangRate}, {"malformed rate", f.MalformedRate}}
	var sum float64
	for _, r := range rates {
		if r.v < 0 || r.v > 1 || math.IsNaN(r.v) {
			return fmt.Errorf("fault %s %v must be in [0, 1]", r.name, r.v)
		}
		sum += r.v
	}
	if sum > 1+1e-12 {
		return fmt.Errorf("fault rates add up to %v; their sum must be at most 1", sum)
	}
	if f.BadReply != "" && !slices.Contains(BadReplyKinds, f.BadReply) {
		return fmt.Errorf("bad reply %q: expected one of %s", f.BadReply, strings.Join(BadReplyKinds, ", "))
	}
	if f.BadReplyMatch != "" && f.BadReply == "" {
		return fmt.Errorf("bad reply match %q given without a bad reply kind", f.BadReplyMatch)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"latency", f.Latency}, {"latency jitter", f.LatencyJitter}, {"response time", f.ResponseTime}, {"retry-after", f.RetryAfter}, {"hang max", f.HangMax}} {
		if d.v < 0 {
			return fmt.Errorf("fault %s %v must not be negative", d.name, d.v)
		}
	}
	return nil
}

func (f Faults) active() bool {
	return f.Latency > 0 || f.LatencyJitter > 0 || f.ResponseTime > 0 || f.ErrorRate > 0 || f.RateLimitRate > 0 || f.HangRate > 0 || f.MalformedRate > 0 ||
		f.BadReply != ""
}

// faultInjector draws faults; it is safe for concurrent use.
type faultInjector struct {
	f   Faults
	mu  sync.Mutex
	rng *rand.Rand
}

func newFaultInjector(f Faults) *faultInjector {
	return &faultInjector{f: f, rng: rand.New(rand.NewPCG(uint64(f.Seed), 0xfa_017))}
}

// draw returns the latency and fault kind ("" for none) of one request.
func (fi *faultInjector) draw() (time.Duration, string) {
	fi.mu.Lock()
	jitter, u, half := fi.rng.Float64(), fi.rng.Float64(), fi.rng.IntN(2)
	fi.mu.Unlock()
	lat := fi.f.Latency + time.Duration(jitter*float64(fi.f.LatencyJitter))
	f := fi.f
	switch {
	case u < f.ErrorRate:
		return lat, FaultError
	case u < f.ErrorRate+f.RateLimitRate:
		return lat, FaultRateLimit
	case u < f.ErrorRate+f.RateLimitRate+f.HangRate:
		return lat, FaultHang
	case u < f.ErrorRate+f.RateLimitRate+f.HangRate+f.MalformedRate:
		if half == 0 {
			return lat, FaultMalformedJSON
		}
		return lat, FaultMalformedHTML
	}
	return lat, ""
}

// wrap applies the faults to next.
func (fi *faultInjector) wrap(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		arrived := time.Now()
		lat, kind := fi.draw()
		if kind == FaultHang || lat > 0 {
			// net/http notices a client hanging up only once the request
			// body has been read, so read it before waiting.
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
			if err != nil {
				writeError(w, badRequest("", "read request body: %v", err))
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		if lat > 0 && !sleepCtx(r.Context(), lat) {
			return // the client gave up; nobody reads the answer
		}
		if kind != "" {
			w.Header().Set(FaultHeader, kind)
		}
		switch kind {
		case "":
			if fi.f.BadReply != "" && badReplyRoute(fi.f.BadReply, r.URL.Path) {
				fi.serveBadReply(w, r, next)
				return
			}
			if fi.f.ResponseTime > 0 {
				rec := &recorder{header: http.Header{}, status: http.StatusOK}
				next(rec, r)
				if !sleepCtx(r.Context(), time.Until(arrived.Add(fi.f.ResponseTime))) {
					return
				}
				for k, v := range rec.header {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.status)
				w.Write(rec.body.Bytes())
				return
			}
			next(w, r)
		case FaultError:
			writeError(w, &apiError{status: http.StatusInternalServerError, typ: "InternalServerError", msg: "injected fault: internal server error"})
		case FaultRateLimit:
			secs := int64(math.Ceil(fi.f.RetryAfter.Seconds()))
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			writeError(w, &apiError{status: http.StatusTooManyRequests, typ: "RateLimitError", msg: "injected fault: too many requests, retry later"})
		case FaultHang:
			ctx := r.Context()
			if fi.f.HangMax > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, fi.f.HangMax)
				defer cancel()
			}
			<-ctx.Done()
			if r.Context().Err() != nil {
				return
			}
			writeError(w, &apiError{status: http.StatusGatewayTimeout, typ: "TimeoutError", msg: "injected fault: request hung and timed out"})
		case FaultMalformedJSON:
			rec := &recorder{header: http.Header{}}
			next(rec, r)
			body := rec.body.Bytes()
			cut := body[:len(body)/2]
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(cut)))
			w.WriteHeader(http.StatusOK)
			w.Write(cut)
		case FaultMalformedHTML:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte(malformedHTML))
		}
	}
}

const malformedHTML = `<!DOCTYPE html>
<html><head><title>502 Bad Gateway</title></head>
<body><h1>Bad Gateway</h1><p>The upstream server returned an invalid response (injected fault).</p></body></html>
`

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// recorder captures a handler's response so a malformed copy can be sent.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(status int)      { r.status = status }

// badReplyRoute reports whether a bad-reply kind concerns a route.
func badReplyRoute(kind, path string) bool {
	path = strings.TrimSuffix(path, "/")
	switch kind {
	case BadReplyHTML, BadReplyTruncated:
		return true
	case BadReplyStringReward, BadReplyMissingReward, BadReplyExtraReward:
		return path == "/classify"
	case BadReplyReasoning:
		return path == "/v1/chat/completions"
	}
	return path == "/v1/chat/completions" || path == "/v1/completions"
}

// serveBadReply serves r through next and, when the request body matches
// Faults.BadReplyMatch, sends the response spoiled in the configured way.
// Error responses of next pass through unchanged.
func (fi *faultInjector) serveBadReply(w http.ResponseWriter, r *http.Request, next http.HandlerFunc) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		writeError(w, badRequest("", "read request body: %v", err))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if fi.f.BadReplyMatch != "" && !bytes.Contains(body, []byte(fi.f.BadReplyMatch)) {
		next(w, r)
		return
	}
	kind := fi.f.BadReply
	if kind == BadReplyHTML {
		w.Header().Set(FaultHeader, "bad_reply:"+kind)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(malformedHTML))
		return
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	next(rec, r)
	out := rec.body.Bytes()
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	if rec.status == http.StatusOK {
		if spoiled, err := spoil(kind, out); err == nil {
			out = spoiled
			w.Header().Set(FaultHeader, "bad_reply:"+kind)
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(rec.status)
	w.Write(out)
}

// badNumber stands in for a non-finite number while the spoiled body is
// encoded; encoding/json cannot write NaN, so the quoted placeholder is
// replaced afterwards.
const badNumber = "tinylm:bad-number"

// spoil rewrites a correct JSON response body into the bad reply kind.
func spoil(kind string, body []byte) ([]byte, error) {
	if kind == BadReplyTruncated {
		return body[:len(body)/2], nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	choices, _ := obj["choices"].([]any)
	data, _ := obj["data"].([]any)
	switch kind {
	case BadReplyNoChoices:
		obj["choices"] = []any{}
	case BadReplyFewerChoices:
		if len(choices) > 0 {
			obj["choices"] = choices[:len(choices)-1]
		}
	case BadReplyNoLogprobs:
		delete(obj, "prompt_logprobs")
		for _, c := range choices {
			if cm, ok := c.(map[string]any); ok {
				cm["logprobs"] = nil
				delete(cm, "prompt_logprobs")
			}
		}
	case BadReplyNaNLogprobs, BadReplyInfLogprobs:
		markLogprobs(obj)
	case BadReplyReasoning:
		for _, c := range choices {
			cm, _ := c.(map[string]any)
			msg, _ := cm["message"].(map[string]any)
			if content, ok := msg["content"].(string); ok {
				first, rest, _ := strings.Cut(content, " ")
				msg["reasoning"], msg["content"] = first, rest
			}
		}
	case BadReplyStringReward:
		for _, d := range data {
			if dm, ok := d.(map[string]any); ok {
				if probs, ok := dm["probs"].([]any); ok {
					for i, p := range probs {
						probs[i] = fmt.Sprint(p)
					}
				}
			}
		}
	case BadReplyMissingReward:
		if len(data) > 0 {
			obj["data"] = data[:len(data)-1]
		}
	case BadReplyExtraReward:
		if len(data) > 0 {
			if last, ok := data[len(data)-1].(map[string]any); ok {
				extra := make(map[string]any, len(last))
				for k, v := range last {
					extra[k] = v
				}
				extra["index"] = len(data)
				obj["data"] = append(data, extra)
			}
		}
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	switch kind {
	case BadReplyNaNLogprobs:
		out = bytes.ReplaceAll(out, []byte(`"`+badNumber+`"`), []byte("NaN"))
	case BadReplyInfLogprobs:
		out = bytes.ReplaceAll(out, []byte(`"`+badNumber+`"`), []byte("-9999.0"))
	}
	return out, nil
}

// markLogprobs replaces every log-prob in a decoded response (the values
// of "logprob" keys and the entries of "token_logprobs" lists) with the
// badNumber placeholder.
func markLogprobs(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			switch {
			case k == "logprob":
				x[k] = badNumber
			case k == "token_logprobs":
				if list, ok := e.([]any); ok {
					for i, lp := range list {
						if lp != nil {
							list[i] = badNumber
						}
					}
				}
			default:
				markLogprobs(e)
			}
		}
	case []any:
		for _, e := range x {
			markLogprobs(e)
		}
	}
}
