// Package llmtest holds what benchmarks of the clients and the worker share:
// replies shaped as vLLM writes them, and a server that answers with them
// while spending next to no CPU, so a benchmark measures the client side.
package llmtest

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// ChatReply is a vLLM chat-completions reply of n choices of tokens tokens
// each, as vLLM writes it with logprobs and return_token_ids: every log-prob
// entry carries its token, its log-prob (a float32 printed at float64
// precision), its UTF-8 bytes and an empty top_logprobs list. The text is
// drawn from a fixed seed, so every call returns the same bytes; choices
// differ from each other. Each choice's finish reason is "length".
func ChatReply(n, tokens int) []byte {
	return ChatReplyIDs(n, tokens, true)
}

// ChatReplyIDs is ChatReply with each choice's token_ids as vLLM writes
// them with return_token_ids (tokenIDs true) or without it (null: vLLM's
// chat_completion/serving.py sends output.token_ids only when the request
// asks). The two differ in nothing else.
func ChatReplyIDs(n, tokens int, tokenIDs bool) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{" the", " garden", " water", " early", " morning", ",", " and", " mulch", " keeps", " soil", " cool", "."}
	var b strings.Builder
	b.WriteString(`{"id":"chatcmpl-bench","object":"chat.completion","created":1760000000,"model":"Qwen/Qwen2.5-0.5B-Instruct","choices":[`)
	for c := range n {
		if c > 0 {
			b.WriteByte(',')
		}
		var content strings.Builder
		toks := make([]string, tokens)
		ids := make([]int, tokens)
		for i := range toks {
			k := rng.IntN(len(words))
			toks[i], ids[i] = words[k], 1000+k
			content.WriteString(toks[i])
		}
		fmt.Fprintf(&b, `{"index":%d,"message":{"role":"assistant","content":%q,"refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[],"reasoning":null},"logprobs":{"content":[`, c, content.String())
		for i, tok := range toks {
			if i > 0 {
				b.WriteByte(',')
			}
			lp := float64(float32(-rng.ExpFloat64()))
			fmt.Fprintf(&b, `{"token":%q,"logprob":%s,"bytes":[`, tok, strconv.FormatFloat(lp, 'g', -1, 64))
			for j := range len(tok) {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strconv.Itoa(int(tok[j])))
			}
			b.WriteString(`],"top_logprobs":[]}`)
		}
		b.WriteString(`]},"finish_reason":"length","stop_reason":null,"token_ids":`)
		if !tokenIDs {
			b.WriteString(`null}`)
			continue
		}
		b.WriteByte('[')
		for i, id := range ids {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(id))
		}
		b.WriteString(`]}`)
	}
	fmt.Fprintf(&b, `],"service_tier":null,"system_fingerprint":null,"usage":{"prompt_tokens":24,"total_tokens":%d,"completion_tokens":%d,"prompt_tokens_details":null},"prompt_logprobs":null,"prompt_token_ids":null,"kv_transfer_params":null}`, 24+n*tokens, n*tokens)
	return []byte(b.String())
}
