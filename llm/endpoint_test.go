package llm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBaseURLs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw, root, v1, errPart string
	}{
		{name: "with v1", raw: "http://127.0.0.1:8000/v1", root: "http://127.0.0.1:8000", v1: "http://127.0.0.1:8000/v1"},
		{name: "without v1", raw: "http://127.0.0.1:8000", root: "http://127.0.0.1:8000", v1: "http://127.0.0.1:8000/v1"},
		{name: "trailing slashes", raw: "http://127.0.0.1:8000/v1/", root: "http://127.0.0.1:8000", v1: "http://127.0.0.1:8000/v1"},
		{name: "path prefix kept", raw: "https://gw.example/models/qwen/v1", root: "https://gw.example/models/qwen", v1: "https://gw.example/models/qwen/v1"},
		{name: "surrounding space", raw: "  http://h:1/ ", root: "http://h:1", v1: "http://h:1/v1"},
		{name: "empty", raw: "", errPart: "base URL is empty"},
		{name: "no scheme", raw: "127.0.0.1:8000", errPart: "must start with http"},
		{name: "ftp", raw: "ftp://h/v1", errPart: "must start with http"},
		{name: "no host", raw: "http:///v1", errPart: "has no host"},
		{name: "credentials", raw: "http://u:secret@h:1/v1", errPart: "must not carry credentials"},
		{name: "query", raw: "http://h:1/v1?x=1", errPart: "query"},
		{name: "key in the query", raw: "http://h:1/v1?api-key=secret", errPart: `"http://h:1/v1?api-key=xxxxx" must not carry a query`},
		{name: "key in a key=value string", raw: "host=h password=secret", errPart: `"xxxxx" must start with http`},
		{name: "key in a user name, bad scheme", raw: "ftp://secret@h/v1", errPart: "must start with http"},
		{name: "key in a user name, no host", raw: "http://secret@/v1", errPart: "has no host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root, v1, err := baseURLs("policy", tc.raw)
			if tc.errPart != "" {
				require.ErrorContains(t, err, tc.errPart)
				require.NotContains(t, err.Error(), "secret")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.root, root)
			require.Equal(t, tc.v1, v1)
		})
	}
}

func TestEndpointDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      Endpoint
		want    Endpoint
		errPart string
	}{
		{
			name: "zero values take defaults",
			in:   Endpoint{Name: "policy"},
			want: Endpoint{Name: "policy", MaxConcurrency: 64, Timeout: 120 * time.Second, MaxRetries: 5},
		},
		{
			name: "explicit values kept",
			in:   Endpoint{Name: "reward", MaxConcurrency: 3, Timeout: time.Second, MaxRetries: 2},
			want: Endpoint{Name: "reward", MaxConcurrency: 3, Timeout: time.Second, MaxRetries: 2},
		},
		{
			name: "negative retries disable retrying",
			in:   Endpoint{Name: "reference", MaxRetries: -1},
			want: Endpoint{Name: "reference", MaxConcurrency: 64, Timeout: 120 * time.Second, MaxRetries: 0},
		},
		{name: "no name", in: Endpoint{}, errPart: "name is empty"},
		{name: "negative concurrency", in: Endpoint{Name: "policy", MaxConcurrency: -2}, errPart: "max_concurrency -2"},
		{name: "negative timeout", in: Endpoint{Name: "policy", Timeout: -time.Second}, errPart: "timeout -1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.in.withDefaults()
			if tc.errPart != "" {
				require.ErrorContains(t, err, tc.errPart)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestNewRewardValidatesKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ep      Endpoint
		opts    []Option
		errPart string
	}{
		{name: "classify", ep: Endpoint{Name: "reward", BaseURL: "http://h:1", Kind: KindClassify}},
		{name: "pooling", ep: Endpoint{Name: "reward", BaseURL: "http://h:1", Kind: KindPooling}},
		{name: "get_reward with template", ep: Endpoint{Name: "reward", BaseURL: "http://h:1", Kind: KindGetReward}, opts: []Option{WithChatTemplate(TemplateChatML)}},
		{name: "get_reward without template", ep: Endpoint{Name: "reward", BaseURL: "http://h:1", Kind: KindGetReward}, errPart: "set a chat template"},
		{name: "get_reward with llama3", ep: Endpoint{Name: "reward", BaseURL: "http://h:1", Kind: KindGetReward}, opts: []Option{WithChatTemplate(TemplateLlama3)}},
		// OpenRLHF 0.8.3+ reads the reward at the query's last token and
		// appends no EOS; plain turns end in blank lines only.
		{name: "get_reward with a template without end token", ep: Endpoint{Name: "reward", BaseURL: "http://h:1", Kind: KindGetReward}, opts: []Option{WithChatTemplate(TemplatePlain)}, errPart: `chat template "plain" ends an assistant turn with no end token`},
		{name: "judge", ep: Endpoint{Name: "reward", BaseURL: "http://h:1", Kind: KindJudge, Model: "judge"}},
		{name: "judge without model", ep: Endpoint{Name: "reward", BaseURL: "http://h:1", Kind: KindJudge}, errPart: "judge model name"},
		{name: "empty kind", ep: Endpoint{Name: "reward", BaseURL: "http://h:1"}, errPart: "reward kind is empty"},
		{name: "unknown kind", ep: Endpoint{Name: "reward", BaseURL: "http://h:1", Kind: "score"}, errPart: `unknown reward kind "score"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewReward(tc.ep, tc.opts...)
			if tc.errPart != "" {
				require.ErrorContains(t, err, tc.errPart)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, r)
		})
	}
}

func TestGetRewardRoute(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, base, want string }{
		{name: "server root", base: "http://h:5000", want: "http://h:5000/get_reward"},
		{name: "full route", base: "http://h:5000/get_reward", want: "http://h:5000/get_reward"},
		{name: "full route with slash", base: "http://h:5000/get_reward/", want: "http://h:5000/get_reward"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewReward(Endpoint{Name: "reward", BaseURL: tc.base, Kind: KindGetReward}, WithChatTemplate(TemplateChatML))
			require.NoError(t, err)
			require.Equal(t, tc.want, r.route)
		})
	}
}
