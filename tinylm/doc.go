// Package tinylm is a small, real language model with exact probabilities
// and a vLLM-compatible HTTP server, so the whole self-play loop runs on a
// laptop CPU and the tests of LLM clients talk to a real endpoint.
//
// # Tokenizer and chat template
//
// Text is lowercased and split into word runs of [a-z0-9'], single
// punctuation characters, and the special tokens <unk>, <|system|>,
// <|user|>, <|assistant|> and <|end|> (ids 0–4 in every vocabulary; <|end|>
// ends a turn and stops sampling). Unknown words map to <unk>. The BOS
// token <|bos|> has id V, one past the last word (Tokenizer.BOS), so no
// word's id depends on it. Decoding joins tokens with spaces and drops the
// space before punctuation. The served chat template writes <|bos|>, then
// each message as "<|role|> content <|end|>", joined by spaces, and a final
// "<|assistant|>" when a generation prompt is wanted (RenderChatTemplate;
// RenderChat is the same without the BOS):
//
//	<|bos|> <|system|> be brief . <|end|> <|user|> how do i cook rice ? <|end|> <|assistant|>
//
// The server applies add_special_tokens with vLLM's defaults per request
// type, so rendered text sent where vLLM adds special tokens gets a second
// BOS, as it would on vLLM. BOS has no parameters and changes no number the
// model computes for other tokens (see Model).
//
// # Model
//
// A log-linear next-token model with embedding dimension d (16 for the
// built-in model) over a vocabulary of V words (885 for the built-in model):
//
//	z[v] = B[v] + U[v]·(E[prev] + mean_{w ∈ prompt} F[w]),  p = softmax(z)
//
// For a response the prompt is the whole rendered prompt up to and
// including <|assistant|>; for an arbitrary sequence (the completions
// endpoint) see ConditioningPrefix. Log-probabilities are exact, so the
// teacher-forced log-probability of a sampled response equals the sum of
// the log-probabilities reported when it was sampled. The parameters are
// exported flat slices and AccumulateLogProbGrad gives exact gradients, for
// trainers in this package.
//
// The built-in model (Builtin, or "builtin" as a model path) is embedded in
// the binary. It was trained by maximum likelihood on a generated corpus of
// everyday prompt → answer dialogues (package tinylm/corpus); rebuild it
// with
//
//	go run ./tinylm/cmd/buildweights -out tinylm/weights/tiny-0.bin.gz
//
// The weights file format is described at Decode (gzip of a small header,
// the vocabulary and float64 parameters).
//
// # Preference training
//
// TrainPreference trains a model on preference pairs (ReadPreferences reads
// an export's train.jsonl) with exact gradients of one of three losses,
// for chosen y_w, rejected y_l, lp(y) = log π_θ(y|x) and ref(y) the same
// under a frozen reference:
//
//	dpo          −log σ(β·[(lp(y_w) − ref(y_w)) − (lp(y_l) − ref(y_l))])
//	simpo        −log σ(β·[lp(y_w)/|y_w| − lp(y_l)/|y_l|] − γ)
//	epsilon-dpo  dpo with β_i = β/(1 + ε·s_i) per pair, s_i from
//	             metric.EpsilonDPOStep over the full-vocabulary logits
//	             (ResponseLogits) of policy and reference; the base β moves
//	             to metric.NextBeta of each batch's β_i
//
// The gradient flows through AccumulateLogProbGrad; the tests check it
// against finite differences in every parameter. Training is deterministic
// given the seed. Evaluate samples a model on a prompt set and scores the
// replies with the reward function (`selfplay lm eval`).
//
// # Models directory
//
// With ServerOptions.ModelsDir the server also serves every DIR/NAME.bin.gz
// as NAME, and Rescan (run periodically by Watch, and by POST /v1/load)
// picks up new, replaced and removed files; a trainer that saves there
// (Save is atomic) publishes the next policy.
//
// # Sampling
//
// Generate draws from softmax(z/T) restricted to the top-p nucleus,
// greedily at T = 0, until <|end|> (included in the output ids, finish
// reason "stop") or max tokens ("length"). Reported log-probs are always
// those of the raw distribution (T = 1, before top-p), as vLLM reports by
// default. With a seed, choice i of a request samples from a PCG seeded with
// seed+i, so the same seed gives the same text, and n=4 with seed s gives
// what four n=1 requests with seeds s…s+3 give.
//
// # Reward
//
// The reward model (served by /classify as "reward") is the transparent
// function Reward of (prompt, response); see RewardBreakdown for the
// formula: relevance to the prompt's content words, a well-formed ending,
// a penalty for repeated word trigrams, and a length preference (12–40
// words). With use_activation=false /classify returns the raw score,
// otherwise sigmoid(score).
//
// # Server
//
// NewServer returns an http.Handler with GET /health, GET /v1/models,
// POST /v1/chat/completions, /v1/completions, /tokenize, /detokenize and
// /classify in vLLM's request and response shapes; errors are OpenAI error
// objects. Faults injects latency, 500s, 429s with Retry-After, hangs and
// malformed bodies for client tests. The package tinylmtest starts one on
// 127.0.0.1 for tests; `selfplay lm serve` runs one.
package tinylm
