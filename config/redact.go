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

// RedactURL replaces the secrets of a URL with Redacted: the password;
// the user part of a URL that has no password, except for PostgreSQL,
// where it is a role name (NATS sends a lone user as a token, and HTTP
// servers take API keys that way too); and every query parameter whose
// name says it holds a secret (see IsSecretParam: api-key, key, token,
// password, sslpassword, secret, signature, …). A comma-separated list
// (NATS servers) is redacted URL by URL. A string that does not parse as
// a URL, or one without a scheme that holds '@', '=' or a space (a
// malformed URL or a key=value connection string), is returned
// whole-redacted, since a secret may hide in it.
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
		} else if !postgresSchemes[strings.ToLower(u.Scheme)] && u.User.Username() != "" {
			u.User = url.User(Redacted)
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for k := range q {
			if IsSecretParam(k) {
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

// postgresSchemes are the URL schemes of PostgreSQL, whose lone user name
// is a role, not a secret.
var postgresSchemes = map[string]bool{"postgres": true, "postgresql": true}

// secretWords are what a query parameter's name holds when its value is a
// secret: api-key, api_key, apikey, key, x-api-key, token, access_token,
// auth_token, password, sslpassword, secret, client_secret, sig,
// signature, X-Amz-Signature, credential, auth, code.
var secretWords = []string{"key", "token", "pass", "pwd", "secret", "sig", "credential", "auth", "code"}

// IsSecretParam says whether a URL query parameter of this name carries a
// secret: its name, lower-cased, contains one of secretWords. A harmless
// parameter caught by this (sslkey, a file path) is only hidden from view.
func IsSecretParam(name string) bool {
	n := strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// RedactArg redacts the URLs inside one argument of a command line: the
// whole argument when it is a URL, or the value of --flag=URL or
// name=URL. Other arguments come back as they are.
func RedactArg(arg string) string {
	i := strings.Index(arg, "://")
	if i < 0 {
		return arg
	}
	start := strings.LastIndexAny(arg[:i], "= ") + 1
	return arg[:start] + RedactURL(arg[start:])
}

// Redact returns a copy of c safe to print, log or store: every URL in it
// goes through RedactURL (database.url, nats.url, each endpoint's
// base_url, and URLs in the arguments of hooks.train, through RedactArg).
// API keys, NATS passwords and tokens belong in the environment, named by
// the *_env keys, never in the configuration; this is for those put in a
// URL anyway.
func (c *Config) Redact() Config {
	out := *c
	out.Database.URL = RedactURL(c.Database.URL)
	out.NATS.URL = RedactURL(c.NATS.URL)
	if c.Endpoints != nil {
		out.Endpoints = make(map[string]Endpoint, len(c.Endpoints))
		for name, ep := range c.Endpoints {
			ep.BaseURL = RedactURL(ep.BaseURL)
			out.Endpoints[name] = ep
		}
	}
	out.Hooks.Train = RedactArgs(c.Hooks.Train)
	return out
}

// RedactArgs is RedactArg of each argument, in a new slice.
func RedactArgs(argv []string) []string {
	if argv == nil {
		return nil
	}
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = RedactArg(a)
	}
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
