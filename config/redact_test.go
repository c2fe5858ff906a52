package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want string
	}{
		{"postgres password", "postgres://me:s3cret@db:5432/x?sslmode=disable", "postgres://me:xxxxx@db:5432/x?sslmode=disable"},
		{"postgres user only is no secret", "postgres://me@db/x", "postgres://me@db/x"},
		{"password as a query parameter", "postgres://me@db/x?password=s3cret&sslmode=require", "postgres://me@db/x?password=xxxxx&sslmode=require"},
		{"sslpassword parameter", "postgresql://db/x?sslpassword=s3cret", "postgresql://db/x?sslpassword=xxxxx"},
		{"no secret, no change", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"},
		{"nats user and password", "nats://svc:s3cret@bus:4222", "nats://svc:xxxxx@bus:4222"},
		{"nats token as the user", "nats://s3cret@bus:4222", "nats://xxxxx@bus:4222"},
		{"tls token", "tls://s3cret@bus:4222", "tls://xxxxx@bus:4222"},
		{"nats server list", "nats://a:s3cret@h1:4222, nats://s3cret@h2:4222,nats://h3:4222", "nats://a:xxxxx@h1:4222,nats://xxxxx@h2:4222,nats://h3:4222"},
		{"bare host", "localhost", "localhost"},
		{"key=value connection string", "host=db user=me password=s3cret", "xxxxx"},
		{"unparseable", "postgres://me:s3cret@db:port/x", "xxxxx"},
		{"https user and password", "https://bob:s3cret@llm.example/v1", "https://bob:xxxxx@llm.example/v1"},
		{"https key as the user", "https://s3cret@llm.example/v1", "https://xxxxx@llm.example/v1"},
		{"api-key parameter", "https://llm.example/v1?api-key=s3cret&model=m", "https://llm.example/v1?api-key=xxxxx&model=m"},
		{"key parameters of every spelling", "http://h/?key=s3cret&API_KEY=s3cret&apikey=s3cret&x-api-key=s3cret&access_token=s3cret&client_secret=s3cret&X-Amz-Signature=s3cret&sig=s3cret&auth=s3cret", "http://h/?API_KEY=xxxxx&X-Amz-Signature=xxxxx&access_token=xxxxx&apikey=xxxxx&auth=xxxxx&client_secret=xxxxx&key=xxxxx&sig=xxxxx&x-api-key=xxxxx"},
		{"harmless parameters stay", "http://h:8000/v1?model=m&timeout=3", "http://h:8000/v1?model=m&timeout=3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := config.RedactURL(tc.raw)
			require.Equal(t, tc.want, got)
			require.NotContains(t, got, "s3cret")
		})
	}
}

func TestRedactArg(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"trainer":                            "trainer",
		"{dataset}":                          "{dataset}",
		"--lr=1e-6":                          "--lr=1e-6",
		"https://u:s3cret@hub/x":             "https://u:xxxxx@hub/x",
		"--push=https://u:s3cret@hub/x":      "--push=https://u:xxxxx@hub/x",
		"HUB=https://hub/x?token=s3cret":     "HUB=https://hub/x?token=xxxxx",
		"--url http://h/?api_key=s3cret&a=1": "--url http://h/?a=1&api_key=xxxxx",
	} {
		got := config.RedactArg(raw)
		require.Equal(t, want, got, raw)
		require.NotContains(t, got, "s3cret")
	}
}
