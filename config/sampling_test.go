package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
)

// The sampling keys accept what vLLM accepts (vllm/sampling_params.py,
// SamplingParams._verify_args and __post_init__): temperature in [0, 2]
// with 0 greedy (n must be 1, and generation.samples is at least 2) and
// 0 < t < 0.01 raised to 0.01; top_k ≥ -1; min_p in [0, 1]; repetition
// penalty > 0; presence and frequency penalties in [-2, 2].
func TestSamplingRangesFollowVLLM(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		key  string // "" = valid
		want string
	}{
		{name: "defaults are neutral", yaml: ""},
		{name: "temperature 2 is vLLM's maximum", yaml: "generation: {temperature: 2}\n"},
		{name: "temperature 0.01 is vLLM's minimum", yaml: "generation: {temperature: 0.01}\n"},
		{name: "temperature above 2", yaml: "generation: {temperature: 2.5}\n", key: "generation.temperature", want: "[0.01, 2]"},
		{name: "temperature 0 with samples", yaml: "generation: {temperature: 0}\n", key: "generation.temperature", want: "greedily at 0, which needs samples = 1"},
		{name: "temperature vLLM would raise", yaml: "generation: {temperature: 0.005}\n", key: "generation.temperature", want: "raises those below 0.01"},
		{name: "evolve greedy", yaml: "evolve: {temperature: 0}\n"},
		{name: "evolve above 2", yaml: "evolve: {temperature: 3}\n", key: "evolve.temperature", want: "0 (greedy) or a number in [0.01, 2]"},
		{name: "top_k set", yaml: "generation: {top_k: 20}\n"},
		{name: "top_k -1 accepted", yaml: "generation: {top_k: -1}\n"},
		{name: "top_k below -1", yaml: "generation: {top_k: -2}\n", key: "generation.top_k", want: "expected 0 (all tokens; -1 means the same)"},
		{name: "min_p above 1", yaml: "generation: {min_p: 1.5}\n", key: "generation.min_p", want: "[0, 1]"},
		{name: "repetition penalty 0", yaml: "generation: {repetition_penalty: 0}\n", key: "generation.repetition_penalty", want: "> 0"},
		{name: "presence penalty -2 is allowed", yaml: "generation: {presence_penalty: -2}\n"},
		{name: "presence penalty beyond 2", yaml: "generation: {presence_penalty: 2.5}\n", key: "generation.presence_penalty", want: "[-2, 2]"},
		{name: "frequency penalty beyond -2", yaml: "generation: {frequency_penalty: -3}\n", key: "generation.frequency_penalty", want: "[-2, 2]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Load(writeConfig(t, minimal+tc.yaml))
			if tc.key == "" {
				require.NoError(t, err)
				if tc.yaml == "" {
					g := cfg.Generation
					require.Equal(t, []float64{0, 0, 1, 0, 0}, []float64{float64(g.TopK), g.MinP, g.RepetitionPenalty, g.PresencePenalty, g.FrequencyPenalty})
				}
				return
			}
			var found bool
			for _, p := range problems(t, err) {
				if p.Key == tc.key {
					found = true
					require.Contains(t, p.Message, tc.want)
				}
			}
			require.True(t, found, "no problem for %s", tc.key)
		})
	}
}
