package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Redacted is what stands in for a secret wherever configuration is shown.
const Redacted = "xxxxx"

// RedactURL replaces the secrets of a connection URL with Redacted: the
// password; the user part of a NATS URL that has no password (nats.go
// sends it as a token); and the password, sslpassword and token query
// parameters libpq and pgx accept. A comma-separated list (NATS servers) is
// redacted URL by URL. A string that does not parse as a URL, or one
// without a scheme that holds '@', '=' or a space (a malformed URL or a
// key=value connection string), is returned whole-redacted, since a
// secret may hide in it.
func RedactURL(raw string) string {
	if strings.Contains(raw, ",") {
		parts := strings.Split(raw, ",")
		for i, p := range parts {
			parts[i] = RedactURL(strings.TrimSpace(p))
		}
		return strings.Join(parts, ",")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Redacted
	}
	if u.Scheme == "" {
		if strings.ContainsAny(raw, "@= ") {
			return Redacted
		}
		return raw
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Redacted)
		} else if natsSchemes[strings.ToLower(u.Scheme)] && u.User.Username() != "" {
			u.User = url.User(Redacted)
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for k := range q {
			if secretParams[strings.ToLower(k)] {
				q[k] = []string{Redacted}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

// natsSchemes are the URL schemes of NATS servers, whose lone user name is
// a token.
var natsSchemes = map[string]bool{"nats": true, "tls": true, "ws": true, "wss": true}

// secretParams are query parameters that carry a secret.
var secretParams = map[string]bool{"password": true, "sslpassword": true, "token": true, "auth_token": true}

// Redact returns a copy of c safe to print, log or store: the database URL
// loses its password. API keys, NATS passwords and tokens are never in the
// configuration in the first place, only the names of the variables that
// hold them.
func (c *Config) Redact() Config {
	out := *c
	out.Database.URL = RedactURL(c.Database.URL)
	out.NATS.URL = RedactURL(c.NATS.URL)
	return out
}

// YAML renders the redacted, resolved configuration with every default
// filled in, as `selfplay config check` prints it.
func (c *Config) YAML() ([]byte, error) {
	r := c.Redact()
	return yaml.Marshal(toMap(reflect.ValueOf(r)))
}

// Snapshot is the redacted configuration as JSON, stored with the run.
func (c *Config) Snapshot() ([]byte, error) {
	r := c.Redact()
	return json.Marshal(toMap(reflect.ValueOf(r)))
}

// Hash is the sha256 of the snapshot, hex-encoded; exports record it.
func (c *Config) Hash() string {
	b, err := c.Snapshot()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Secret reads the secret named by an *_env key from the environment. An
// empty name means no secret; a named but unset variable is an error that
// names the variable (never its value).
func Secret(key, envName string) (string, error) {
	if envName == "" {
		return "", nil
	}
	v, ok := os.LookupEnv(envName)
	if !ok || v == "" {
		return "", fmt.Errorf("%s names environment variable %s, which is not set", key, envName)
	}
	return v, nil
}
