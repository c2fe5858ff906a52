package config

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Metrics are the selection metrics DESIGN §1.1 defines.
var Metrics = []string{"alignment_potential", "explicit_margin", "implicit_margin", "random"}

// Strategies are the prompt-evolution strategies DESIGN §1.2 defines.
var Strategies = []string{"breadth", "deepen", "constraints", "concretize", "reasoning"}

// RewardKinds are the supported reward APIs.
var RewardKinds = []string{"classify", "pooling", "get_reward", "judge"}

// ChatTemplates are the chat templates the clients can render.
var ChatTemplates = []string{"chatml", "llama3", "tinylm", "plain"}

// ExportFormats are the supported export file formats.
var ExportFormats = []string{"jsonl", "parquet"}

// safeName is what a run or iteration name may be: it becomes a folder name
// under export.dir, so no separators and no dot-only names.
var safeName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$`)

var streamName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

type checker struct{ problems []Problem }

func (c *checker) add(key, format string, args ...any) {
	c.problems = append(c.problems, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) oneOf(key, value string, allowed []string) {
	if !slices.Contains(allowed, value) {
		c.add(key, "expected one of %s, got %q", strings.Join(allowed, ", "), value)
	}
}

func (c *checker) ratio(key string, v float64) {
	if !(v > 0 && v <= 1) {
		c.add(key, "expected a number in (0, 1], got %v", v)
	}
}

func (c *checker) name(key, v string) {
	if !safeName.MatchString(v) || strings.Trim(v, ".") == "" {
		c.add(key, "expected a name of letters, digits, '.', '_' or '-' (no path separators, not starting with '.' or '-'), got %q", v)
	}
}

func (c *checker) httpURL(key, v string) {
	u, err := url.Parse(v)
	if v == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		c.add(key, "expected an http(s) URL, got %q", RedactURL(v))
	}
}

func (c *Config) validate() []Problem {
	var ch checker
	ch.name("run", c.Run)
	if c.Database.URL == "" {
		ch.add("database.url", "required: set database.url or SELFPLAY_DATABASE_URL")
	} else if u, err := url.Parse(c.Database.URL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		ch.add("database.url", "expected a postgres:// URL")
	}
	if c.Database.ConnectWait < 0 {
		ch.add("database.connect_wait", "expected a duration of 0 or more")
	}
	if c.NATS.URL == "" {
		ch.add("nats.url", "required: set nats.url or SELFPLAY_NATS_URL")
	}
	if !streamName.MatchString(c.NATS.Stream) {
		ch.add("nats.stream", "expected letters, digits, '_' or '-', got %q", c.NATS.Stream)
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		ch.add("nats.replicas", "expected 1 to 5 (JetStream's limit), got %d", c.NATS.Replicas)
	}
	if (c.NATS.TLS.CertFile == "") != (c.NATS.TLS.KeyFile == "") {
		ch.add("nats.tls", "cert_file and key_file go together")
	}

	for _, name := range sortedKeys(c.Endpoints) {
		ep := c.Endpoints[name]
		key := "endpoints." + name
		if len(ep.BaseURLs) == 0 {
			ch.httpURL(key+".base_url", ep.BaseURL)
		}
		seen := map[string]int{}
		for i, u := range ep.BaseURLs {
			k := fmt.Sprintf("%s.base_urls[%d]", key, i)
			ch.httpURL(k, u)
			norm := strings.TrimSuffix(strings.TrimRight(strings.TrimSpace(u), "/"), "/v1")
			if j, dup := seen[norm]; dup {
				ch.add(k, "replica %q is already listed as base_urls[%d]", u, j)
			} else {
				seen[norm] = i
			}
		}
		if ep.MaxConcurrency < 1 {
			ch.add(key+".max_concurrency", "expected at least 1, got %d", ep.MaxConcurrency)
		}
		if ep.Timeout <= 0 {
			ch.add(key+".timeout", "expected a positive duration, got %v", ep.Timeout)
		}
		if ep.MaxRetries < 0 {
			ch.add(key+".max_retries", "expected 0 or more, got %d", ep.MaxRetries)
		}
		if ep.MaxN < 0 {
			ch.add(key+".max_n", "expected 0 (no limit) or the most choices one request may ask for, got %d", ep.MaxN)
		}
		if ep.ChatTemplate != "" {
			ch.oneOf(key+".chat_template", ep.ChatTemplate, ChatTemplates)
		}
		if name == "reward" {
			ch.oneOf(key+".kind", ep.Kind, RewardKinds)
			if ep.Model == "" {
				ch.add(key+".model", "required: the reward model's name")
			}
		} else if ep.Kind != "" {
			ch.add(key+".kind", "only the reward endpoint has a kind")
		}
	}
	for _, role := range []string{"policy", "reward"} {
		if _, ok := c.Endpoints[role]; !ok {
			ch.add("endpoints."+role, "required: the %s server's base_url", role)
		}
	}

	c.Generation.check(&ch, "generation")
	c.Scoring.check(&ch, "scoring", c)
	c.Selection.check(&ch, "selection")
	c.Evolve.check(&ch, "evolve", c)
	c.Dedup.check(&ch)
	c.Decontaminate.check(&ch)
	if c.LearningCheck.Sample < 1 {
		ch.add("learning_check.sample", "expected at least 1 pair, got %d", c.LearningCheck.Sample)
	}

	if c.Export.Dir == "" {
		ch.add("export.dir", "required: a folder for the exports")
	}
	if len(c.Export.Formats) == 0 {
		ch.add("export.formats", "expected at least one of %s", strings.Join(ExportFormats, ", "))
	}
	for i, f := range c.Export.Formats {
		ch.oneOf(fmt.Sprintf("export.formats[%d]", i), f, ExportFormats)
	}
	if len(c.Hooks.Train) > 0 && c.Hooks.Train[0] == "" {
		ch.add("hooks.train[0]", "expected the command to run")
	}
	if c.Hooks.TrainTimeout <= 0 {
		ch.add("hooks.train_timeout", "expected a positive duration, got %v", c.Hooks.TrainTimeout)
	}
	if c.Hooks.WaitForModel < 0 {
		ch.add("hooks.wait_for_model", "expected 0 or a positive duration, got %v", c.Hooks.WaitForModel)
	}
	if c.Worker.Concurrency < 1 {
		ch.add("worker.concurrency", "expected at least 1, got %d", c.Worker.Concurrency)
	}
	if c.Worker.AckWait < 1e9 {
		ch.add("worker.ack_wait", "expected at least 1s, got %v", c.Worker.AckWait)
	}
	if c.Worker.MaxDeliver < 1 {
		ch.add("worker.max_deliver", "expected at least 1, got %d", c.Worker.MaxDeliver)
	}
	if f := c.Orchestrator.MaxFailedFraction; f < 0 || f > 1 {
		ch.add("orchestrator.max_failed_fraction", "expected a number in [0, 1], got %v", f)
	}
	if c.Orchestrator.ProgressInterval <= 0 {
		ch.add("orchestrator.progress_interval", "expected a positive duration")
	}
	if c.Orchestrator.PollInterval <= 0 {
		ch.add("orchestrator.poll_interval", "expected a positive duration")
	}
	if c.Orchestrator.OutageTimeout <= 0 {
		ch.add("orchestrator.outage_timeout", "expected a positive duration")
	}
	if c.Orchestrator.IdleWarning <= 0 {
		ch.add("orchestrator.idle_warning", "expected a positive duration")
	}

	if len(c.Iterations) == 0 {
		ch.add("iterations", "expected at least one iteration")
	}
	seen := map[string]int{}
	for i, it := range c.Iterations {
		key := fmt.Sprintf("iterations[%d]", i)
		ch.name(key+".name", it.Name)
		if j, dup := seen[it.Name]; dup {
			ch.add(key+".name", "duplicate of iterations[%d].name %q", j, it.Name)
		}
		seen[it.Name] = i
		if it.PolicyModel == "" {
			ch.add(key+".policy_model", "required: the model name to sample from")
		}
		if len(it.Prompts.Files) == 0 && !it.Prompts.Evolved {
			ch.add(key+".prompts", "expected files, evolved: true, or both")
		}
		if it.Prompts.Limit < 0 {
			ch.add(key+".prompts.limit", "expected 0 (all rows) or more, got %d", it.Prompts.Limit)
		}
		if it.Prompts.Sample < 0 {
			ch.add(key+".prompts.sample", "expected 0 (every prompt) or more, got %d", it.Prompts.Sample)
		}
		if len(it.Prompts.Files) == 0 && (it.Prompts.Column != "" || it.Prompts.IDColumn != "" || it.Prompts.Limit != 0 || it.Prompts.Sample != 0) {
			ch.add(key+".prompts", "column, id_column, limit and sample apply to files; this iteration has none")
		}
		if i == 0 && it.Prompts.Evolved {
			ch.add(key+".prompts.evolved", "the first iteration has no previous iteration to evolve from")
		}
		if it.Prompts.Evolved && i > 0 && !c.Iterations[i-1].Evolve.Enabled {
			ch.add(key+".prompts.evolved", "iterations[%d] has evolve.enabled false", i-1)
		}
		if it.ReferenceModel != "" {
			if _, ok := c.Endpoints["reference"]; !ok {
				ch.add(key+".reference_model", "needs endpoints.reference")
			}
		}
		if len(it.Overrides) > 0 {
			it.Generation.check(&ch, key+".overrides.generation")
			it.Scoring.check(&ch, key+".overrides.scoring", c)
			it.Selection.check(&ch, key+".overrides.selection")
			it.Evolve.check(&ch, key+".overrides.evolve", c)
		}
		if it.Scoring.Implicit == "dpo" && it.ReferenceModel == "" && c.Endpoints["reference"].Model == "" {
			ch.add(key+".reference_model", "scoring.implicit dpo needs a reference model (here or endpoints.reference.model)")
		}
	}
	return dedupe(ch.problems)
}

// dedupe drops repeats: an iteration without overrides shares its sections
// with the global ones, so a global problem must be reported once.
func dedupe(ps []Problem) []Problem {
	seen := map[Problem]bool{}
	out := ps[:0]
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

func (g Generation) check(ch *checker, key string) {
	if g.Samples < 2 {
		ch.add(key+".samples", "expected at least 2 (a pair needs two responses), got %d", g.Samples)
	}
	// vllm/sampling_params.py: temperature in [0, 2]; below 0.01 it is
	// raised to 0.01; 0 is greedy and needs n = 1, and samples is ≥ 2.
	if !(g.Temperature >= 0.01 && g.Temperature <= 2) {
		ch.add(key+".temperature", "expected a number in [0.01, 2] (vLLM refuses temperatures above 2, raises those below 0.01 to 0.01, and samples greedily at 0, which needs samples = 1), got %v", g.Temperature)
	}
	ch.ratio(key+".top_p", g.TopP)
	if g.TopK < -1 {
		ch.add(key+".top_k", "expected 0 (all tokens; -1 means the same) or a number of tokens ≥ 1, got %d", g.TopK)
	}
	if !(g.MinP >= 0 && g.MinP <= 1) {
		ch.add(key+".min_p", "expected a number in [0, 1] (0 = off), got %v", g.MinP)
	}
	if !(g.RepetitionPenalty > 0) || math.IsInf(g.RepetitionPenalty, 0) {
		ch.add(key+".repetition_penalty", "expected a finite number > 0 (1 = none), got %v", g.RepetitionPenalty)
	}
	if !(g.PresencePenalty >= -2 && g.PresencePenalty <= 2) {
		ch.add(key+".presence_penalty", "expected a number in [-2, 2] (0 = none), got %v", g.PresencePenalty)
	}
	if !(g.FrequencyPenalty >= -2 && g.FrequencyPenalty <= 2) {
		ch.add(key+".frequency_penalty", "expected a number in [-2, 2] (0 = none), got %v", g.FrequencyPenalty)
	}
	if g.MaxTokens < 1 {
		ch.add(key+".max_tokens", "expected at least 1, got %d", g.MaxTokens)
	}
}

func (s Scoring) check(ch *checker, key string, c *Config) {
	ch.oneOf(key+".implicit", s.Implicit, []string{"simpo", "dpo"})
	if s.Implicit == "dpo" {
		if _, ok := c.Endpoints["reference"]; !ok {
			ch.add(key+".implicit", "dpo needs a reference endpoint: add endpoints.reference or use simpo")
		}
	}
	if !(s.Beta > 0) {
		ch.add(key+".beta", "expected a positive number, got %v", s.Beta)
	}
	if s.ImplicitWeight < 0 {
		ch.add(key+".implicit_weight", "expected 0 or more, got %v", s.ImplicitWeight)
	}
	ch.oneOf(key+".length_control", s.LengthControl, []string{"none", "residual"})
	if !(s.LengthDriftWarn >= 0) || math.IsInf(s.LengthDriftWarn, 1) {
		ch.add(key+".length_drift_warn", "expected a fraction of 0 (off) or more, e.g. 0.2 for 20%%, got %v", s.LengthDriftWarn)
	}
}

func (s Selection) check(ch *checker, key string) {
	ch.oneOf(key+".metric", s.Metric, Metrics)
	if s.Count < 0 {
		ch.add(key+".count", "expected 0 (use ratio) or more, got %d", s.Count)
	}
	if s.Count == 0 {
		ch.ratio(key+".ratio", s.Ratio)
	}
}

func (e Evolve) check(ch *checker, key string, c *Config) {
	if !e.Enabled {
		return
	}
	ch.oneOf(key+".metric", e.Metric, Metrics)
	if e.ImplicitWeight < 0 {
		ch.add(key+".implicit_weight", "expected 0 or more, got %v", e.ImplicitWeight)
	}
	ch.ratio(key+".ratio", e.Ratio)
	if len(e.Strategies) == 0 {
		ch.add(key+".strategies", "expected at least one of %s", strings.Join(Strategies, ", "))
	}
	seen := map[string]bool{}
	for i, s := range e.Strategies {
		ch.oneOf(fmt.Sprintf("%s.strategies[%d]", key, i), s, Strategies)
		if seen[s] {
			ch.add(fmt.Sprintf("%s.strategies[%d]", key, i), "duplicate strategy %q", s)
		}
		seen[s] = true
	}
	if e.LengthRatio < 1 {
		ch.add(key+".length_ratio", "expected at least 1, got %v", e.LengthRatio)
	}
	if e.MaxPromptChars < 1 {
		ch.add(key+".max_prompt_chars", "expected at least 1, got %d", e.MaxPromptChars)
	}
	if _, ok := c.Endpoints[e.Endpoint]; !ok {
		ch.add(key+".endpoint", "expected the name of an endpoint (%s), got %q", strings.Join(sortedKeys(c.Endpoints), ", "), e.Endpoint)
	}
	if !(e.Temperature == 0 || (e.Temperature >= 0.01 && e.Temperature <= 2)) {
		ch.add(key+".temperature", "expected 0 (greedy) or a number in [0.01, 2] (vLLM refuses temperatures above 2 and raises those below 0.01 to 0.01), got %v", e.Temperature)
	}
	if e.MaxTokens < 1 {
		ch.add(key+".max_tokens", "expected at least 1, got %d", e.MaxTokens)
	}
}

// DedupLoadedModes are the values of dedup.loaded.
var DedupLoadedModes = []string{DedupReport, DedupDrop}

func (d Dedup) check(ch *checker) {
	if d.Shingle < 1 {
		ch.add("dedup.shingle", "expected at least 1 word, got %d", d.Shingle)
	}
	if d.Bands < 1 {
		ch.add("dedup.bands", "expected at least 1, got %d", d.Bands)
	}
	if d.Rows < 1 {
		ch.add("dedup.rows", "expected at least 1, got %d", d.Rows)
	}
	if d.Bands >= 1 && d.Rows >= 1 && d.Bands*d.Rows > 1024 {
		ch.add("dedup.bands", "bands × rows is %d, over 1024 hash functions", d.Bands*d.Rows)
	}
	ch.ratio("dedup.near_threshold", d.NearThreshold)
	ch.oneOf("dedup.loaded", d.Loaded, DedupLoadedModes)
}

func (d Decontaminate) check(ch *checker) {
	if d.NGram < 1 {
		ch.add("decontaminate.ngram", "expected at least 1 word, got %d", d.NGram)
	}
	seen := map[string]bool{}
	for i, f := range d.Files {
		switch {
		case f == "":
			ch.add(fmt.Sprintf("decontaminate.files[%d]", i), "expected a file name")
		case seen[f]:
			ch.add(fmt.Sprintf("decontaminate.files[%d]", i), "%q is listed twice", f)
		}
		seen[f] = true
	}
	if len(d.Files) == 0 && d.Column != "" {
		ch.add("decontaminate.column", "set without decontaminate.files")
	}
}
