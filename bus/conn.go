package bus

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/selfplay/selfplay/config"
)

// PublishAckTimeout bounds the wait for the server's acknowledgement of a
// published task.
const PublishAckTimeout = 30 * time.Second

// Connect opens a NATS connection with the configured authentication
// (user/password, token, creds file, TLS) and returns it with its
// JetStream context. Secrets are read from the environment variables the
// configuration names and never logged. name identifies the client.
func Connect(cfg config.NATS, name string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "server", c.ConnectedUrlRedacted()) }),
	}
	if cfg.User != "" {
		pw, err := config.Secret("nats.password_env", cfg.PasswordEnv)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, nats.UserInfo(cfg.User, pw))
	}
	if cfg.TokenEnv != "" {
		tok, err := config.Secret("nats.token_env", cfg.TokenEnv)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, nats.Token(tok))
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLS.CAFile))
	}
	if cfg.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLS.CertFile, cfg.TLS.KeyFile))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w; check that it runs with JetStream (-js) and that nats.url or SELFPLAY_NATS_URL is right",
			config.RedactURL(cfg.URL), err)
	}
	// Publish acks time out rather than wait forever across an outage; the
	// orchestrator then publishes again (idempotently, by message id).
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(PublishAckTimeout))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}
