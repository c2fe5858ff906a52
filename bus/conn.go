package bus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
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
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w; %s", config.RedactURL(cfg.URL), err, connectHint(cfg, err))
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

// connectHint says what to check after a failed connection: the
// credentials when the server refused them, the TLS files when the
// handshake failed, else the address. It names configuration keys, never
// secrets.
func connectHint(cfg config.NATS, err error) string {
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, nats.ErrAuthorization) || strings.Contains(msg, "authorization violation") ||
		strings.Contains(msg, "authentication expired") || strings.Contains(msg, "account authentication"):
		var have []string
		if cfg.User != "" {
			have = append(have, fmt.Sprintf("user %q with the password in $%s (nats.user, nats.password_env)", cfg.User, cfg.PasswordEnv))
		}
		if cfg.TokenEnv != "" {
			have = append(have, fmt.Sprintf("the token in $%s (nats.token_env)", cfg.TokenEnv))
		}
		if cfg.CredsFile != "" {
			have = append(have, fmt.Sprintf("the creds file %s (nats.creds_file)", cfg.CredsFile))
		}
		if len(have) == 0 {
			return "the server requires authentication: set nats.user and nats.password_env, nats.token_env, or nats.creds_file"
		}
		return "the server refused " + strings.Join(have, " and ") + "; check that they match the server's configuration"
	case cfg.CredsFile != "" && errors.Is(err, fs.ErrNotExist):
		return "nats.creds_file names a file that does not exist"
	case errors.Is(err, nats.ErrSecureConnRequired):
		return "the server requires TLS: set nats.tls.ca_file (and cert_file, key_file if it verifies clients)"
	case errors.Is(err, nats.ErrSecureConnWanted):
		return "the server does not offer TLS: remove nats.tls or enable TLS on the server"
	case tlsFailure(err):
		return "the TLS handshake failed: nats.tls.ca_file must hold the CA that signed the server's certificate, and " +
			"nats.tls.cert_file and key_file a client certificate signed by the CA the server trusts (verify: true)"
	}
	return "check that it runs with JetStream (-js) and that nats.url or SELFPLAY_NATS_URL is right"
}

// tlsFailure reports whether err comes from a TLS handshake: a certificate
// the client could not verify, an alert from the server (e.g. it rejected
// the client certificate), or nats.go's own TLS error.
func tlsFailure(err error) bool {
	var (
		alert   tls.AlertError
		verify  *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	if errors.As(err, &alert) || errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "tls error") || strings.Contains(msg, "tls: ")
}
