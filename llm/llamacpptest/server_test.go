package llamacpptest_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/llm/llamacpptest"
)

// The synthetic model is a real model to llama-server: it loads, is listed
// under its alias, and generates words with a log-prob and a token id per
// token, the end-of-turn token included when a reply stops (llama.cpp
// tools/server/server-common.cpp, completion_token_output::to_json).
func TestServerGenerates(t *testing.T) {
	t.Parallel()
	srv := llamacpptest.Start(t, llamacpptest.Options{Model: llamacpptest.Model{Seed: 7}, Alias: "tiny-7"})

	resp, err := http.Get(srv.URL + "/v1/models")
	require.NoError(t, err)
	var models struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&models))
	resp.Body.Close()
	require.Len(t, models.Data, 1)
	require.Equal(t, "tiny-7", models.Data[0].ID)

	body := `{"model":"tiny-7","messages":[{"role":"user","content":"tell me about the river"}],` +
		`"n":4,"logprobs":true,"max_tokens":24,"temperature":0.8,"seed":11}`
	resp, err = http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out struct {
		Choices []struct {
			FinishReason string `json:"finish_reason"`
			Message      struct {
				Content string `json:"content"`
			} `json:"message"`
			LogProbs struct {
				Content []struct {
					ID      int     `json:"id"`
					Token   string  `json:"token"`
					LogProb float64 `json:"logprob"`
				} `json:"content"`
			} `json:"logprobs"`
		} `json:"choices"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Len(t, out.Choices, 4)
	for _, c := range out.Choices {
		require.NotEmpty(t, c.LogProbs.Content)
		var text strings.Builder
		for i, tok := range c.LogProbs.Content {
			require.Less(t, tok.LogProb, 0.0)
			require.GreaterOrEqual(t, tok.ID, 0)
			last := i == len(c.LogProbs.Content)-1
			if last && c.FinishReason == "stop" {
				// The end-of-turn token: counted, but not part of the text.
				require.Equal(t, llamacpptest.EndOfTurnID, tok.ID)
				continue
			}
			text.WriteString(tok.Token)
		}
		require.Equal(t, c.Message.Content, text.String())
		require.Contains(t, []string{"stop", "length"}, c.FinishReason)
	}
}
