// Package llm holds the clients for the three model roles of a self-play
// iteration: the policy sampler (Policy), the reward model (Reward) and the
// optional reference scorer (Reference). They speak the OpenAI API with
// vLLM's extensions, so they work against vLLM, SGLang-style servers and the
// project's own tinylm.
//
// # Policy
//
// Policy.Sample asks chat completions for n samples with logprobs and
// returns per sample the text, token count, summed log-prob log π(y|x),
// finish reason and, when the server gives them (vLLM return_token_ids,
// llama.cpp's logprobs.content[].id), the token ids and the prompt's. A
// server that returns fewer choices than n is remembered per model and
// asked n times with n = 1 and seeds seed+i instead. go-openai's request
// type builds the body, with extra JSON fields merged in: temperature,
// top_p and vLLM's top_k, min_p and penalties as exact float64 (go-openai's
// float32 with omitempty drops temperature 0), return_token_ids (unless
// SampleParams.WithoutTokenIDs: the worker asks for ids only when a
// reference teacher-forces the samples), and any ChatRequestExtras. The reply is read in one pass (decodeChatReply) that
// keeps only what is used. A log-prob of -9999 (vLLM's stand-in for -inf)
// or a reasoning part split off the content fails the sample.
//
// # Reward
//
// Reward.Score supports vLLM /classify (use_activation false: the raw
// reward-head output), /pooling, OpenRLHF's /get_reward and an LLM judge
// whose grading prompt is written here. With WithChatTemplate the n
// responses of a prompt go in one request as rendered texts (the only way
// vLLM's /classify and /pooling batch); without it the chat form (messages)
// is sent per response and the server applies the model's own template.
//
// # Reference
//
// Reference computes teacher-forced log p(y|x) for the DPO implicit margin
// and for exporting ref_chosen_logps: /tokenize renders and tokenizes the
// prompt (add_generation_prompt) and the response (add_special_tokens
// false), then /v1/completions with the token ids as prompt, max_tokens 1
// and prompt_logprobs 0 scores them; the sum covers exactly the response
// positions and each scored token id is checked. LogProb counts the
// template's end-of-turn token as part of y, matching a vLLM sample that
// finished with "stop" (whose log-prob list ends with that token);
// LogProbTokens scores the sampler's own token ids, which is exact in every
// case. Probe checks the capability up front with a 3-token request.
//
// # Errors, retries and limits
//
// Every client bounds its requests in flight (Endpoint.MaxConcurrency),
// bounds each attempt (Endpoint.Timeout) and retries transient failures —
// 408, 425, 429, 5xx except 501/505, timeouts, connection errors and bodies
// cut off in transfer — with exponential backoff and equal jitter, waiting
// at least the server's Retry-After (a hint above WithMaxRetryAfter ends the
// call so the caller can requeue). Failures are *Error values carrying
// endpoint, model, route, status and reason; IsPermanent and IsTransient
// classify them. Other 4xx are permanent at once, and so are well-formed
// responses that lack what the caller needs (no log-probs, no choices,
// mismatched token ids). A 2xx body that is not valid JSON (truncated, an
// HTML page) is retried like a transient failure, because a proxy hiccup
// or an interrupted transfer is the usual cause, and becomes permanent
// with a "malformed response body" reason once retries are exhausted. A call
// ended by the caller's context returns an error wrapping the context's
// error that is neither permanent nor transient.
//
// # Replicas
//
// An endpoint may name several servers (Endpoint.BaseURL and BaseURLs),
// e.g. vLLM instances serving the same models. Each attempt goes to the
// healthy replica with the fewest attempts in flight (ties in turn), each
// replica taking at most MaxConcurrency at once. An attempt that got no
// HTTP response or a 5xx ejects its replica, so the retry goes elsewhere;
// an ejected replica is probed at GET /health every WithProbeInterval and
// re-admitted when it answers below 500 or when a request through it
// succeeds. With every replica ejected, all are used as if none were.
// The decision reads the attempt's status and whether a response arrived,
// never error text.
//
// API keys are taken from Endpoint.APIKey (read from the environment by the
// caller), sent as bearer tokens and never logged or put into errors.
// Retries are logged at debug level and calls that fail after retries at
// warn level, with the endpoint name. Hooks feed metrics.
package llm
