package llamacpptest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Model describes a tiny llama-architecture model with synthetic weights,
// small enough to write in milliseconds and to serve on one CPU thread, yet
// a real model to llama.cpp: a SentencePiece ("llama") vocabulary with byte
// fallback, ChatML special tokens and template, RMSNorm, rotary attention
// and a SwiGLU feed-forward network.
//
// The weights are random except for one steering direction: every token
// embedding holds a constant in dimension 0 that attention and the
// feed-forward layers never write to, so after the last RMSNorm dimension 0
// is large and positive whatever the context, and each output row's
// dimension-0 weight acts as a per-token bias. Byte and control tokens get
// a large negative bias, so replies are words (valid UTF-8, no NUL bytes
// PostgreSQL would refuse), and the end-of-turn token a bias that ends some
// replies before max_tokens and not others.
type Model struct {
	// Seed of the random weights; equal seeds give identical files.
	Seed uint64
	// Judge makes a grader: only the digit tokens " 1" … " 9" can be
	// generated and the end-of-turn token cannot, so every reply holds a
	// grade from 1 to 9 that depends on the conversation it grades.
	Judge bool
}

// Vocabulary layout (ids).
const (
	tokUnk      = 0
	tokBOS      = 1
	tokEOS      = 2
	tokByte0    = 3 // <0x00> … <0xFF>
	tokImStart  = tokByte0 + 256
	tokImEnd    = tokImStart + 1
	tokFirstRaw = tokImEnd + 1
)

// Words the model speaks (SentencePiece marks a leading space with ▁).
var modelWords = []string{
	"the", "a", "cat", "dog", "sun", "rain", "tree", "river", "stone", "light",
	"runs", "sleeps", "sings", "falls", "grows", "shines", "waits", "moves", "sees", "holds",
	"quick", "slow", "green", "cold", "warm", "small", "bright", "quiet", "old", "new",
	"and", "but", "so", "then", "here", "there", "now", "again", "yes", "no",
}

// ChatMLTemplate is the model's chat template (tokenizer.chat_template),
// the ChatML layout llama.cpp recognises.
const ChatMLTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
	"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// Shape of the network.
const (
	nEmbd  = 64
	nHead  = 4
	nFF    = 128
	nLayer = 2
	nCtx   = 4096
	rmsEps = 1e-5
	steer  = 4.0 // the constant in dimension 0 of every embedding
)

// vocab returns the tokens, their scores and types (llama_token_type:
// 1 normal, 2 unknown, 3 control, 6 byte).
func vocab() (tokens []string, scores []float32, types []int32) {
	add := func(tok string, score float32, typ int32) {
		tokens, scores, types = append(tokens, tok), append(scores, score), append(types, typ)
	}
	add("<unk>", 0, 2)
	add("<s>", 0, 3)
	add("</s>", 0, 3)
	for b := range 256 {
		add(fmt.Sprintf("<0x%02X>", b), 0, 6)
	}
	add("<|im_start|>", 0, 3)
	add("<|im_end|>", 0, 3)
	for i, w := range modelWords {
		add("▁"+w, float32(-i), 1)
	}
	for d := 1; d <= 9; d++ {
		add(fmt.Sprintf("▁%d", d), float32(-100-d), 1)
	}
	return tokens, scores, types
}

// Write writes the model as a GGUF file into dir and returns its path.
func (m Model) Write(dir string) (string, error) {
	name := fmt.Sprintf("tiny-llama-%d.gguf", m.Seed)
	if m.Judge {
		name = fmt.Sprintf("tiny-judge-%d.gguf", m.Seed)
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := writeGGUF(f, m.metadata(), m.tensors()); err != nil {
		f.Close()
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, f.Close()
}

func (m Model) metadata() []ggufKV {
	tokens, scores, types := vocab()
	name := "selfplay tiny llama"
	if m.Judge {
		name = "selfplay tiny judge"
	}
	return []ggufKV{
		{"general.architecture", "llama"},
		{"general.name", name},
		{"general.alignment", uint32(ggufAlignment)},
		{"llama.context_length", uint32(nCtx)},
		{"llama.embedding_length", uint32(nEmbd)},
		{"llama.block_count", uint32(nLayer)},
		{"llama.feed_forward_length", uint32(nFF)},
		{"llama.attention.head_count", uint32(nHead)},
		{"llama.attention.head_count_kv", uint32(nHead)},
		{"llama.attention.layer_norm_rms_epsilon", float32(rmsEps)},
		{"llama.rope.dimension_count", uint32(nEmbd / nHead)},
		{"llama.vocab_size", uint32(len(tokens))},
		{"tokenizer.ggml.model", "llama"},
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.scores", scores},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.bos_token_id", uint32(tokBOS)},
		{"tokenizer.ggml.eos_token_id", uint32(tokImEnd)},
		{"tokenizer.ggml.unknown_token_id", uint32(tokUnk)},
		{"tokenizer.ggml.add_bos_token", true},
		{"tokenizer.ggml.add_eos_token", false},
		{"tokenizer.chat_template", ChatMLTemplate},
	}
}

// bias is the dimension-0 output weight of token id (see Model).
func (m Model) bias(id int) float32 {
	switch {
	case id < tokFirstRaw && id != tokImEnd:
		return -12 // unknown, BOS, </s>, bytes, <|im_start|>
	case id == tokImEnd:
		if m.Judge {
			return -12
		}
		return 0.3
	case id >= tokFirstRaw+len(modelWords): // digits
		if m.Judge {
			return 0
		}
		return 0.1
	default: // words
		if m.Judge {
			return -12
		}
		return 0
	}
}

func (m Model) tensors() []ggufTensor {
	r := rand.New(rand.NewPCG(m.Seed, 0x5e1f91a7))
	nVocab := tokFirstRaw + len(modelWords) + 9
	normal := func(n int, std float64) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(r.NormFloat64() * std)
		}
		return out
	}
	ones := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = 1
		}
		return out
	}
	// matrix maps in values to out values with weights of deviation
	// scale/√in. Dimension 0 of the residual stream is the bias channel: a
	// matrix reading the stream (in == nEmbd) ignores it (column 0 is
	// zero), and one writing to it (out == nEmbd) leaves it alone (row 0 is
	// zero).
	matrix := func(name string, in, out int, scale float64) ggufTensor {
		d := normal(in*out, scale/math.Sqrt(float64(in)))
		for o := range out {
			if in == nEmbd {
				d[o*in] = 0
			}
			if out == nEmbd && o == 0 {
				for i := range in {
					d[i] = 0
				}
			}
		}
		return ggufTensor{Name: name, Dims: []uint64{uint64(in), uint64(out)}, Data: d}
	}
	qk := 1.0
	if m.Judge {
		qk = 3 // sharper attention: the grade depends on the reply graded
	}
	embd := normal(nEmbd*nVocab, 1)
	for v := range nVocab {
		embd[v*nEmbd] = steer
	}
	ts := []ggufTensor{{Name: "token_embd.weight", Dims: []uint64{nEmbd, uint64(nVocab)}, Data: embd}}
	for l := range nLayer {
		p := fmt.Sprintf("blk.%d.", l)
		ts = append(ts,
			ggufTensor{Name: p + "attn_norm.weight", Dims: []uint64{nEmbd}, Data: ones(nEmbd)},
			matrix(p+"attn_q.weight", nEmbd, nEmbd, qk),
			matrix(p+"attn_k.weight", nEmbd, nEmbd, qk),
			matrix(p+"attn_v.weight", nEmbd, nEmbd, 1),
			matrix(p+"attn_output.weight", nEmbd, nEmbd, 1),
			ggufTensor{Name: p + "ffn_norm.weight", Dims: []uint64{nEmbd}, Data: ones(nEmbd)},
			matrix(p+"ffn_gate.weight", nEmbd, nFF, 1),
			matrix(p+"ffn_up.weight", nEmbd, nFF, 1),
			matrix(p+"ffn_down.weight", nFF, nEmbd, 1),
		)
	}
	out := normal(nEmbd*nVocab, 0.3)
	for v := range nVocab {
		out[v*nEmbd] = m.bias(v)
	}
	ts = append(ts,
		ggufTensor{Name: "output_norm.weight", Dims: []uint64{nEmbd}, Data: ones(nEmbd)},
		ggufTensor{Name: "output.weight", Dims: []uint64{nEmbd, uint64(nVocab)}, Data: out},
	)
	return ts
}

// EndOfTurnID is the id of <|im_end|>, the model's end-of-turn (and
// end-of-generation) token.
const EndOfTurnID = tokImEnd
