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
