package config

import (
	"time"
)

// Config is the whole selfplay schedule: where the services are, how to
// sample, score, select and evolve, and the list of iterations. Load returns
// it with defaults applied and validated; other packages receive the small
// section structs, never the viper instance.
type Config struct {
	// Run names the run; it is unique per database and also names the
	// export folder, so it may only hold letters, digits, '.', '_' and '-'.
	// Default "demo".
	Run        string              `mapstructure:"run" json:"run"`
	Database   Database            `mapstructure:"database" json:"database"`
	NATS       NATS                `mapstructure:"nats" json:"nats"`
	Endpoints  map[string]Endpoint `mapstructure:"endpoints" json:"endpoints"`
	Generation Generation          `mapstructure:"generation" json:"generation"`
	Scoring    Scoring             `mapstructure:"scoring" json:"scoring"`
	Selection  Selection           `mapstructure:"selection" json:"selection"`
	Evolve     Evolve              `mapstructure:"evolve" json:"evolve"`
	Dedup      Dedup               `mapstructure:"dedup" json:"dedup"`
	// Decontaminate names benchmark files no prompt may overlap.
	Decontaminate Decontaminate `mapstructure:"decontaminate" json:"decontaminate"`
	Export        Export        `mapstructure:"export" json:"export"`
	// LearningCheck measures, after each training, what the new policy
	// learned of the iteration's pairs.
	LearningCheck LearningCheck `mapstructure:"learning_check" json:"learning_check"`
	Hooks         Hooks         `mapstructure:"hooks" json:"hooks"`
	Worker        Worker        `mapstructure:"worker" json:"worker"`
	Orchestrator  Orchestrator  `mapstructure:"orchestrator" json:"orchestrator"`
	Iterations    []Iteration   `mapstructure:"iterations" json:"iterations"`

	// Path is the file the configuration was read from ("" when none).
	Path string `mapstructure:"-" json:"-"`
}

// Database locates PostgreSQL.
type Database struct {
	// URL is a libpq connection URL; SELFPLAY_DATABASE_URL overrides it.
	// Default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable.
	// A password in it is redacted wherever the configuration is shown.
	URL string `mapstructure:"url" json:"url"`
	// ConnectWait is how long migrate, run and worker wait at start for
	// PostgreSQL to come up (connection refused, or the server still
	// starting) before they give up; default 1m, 0 tries once.
	ConnectWait time.Duration `mapstructure:"connect_wait" json:"connect_wait"`
}

// NATS locates the NATS server and names the JetStream stream for tasks.
type NATS struct {
	// URL of the server(s), comma-separated; default nats://127.0.0.1:4222.
	URL string `mapstructure:"url" json:"url"`
	// Stream is the JetStream stream name; default SELFPLAY. Subjects are
	// "<stream lowercased>.tasks.<deployment>.<kind>.<iteration id>", the
	// deployment being a random token stored in the database.
	Stream string `mapstructure:"stream" json:"stream"`
	// Replicas of the stream on a JetStream cluster (1 to 5); default 1,
	// 3 in production on a three-node cluster.
	Replicas int `mapstructure:"replicas" json:"replicas"`
	// User for user/password authentication; the password is read from the
	// environment variable named by PasswordEnv.
	User        string `mapstructure:"user" json:"user"`
	PasswordEnv string `mapstructure:"password_env" json:"password_env"`
	// TokenEnv names the environment variable holding a token.
	TokenEnv string `mapstructure:"token_env" json:"token_env"`
	// CredsFile is a NATS .creds file (JWT and NKey seed).
	CredsFile string `mapstructure:"creds_file" json:"creds_file"`
	TLS       TLS    `mapstructure:"tls" json:"tls"`
}

// TLS holds file paths for a TLS connection; all empty means no TLS.
type TLS struct {
	CAFile   string `mapstructure:"ca_file" json:"ca_file"`
	CertFile string `mapstructure:"cert_file" json:"cert_file"`
	KeyFile  string `mapstructure:"key_file" json:"key_file"`
}

// Endpoint is one OpenAI-compatible server. The API key is never part of
// the configuration: APIKeyEnv names the environment variable holding it.
type Endpoint struct {
	// BaseURL of the server, with or without the /v1 suffix.
	BaseURL string `mapstructure:"base_url" json:"base_url"`
	// BaseURLs lists replicas of the server (vLLM instances serving the
	// same models), each like BaseURL; when set it takes the place of
	// BaseURL. Requests go to the healthy replica with the fewest in
	// flight; one that refuses connections, times out or answers 5xx is
	// taken out and probed at GET /health until it answers.
	BaseURLs []string `mapstructure:"base_urls" json:"base_urls"`
	// APIKeyEnv names the environment variable with the API key; "" for none.
	APIKeyEnv string `mapstructure:"api_key_env" json:"api_key_env"`
	// MaxConcurrency bounds in-flight requests per worker and replica;
	// default 64.
	MaxConcurrency int `mapstructure:"max_concurrency" json:"max_concurrency"`
	// Timeout per request; default 120s.
	Timeout time.Duration `mapstructure:"timeout" json:"timeout"`
	// MaxRetries for transient errors (429, 5xx, timeouts); default 5.
	MaxRetries int `mapstructure:"max_retries" json:"max_retries"`
	// MaxN is the most choices (n) one chat request may ask for, e.g.
	// llama-server's slot count (--parallel); when generation.samples is
	// above it, each sample is its own request. 0 (default) means no limit:
	// all samples in one request, falling back to one request per sample
	// when the server rejects n or returns fewer choices.
	MaxN int `mapstructure:"max_n" json:"max_n"`
	// Kind of a reward endpoint: classify (default), pooling, get_reward or judge.
	Kind string `mapstructure:"kind" json:"kind"`
	// Model served by this endpoint when it is fixed (reward, reference,
	// evolver); policy models come from the iterations.
	Model string `mapstructure:"model" json:"model"`
	// ChatTemplate renders (prompt, response) conversations for a reward
	// endpoint so the n responses of a prompt go in one /classify or
	// /pooling request: chatml, llama3, tinylm or plain. "" (default)
	// sends the chat form instead, one request per response, letting the
	// server apply the reward model's own template.
	ChatTemplate string `mapstructure:"chat_template" json:"chat_template"`
}

// Generation controls sampling from the policy.
type Generation struct {
	// Samples n per prompt; default 5, at least 2.
	Samples int `mapstructure:"samples" json:"samples"`
	// Temperature in [0.01, 2] (vLLM's range; 0, greedy, would need n = 1);
	// default 0.8.
	Temperature float64 `mapstructure:"temperature" json:"temperature"`
	// TopP nucleus mass in (0,1]; default 0.95.
	TopP float64 `mapstructure:"top_p" json:"top_p"`
	// MaxTokens per response; default 1024.
	MaxTokens int `mapstructure:"max_tokens" json:"max_tokens"`
	// Seed for sampling; the per-prompt seed is derived from it and the
	// prompt id so a re-run samples the same text. Default 42.
	Seed int64 `mapstructure:"seed" json:"seed"`
	// TopK keeps the k most likely tokens; default 0 (all; -1, which vLLM
	// also reads as all, is accepted and sent as 0). The neutral
	// values below are sent, not left out, because vLLM otherwise applies
	// the model's generation_config (often top_k 20 or a repetition
	// penalty), so samples would not come from temperature and top_p alone.
	TopK int `mapstructure:"top_k" json:"top_k"`
	// MinP in [0, 1]; default 0 (off).
	MinP float64 `mapstructure:"min_p" json:"min_p"`
	// RepetitionPenalty > 0; default 1 (none).
	RepetitionPenalty float64 `mapstructure:"repetition_penalty" json:"repetition_penalty"`
	// PresencePenalty in [-2, 2]; default 0.
	PresencePenalty float64 `mapstructure:"presence_penalty" json:"presence_penalty"`
	// FrequencyPenalty in [-2, 2]; default 0.
	FrequencyPenalty float64 `mapstructure:"frequency_penalty" json:"frequency_penalty"`
}

// Scoring controls the implicit margin.
type Scoring struct {
	// Implicit is "simpo" (length-normalised, reference-free; default) or
	// "dpo" (needs a reference endpoint).
	Implicit string `mapstructure:"implicit" json:"implicit"`
	// Beta scales the dpo margin; default 0.01.
	Beta float64 `mapstructure:"beta" json:"beta"`
	// ImplicitWeight w in AP = z(m_ex) − w·z(|m_im|); default 1.0.
	ImplicitWeight float64 `mapstructure:"implicit_weight" json:"implicit_weight"`
	// LengthControl is "none" (default: the paper's metric) or "residual":
	// the explicit margin from rewards with the iteration's fitted length
	// effect removed (reward − slope·tokens).
	LengthControl string `mapstructure:"length_control" json:"length_control"`
	// LengthDriftWarn warns when the mean chosen length of the selected
	// pairs grows by more than this fraction from one iteration to the
	// next; default 0.2 (20%), 0 turns the warning off.
	LengthDriftWarn float64 `mapstructure:"length_drift_warn" json:"length_drift_warn"`
}

// Selection chooses the training set of an iteration.
type Selection struct {
	// Metric: alignment_potential (default), explicit_margin,
	// implicit_margin or random.
	Metric string `mapstructure:"metric" json:"metric"`
	// Ratio of pairs kept, in (0,1]; default 0.4. Ignored when Count > 0.
	Ratio float64 `mapstructure:"ratio" json:"ratio"`
	// Count of pairs kept; 0 (default) means use Ratio.
	Count int `mapstructure:"count" json:"count"`
	// Seed of the random metric; default 42.
	Seed int64 `mapstructure:"seed" json:"seed"`
}

// Evolve controls prompt evolution between iterations.
type Evolve struct {
	// Enabled turns evolution on; default true.
	Enabled bool `mapstructure:"enabled" json:"enabled"`
	// Metric ranking prompts to evolve; default alignment_potential.
	Metric string `mapstructure:"metric" json:"metric"`
	// ImplicitWeight w used by the evolve metric; default 2.5.
	ImplicitWeight float64 `mapstructure:"implicit_weight" json:"implicit_weight"`
	// Ratio of paired prompts evolved, in (0,1]; default 0.25.
	Ratio float64 `mapstructure:"ratio" json:"ratio"`
	// Strategies: any of breadth, deepen, constraints, concretize,
	// reasoning; default all five.
	Strategies []string `mapstructure:"strategies" json:"strategies"`
	// LengthRatio bounds an evolved prompt's length to within this factor
	// of its parent's, in characters; default 5.
	LengthRatio float64 `mapstructure:"length_ratio" json:"length_ratio"`
	// MaxPromptChars caps any prompt's length; default 8000.
	MaxPromptChars int `mapstructure:"max_prompt_chars" json:"max_prompt_chars"`
	// Endpoint names the endpoint that rewrites prompts; default policy.
	Endpoint string `mapstructure:"endpoint" json:"endpoint"`
	// Model used for rewriting; "" (default) means the iteration's policy
	// model (or the endpoint's model when set).
	Model string `mapstructure:"model" json:"model"`
	// Temperature for rewriting, 0 (greedy) or in [0.01, 2]; default 0.7.
	Temperature float64 `mapstructure:"temperature" json:"temperature"`
	// MaxTokens for a rewritten prompt; default 512.
	MaxTokens int `mapstructure:"max_tokens" json:"max_tokens"`
}

// DedupLoaded values: what happens to a near-duplicate in a prompt file.
const (
	DedupReport = "report"
	DedupDrop   = "drop"
)

// Dedup controls near-duplicate detection: every prompt that enters a pool
// gets a MinHash signature of its word shingles, indexed by LSH bands (see
// package minhash). The section is run-wide (signatures of one run must be
// comparable), not overridable per iteration.
type Dedup struct {
	// Shingle is the number of consecutive words in a shingle; default 3.
	Shingle int `mapstructure:"shingle" json:"shingle"`
	// Bands × Rows is the signature's length (at most 1024); default
	// 20 × 6 = 120, whose LSH S-curve turns at (1/20)^(1/6) ≈ 0.61: a pair
	// at Jaccard 0.8 is a candidate with probability 0.998, one at 0.3 with
	// 0.014.
	Bands int `mapstructure:"bands" json:"bands"`
	Rows  int `mapstructure:"rows" json:"rows"`
	// NearThreshold is the estimated Jaccard similarity, in (0, 1], at
	// which a prompt is a near-duplicate of one already in the run;
	// default 0.8.
	NearThreshold float64 `mapstructure:"near_threshold" json:"near_threshold"`
	// Loaded says what happens to a near-duplicate read from a prompt
	// file: "report" (default; kept, counted and shown in the report) or
	// "drop". Evolved near-duplicates are always dropped.
	Loaded string `mapstructure:"loaded" json:"loaded"`
}

// Decontaminate names benchmark prompt files: a prompt (loaded or evolved)
// that shares a run of NGram words with any of their prompts is dropped.
type Decontaminate struct {
	// Files are benchmark prompt files, in the formats of prompts.files;
	// default none (no check).
	Files []string `mapstructure:"files" json:"files"`
	// NGram is the length in words of a shared run that counts; default 13.
	NGram int `mapstructure:"ngram" json:"ngram"`
	// Column names the benchmark files' prompt column, as prompts.column;
	// "" (default): "prompt" or "messages".
	Column string `mapstructure:"column" json:"column,omitempty"`
}

// Export controls the per-iteration dataset files.
type Export struct {
	// Dir receives exports/<run>/<iteration>/; default ./exports.
	Dir string `mapstructure:"dir" json:"dir"`
	// Formats written; default [jsonl].
	Formats []string `mapstructure:"formats" json:"formats"`
}

// LearningCheck controls the learning check (docs/learning.md): once the
// train hook's next policy is served, a sample of the iteration's pairs is
// teacher-forced under it on the policy endpoint, and the change of each
// pair's implicit margin is stored and reported. The section is run-wide,
// not overridable per iteration.
type LearningCheck struct {
	// Enabled turns the check on; default false. It needs a policy endpoint
	// that can teacher-force (vLLM's /tokenize and prompt_logprobs, or the
	// built-in model): run and worker refuse to start on one that cannot.
	Enabled bool `mapstructure:"enabled" json:"enabled"`
	// Sample is how many pairs are checked, drawn from the selected and the
	// not-selected pairs in proportion; default 2000 (all pairs when the
	// iteration has fewer).
	Sample int `mapstructure:"sample" json:"sample"`
	// Seed of the sample and of the bootstrap intervals; default 42.
	Seed int64 `mapstructure:"seed" json:"seed"`
}

// Hooks run between iterations.
type Hooks struct {
	// Train is the argv of the training command, run after each export with
	// placeholders {dataset}, {manifest}, {run}, {iteration},
	// {policy_model} and {next_model} substituted as whole arguments; empty
	// (default) runs nothing.
	Train []string `mapstructure:"train" json:"train"`
	// TrainTimeout bounds the training command; default 24h.
	TrainTimeout time.Duration `mapstructure:"train_timeout" json:"train_timeout"`
	// WaitForModel bounds the wait for the next policy model to be served;
	// default 2h.
	WaitForModel time.Duration `mapstructure:"wait_for_model" json:"wait_for_model"`
	// FinalModel is {next_model} after the schedule's last iteration: the
	// name of the policy the train hook makes from the last export, which
	// the orchestrator then waits for like any other. Empty (default): the
	// hook gets an empty {next_model} and nothing is waited for.
	FinalModel string `mapstructure:"final_model" json:"final_model"`
}

// Worker controls task consumption.
type Worker struct {
	// Concurrency is the number of tasks a worker runs at once; default 16.
	Concurrency int `mapstructure:"concurrency" json:"concurrency"`
	// AckWait before an unacknowledged task is redelivered; default 10m.
	AckWait time.Duration `mapstructure:"ack_wait" json:"ack_wait"`
	// MaxDeliver attempts per task message; default 5.
	MaxDeliver int `mapstructure:"max_deliver" json:"max_deliver"`
}

// Orchestrator controls the run loop.
type Orchestrator struct {
	// MaxFailedFraction of an iteration's tasks may fail before the
	// iteration fails; default 0.05.
	MaxFailedFraction float64 `mapstructure:"max_failed_fraction" json:"max_failed_fraction"`
	// ProgressInterval between progress lines; default 5s.
	ProgressInterval time.Duration `mapstructure:"progress_interval" json:"progress_interval"`
	// PollInterval between checks of task completion; default 500ms.
	PollInterval time.Duration `mapstructure:"poll_interval" json:"poll_interval"`
	// OutageTimeout is how long the orchestrator waits for PostgreSQL or
	// NATS to come back before failing the iteration; default 10m.
	OutageTimeout time.Duration `mapstructure:"outage_timeout" json:"outage_timeout"`
	// IdleWarning is how long tasks may wait with no worker pulling them
	// (no pull request waiting on the run's consumer and nothing in
	// flight) before the orchestrator warns, then once a minute while it
	// lasts; default 1m.
	IdleWarning time.Duration `mapstructure:"idle_warning" json:"idle_warning"`
}

// Iteration is one step of the schedule.
type Iteration struct {
	// Name is unique within the run and names the export folder.
	Name string `mapstructure:"name" json:"name"`
	// PolicyModel is the model name sampled from in this iteration.
	PolicyModel string `mapstructure:"policy_model" json:"policy_model"`
	// ReferenceModel scores responses on the reference endpoint; default
	// endpoints.reference.model, "" for none.
	ReferenceModel string  `mapstructure:"reference_model" json:"reference_model"`
	Prompts        Prompts `mapstructure:"prompts" json:"prompts"`
	// Overrides replaces keys of generation, scoring, selection and evolve
	// for this iteration only.
	Overrides map[string]any `mapstructure:"overrides" json:"overrides,omitempty"`

	// Effective sections: the global ones with Overrides applied.
	Generation Generation `mapstructure:"-" json:"-"`
	Scoring    Scoring    `mapstructure:"-" json:"-"`
	Selection  Selection  `mapstructure:"-" json:"-"`
	Evolve     Evolve     `mapstructure:"-" json:"-"`
	// The run-wide sections, stored with every iteration.
	Dedup         Dedup         `mapstructure:"-" json:"-"`
	Decontaminate Decontaminate `mapstructure:"-" json:"-"`
	LearningCheck LearningCheck `mapstructure:"-" json:"-"`
}

// Prompts says where an iteration's prompt pool comes from.
type Prompts struct {
	// Files are prompt files (relative to the working directory): JSON
	// Lines, gzip-compressed JSON Lines (.jsonl.gz) or Parquet (.parquet,
	// as Hugging Face datasets publish them).
	Files []string `mapstructure:"files" json:"files"`
	// Evolved adds the prompts evolved by the previous iteration.
	Evolved bool `mapstructure:"evolved" json:"evolved"`
	// Column names the column (or JSON field) holding the prompt: a text,
	// read as one user message, or a list of {role, content} messages.
	// "" (default): "prompt" or "messages" (in JSON Lines, each line holds
	// one of them and nothing but an optional "id").
	Column string `mapstructure:"column" json:"column,omitempty"`
	// IDColumn names the column kept as the prompt's source id; ""
	// (default): "id", else "prompt_id", when the file has one.
	IDColumn string `mapstructure:"id_column" json:"id_column,omitempty"`
	// Limit > 0 reads only the first Limit rows of the files, in order;
	// 0 (default) reads them all.
	Limit int `mapstructure:"limit" json:"limit,omitempty"`
	// Sample > 0 keeps Sample of the prompts read, drawn at random with
	// Seed; 0 (default) keeps them all.
	Sample int `mapstructure:"sample" json:"sample,omitempty"`
	// Seed of Sample; default 0.
	Seed int64 `mapstructure:"seed" json:"seed,omitempty"`
}

// Defaults returns the configuration used for every key the file leaves out.
func Defaults() Config {
	return Config{
		Run:      "demo",
		Database: Database{URL: "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", ConnectWait: time.Minute},
		NATS:     NATS{URL: "nats://127.0.0.1:4222", Stream: "SELFPLAY", Replicas: 1},
		Endpoints: map[string]Endpoint{
			"policy": {BaseURL: "http://127.0.0.1:8000/v1"},
			"reward": {BaseURL: "http://127.0.0.1:8000", Kind: "classify", Model: "reward"},
		},
		Generation: Generation{Samples: 5, Temperature: 0.8, TopP: 0.95, MaxTokens: 1024, Seed: 42, TopK: 0, RepetitionPenalty: 1},
		Scoring:    Scoring{Implicit: "simpo", Beta: 0.01, ImplicitWeight: 1.0, LengthControl: "none", LengthDriftWarn: 0.2},
		Selection:  Selection{Metric: "alignment_potential", Ratio: 0.4, Seed: 42},
		Evolve: Evolve{
			Enabled: true, Metric: "alignment_potential", ImplicitWeight: 2.5, Ratio: 0.25,
			Strategies:  []string{"breadth", "deepen", "constraints", "concretize", "reasoning"},
			LengthRatio: 5, MaxPromptChars: 8000, Endpoint: "policy", Temperature: 0.7, MaxTokens: 512,
		},
		Dedup:         Dedup{Shingle: 3, Bands: 20, Rows: 6, NearThreshold: 0.8, Loaded: DedupReport},
		Decontaminate: Decontaminate{Files: []string{}, NGram: 13},
		Export:        Export{Dir: "./exports", Formats: []string{"jsonl"}},
		LearningCheck: LearningCheck{Sample: 2000, Seed: 42},
		Hooks:         Hooks{Train: []string{}, TrainTimeout: 24 * time.Hour, WaitForModel: 2 * time.Hour},
		Worker:        Worker{Concurrency: 16, AckWait: 10 * time.Minute, MaxDeliver: 5},
		Orchestrator:  Orchestrator{MaxFailedFraction: 0.05, ProgressInterval: 5 * time.Second, PollInterval: 500 * time.Millisecond, OutageTimeout: 10 * time.Minute, IdleWarning: time.Minute},
	}
}

// URLs returns the endpoint's replica addresses: BaseURLs when set,
// otherwise BaseURL alone.
func (e Endpoint) URLs() []string {
	if len(e.BaseURLs) > 0 {
		return e.BaseURLs
	}
	return []string{e.BaseURL}
}

// endpointDefaults fills the per-endpoint defaults that do not depend on the
// endpoint's role.
func endpointDefaults(e Endpoint) Endpoint {
	if e.MaxConcurrency == 0 {
		e.MaxConcurrency = 64
	}
	if e.Timeout == 0 {
		e.Timeout = 120 * time.Second
	}
	if e.MaxRetries == 0 {
		e.MaxRetries = 5
	}
	return e
}

// Settings is what one iteration runs with: its models, prompt sources and
// the effective sampling, scoring, selection and evolution sections. The
// orchestrator stores it with the iteration so every worker uses the
// schedule the orchestrator started, whatever its own file says.
type Settings struct {
	Name           string     `json:"name"`
	PolicyModel    string     `json:"policy_model"`
	ReferenceModel string     `json:"reference_model"`
	Prompts        Prompts    `json:"prompts"`
	Generation     Generation `json:"generation"`
	Scoring        Scoring    `json:"scoring"`
	Selection      Selection  `json:"selection"`
	Evolve         Evolve     `json:"evolve"`
	// Dedup, Decontaminate and LearningCheck are run-wide: the same in
	// every iteration.
	Dedup         Dedup         `json:"dedup"`
	Decontaminate Decontaminate `json:"decontaminate"`
	LearningCheck LearningCheck `json:"learning_check"`
}

// Settings returns the iteration's effective settings.
func (it Iteration) Settings() Settings {
	return Settings{
		Name: it.Name, PolicyModel: it.PolicyModel, ReferenceModel: it.ReferenceModel, Prompts: it.Prompts,
		Generation: it.Generation, Scoring: it.Scoring, Selection: it.Selection, Evolve: it.Evolve,
		Dedup: it.Dedup, Decontaminate: it.Decontaminate, LearningCheck: it.LearningCheck,
	}
}
