package llm

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestChatTemplateRender(t *testing.T) {
	t.Parallel()
	conv := []Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}}
	tests := []struct {
		name      string
		template  ChatTemplate
		msgs      []Message
		genPrompt bool
		want      string
	}{
		{
			name: "chatml prompt", template: TemplateChatML, msgs: conv, genPrompt: true,
			want: "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
		},
		{
			name: "chatml finished turn", template: TemplateChatML, msgs: withReply(conv[1:], "Hello."),
			want: "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n",
		},
		{
			name: "llama3 prompt", template: TemplateLlama3, msgs: conv[1:], genPrompt: true,
			want: "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
		},
		{
			name: "tinylm finished turn", template: TemplateTinyLM, msgs: withReply(conv[1:], "hello ."),
			want: "<|bos|> <|user|> Hi <|end|> <|assistant|> hello . <|end|> ",
		},
		{
			name: "plain", template: TemplatePlain, msgs: conv, genPrompt: true,
			want: "System: Be brief.\n\nUser: Hi\n\nAssistant: ",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, tc.template.Render(tc.msgs, tc.genPrompt))
		})
	}
}

func TestTemplateByName(t *testing.T) {
	t.Parallel()
	got, err := TemplateByName(" ChatML ")
	require.NoError(t, err)
	require.Equal(t, "chatml", got.Name)
	_, err = TemplateByName("vicuna")
	require.ErrorContains(t, err, `unknown chat template "vicuna" (known: chatml, llama3, plain, tinylm)`)
}
