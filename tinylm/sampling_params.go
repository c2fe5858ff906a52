package tinylm

import "math"

// samplingKnobs are the sampling fields of vLLM's chat and completions
// requests that tinylm checks as vLLM does but does not implement: it
// accepts their neutral values and refuses others with a 400 rather than
// sample differently from what was asked.
type samplingKnobs struct {
	TopK              *int     `json:"top_k"`
	MinP              *float64 `json:"min_p"`
	RepetitionPenalty *float64 `json:"repetition_penalty"`
	PresencePenalty   *float64 `json:"presence_penalty"`
	FrequencyPenalty  *float64 `json:"frequency_penalty"`
	echo              bool     // completions' echo, which allows max_tokens 0
}

// minTemperature is vLLM's _MAX_TEMP: a temperature in (0, 0.01) is raised
// to it.
const minTemperature = 0.01

// checkLikeVLLM applies the checks of vLLM's SamplingParams (vllm/
// sampling_params.py: __post_init__ and _verify_args, with
// _verify_greedy_sampling), in its order, with its messages.
func (p *samplingParams) checkLikeVLLM(k samplingKnobs) error {
	if p.temperature > 0 && p.temperature < minTemperature {
		// vLLM logs a warning and samples at 0.01.
		p.temperature = minTemperature
	}
	if v := k.PresencePenalty; v != nil && !(*v >= -2 && *v <= 2) {
		return badRequest("presence_penalty", "presence_penalty must be in [-2, 2], got %v.", *v)
	}
	if v := k.FrequencyPenalty; v != nil && !(*v >= -2 && *v <= 2) {
		return badRequest("frequency_penalty", "frequency_penalty must be in [-2, 2], got %v.", *v)
	}
	if v := k.RepetitionPenalty; v != nil {
		if math.IsNaN(*v) || math.IsInf(*v, 0) {
			return badRequest("repetition_penalty", "repetition_penalty must be a finite number, got %v.", *v)
		}
		if *v <= 0 {
			return badRequest("repetition_penalty", "repetition_penalty must be greater than zero, got %v.", *v)
		}
	}
	if math.IsNaN(p.temperature) || math.IsInf(p.temperature, 0) {
		return badRequest("temperature", "temperature must be a finite number, got %v.", p.temperature)
	}
	if p.temperature < 0 {
		return badRequest("temperature", "temperature must be non-negative, got %v.", p.temperature)
	}
	if p.temperature > 2 {
		return badRequest("temperature", "temperature must be in [0, 2], got %v.", p.temperature)
	}
	if !(p.topP > 0 && p.topP <= 1) {
		return badRequest("top_p", "top_p must be in (0, 1], got %v.", p.topP)
	}
	if v := k.TopK; v != nil && *v < -1 {
		return badRequest("top_k", "top_k must be 0 (disable), or at least 1, got %d.", *v)
	}
	if v := k.MinP; v != nil && !(*v >= 0 && *v <= 1) {
		return badRequest("min_p", "min_p must be in [0, 1], got %v.", *v)
	}
	// vLLM's completions turn echo with max_tokens 0 into one generated
	// token they do not return; anywhere else max_tokens must be ≥ 1.
	if p.maxTokens < 1 && !(k.echo && p.maxTokens == 0) {
		return badRequest("max_tokens", "max_tokens must be at least 1, got %d.", p.maxTokens)
	}
	if p.temperature == 0 && p.n > 1 {
		return badRequest("n", "n must be 1 when using greedy sampling, got %d.", p.n)
	}
	// What vLLM accepts but tinylm does not implement.
	switch {
	case k.TopK != nil && *k.TopK > 0:
		return badRequest("top_k", "tinylm does not implement top_k; send 0 (all tokens; -1 means the same), got %d", *k.TopK)
	case k.MinP != nil && *k.MinP != 0:
		return badRequest("min_p", "tinylm does not implement min_p; send 0, got %v", *k.MinP)
	case k.RepetitionPenalty != nil && *k.RepetitionPenalty != 1:
		return badRequest("repetition_penalty", "tinylm does not implement repetition_penalty; send 1, got %v", *k.RepetitionPenalty)
	case k.PresencePenalty != nil && *k.PresencePenalty != 0:
		return badRequest("presence_penalty", "tinylm does not implement presence_penalty; send 0, got %v", *k.PresencePenalty)
	case k.FrequencyPenalty != nil && *k.FrequencyPenalty != 0:
		return badRequest("frequency_penalty", "tinylm does not implement frequency_penalty; send 0, got %v", *k.FrequencyPenalty)
	}
	return nil
}
