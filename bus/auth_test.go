package bus_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/config"
)

// Each authentication method against a second nats-server the test starts
// with that method required: the matching configuration connects and
// moves a task through JetStream; a wrong secret and no secret are refused
// with an error that says so and does not hold the secret.

// setenv sets a variable unique to the test (t.Setenv would forbid
// t.Parallel) and returns its name.
func setenv(t *testing.T, value string) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "SELFPLAY_TEST_SECRET_" + strings.ToUpper(hex.EncodeToString(b))
	require.NoError(t, os.Setenv(name, value))
	t.Cleanup(func() { os.Unsetenv(name) })
	return name
}

func secretString(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// authCase is one server configuration with a client configuration that
// must work and ones that must not.
type authCase struct {
	conf    string             // server configuration fragment
	good    config.NATS        // URL filled in by the test
	bad     map[string]refused // name → a configuration that must be refused
	secrets []string           // must never appear in an error
}

// refused is a client configuration the server must refuse, and what the
// error must say.
type refused struct {
	cfg  config.NATS
	want string
}

func userPasswordCase(t *testing.T, _ string) authCase {
	pw := secretString(t, "pw-")
	wrong := secretString(t, "wrong-")
	return authCase{
		conf: fmt.Sprintf("authorization {\n  user: selfplay\n  password: %q\n}\n", pw),
		good: config.NATS{User: "selfplay", PasswordEnv: setenv(t, pw)},
		bad: map[string]refused{
			"wrong password": {config.NATS{User: "selfplay", PasswordEnv: setenv(t, wrong)}, `the server refused user "selfplay"`},
			"wrong user":     {config.NATS{User: "intruder", PasswordEnv: setenv(t, pw)}, `the server refused user "intruder"`},
			"anonymous":      {config.NATS{}, "the server requires authentication"},
		},
		secrets: []string{pw, wrong},
	}
}

func tokenCase(t *testing.T, _ string) authCase {
	tok := secretString(t, "tok-")
	wrong := secretString(t, "badtok-")
	return authCase{
		conf: fmt.Sprintf("authorization {\n  token: %q\n}\n", tok),
		good: config.NATS{TokenEnv: setenv(t, tok)},
		bad: map[string]refused{
			"wrong token": {config.NATS{TokenEnv: setenv(t, wrong)}, "the server refused the token in $SELFPLAY_TEST_SECRET_"},
			"anonymous":   {config.NATS{}, "the server requires authentication"},
		},
		secrets: []string{tok, wrong},
	}
}

// pki is a CA and the certificates it signed, written as PEM files.
type pki struct {
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	seen int64
}

func newPKI(t *testing.T, dir, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	p := &pki{dir: filepath.Join(dir, name), ca: ca, key: key, seen: 1}
	require.NoError(t, os.MkdirAll(p.dir, 0o700))
	writePEM(t, filepath.Join(p.dir, "ca.pem"), "CERTIFICATE", der)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}

// issue signs a leaf certificate and returns the paths of it and its key.
func (p *pki) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	p.seen++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.seen),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func tlsCase(t *testing.T, dir string) authCase {
	trusted := newPKI(t, dir, "trusted")
	rogue := newPKI(t, dir, "rogue")
	serverCert, serverKey := trusted.issue(t, "server", x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := trusted.issue(t, "client", x509.ExtKeyUsageClientAuth)
	rogueCert, rogueKey := rogue.issue(t, "client", x509.ExtKeyUsageClientAuth)
	ca := filepath.Join(trusted.dir, "ca.pem")
	rogueKeyPEM, err := os.ReadFile(rogueKey)
	require.NoError(t, err)
	return authCase{
		conf: fmt.Sprintf("tls {\n  cert_file: %q\n  key_file: %q\n  ca_file: %q\n  verify: true\n  timeout: 2\n}\n", serverCert, serverKey, ca),
		good: config.NATS{TLS: config.TLS{CAFile: ca, CertFile: clientCert, KeyFile: clientKey}},
		bad: map[string]refused{
			"client certificate from another CA": {config.NATS{TLS: config.TLS{CAFile: ca, CertFile: rogueCert, KeyFile: rogueKey}}, "the TLS handshake failed"},
			"no client certificate":              {config.NATS{TLS: config.TLS{CAFile: ca}}, "the TLS handshake failed"},
			"server not trusted":                 {config.NATS{TLS: config.TLS{CAFile: filepath.Join(rogue.dir, "ca.pem"), CertFile: clientCert, KeyFile: clientKey}}, "certificate signed by unknown authority"},
			"no TLS":                             {config.NATS{}, "the TLS handshake failed"},
		},
		secrets: []string{string(rogueKeyPEM)},
	}
}

func credsCase(t *testing.T, dir string) authCase {
	operator, err := nkeys.CreateOperator()
	require.NoError(t, err)
	opPub, err := operator.PublicKey()
	require.NoError(t, err)
	opJWT, err := jwt.NewOperatorClaims(opPub).Encode(operator)
	require.NoError(t, err)

	account := func(jetStream bool) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		require.NoError(t, err)
		pub, err := kp.PublicKey()
		require.NoError(t, err)
		claims := jwt.NewAccountClaims(pub)
		if jetStream {
			claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		token, err := claims.Encode(operator)
		require.NoError(t, err)
		return kp, pub, token
	}
	accKP, accPub, accJWT := account(true)
	_, sysPub, sysJWT := account(false) // the system account JetStream needs in operator mode
	stranger, _, _ := account(true)     // signed by the operator but never loaded

	creds := func(name string, signer nkeys.KeyPair) (string, string) {
		user, err := nkeys.CreateUser()
		require.NoError(t, err)
		pub, err := user.PublicKey()
		require.NoError(t, err)
		seed, err := user.Seed()
		require.NoError(t, err)
		claims := jwt.NewUserClaims(pub)
		claims.Name = name
		token, err := claims.Encode(signer)
		require.NoError(t, err)
		file, err := jwt.FormatUserConfig(token, seed)
		require.NoError(t, err)
		path := filepath.Join(dir, name+".creds")
		require.NoError(t, os.WriteFile(path, file, 0o600))
		return path, string(seed)
	}
	good, goodSeed := creds("worker", accKP)
	bad, badSeed := creds("intruder", stranger)
	return authCase{
		conf: fmt.Sprintf("operator: %q\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %q\n  %s: %q\n}\n",
			opJWT, sysPub, accPub, accJWT, sysPub, sysJWT),
		good: config.NATS{CredsFile: good},
		bad: map[string]refused{
			"user of an unknown account": {config.NATS{CredsFile: bad}, "the server refused the creds file " + bad},
			"no creds":                   {config.NATS{}, "the server requires authentication"},
			"missing creds file":         {config.NATS{CredsFile: filepath.Join(dir, "missing.creds")}, "nats.creds_file names a file that does not exist"},
		},
		secrets: []string{goodSeed, badSeed},
	}
}

func TestConnectWithAuthAndTLS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		make func(t *testing.T, dir string) authCase
	}{
		{"user and password", userPasswordCase},
		{"token", tokenCase},
		{"TLS with CA and client certificate", tlsCase},
		{"creds file (operator mode)", credsCase},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			c := tc.make(t, dir)
			confPath := filepath.Join(dir, "server.conf")
			require.NoError(t, os.WriteFile(confPath, []byte(c.conf), 0o600))
			srv := bustest.StartServer(t, "-c", confPath)
			log := slog.New(slog.NewTextHandler(io.Discard, nil))

			good := c.good
			good.URL, good.Stream = srv.URL, "AUTHTEST"
			nc, js, err := bus.Connect(good, "auth-test", log)
			require.NoError(t, err)
			defer nc.Close()
			if good.TLS.CAFile != "" {
				state, err := nc.TLSConnectionState()
				require.NoError(t, err, "the connection is TLS")
				require.NotEmpty(t, state.PeerCertificates)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cons, err := bus.EnsureConsumer(ctx, js, bus.StreamOptions{Name: good.Stream, Deployment: "auth", Run: 1, AckWait: 30 * time.Second, MaxDeliver: 3})
			require.NoError(t, err)
			pub := bus.NewPublisher(js, bus.Queue{Stream: good.Stream, Deployment: "auth", Run: 1})
			task := bus.Task{IterationID: 3, PromptID: 14, Kind: bus.KindGenerate}
			require.NoError(t, pub.Publish(ctx, task))
			require.NoError(t, pub.Flush(ctx))
			batch, err := cons.Fetch(1)
			require.NoError(t, err)
			var got []bus.Task
			for msg := range batch.Messages() {
				tk, err := bus.DecodeTask(msg.Data())
				require.NoError(t, err)
				got = append(got, tk)
				require.NoError(t, msg.Ack())
			}
			require.NoError(t, batch.Error())
			require.Equal(t, []bus.Task{task}, got)

			for name, bad := range c.bad {
				bad.cfg.URL, bad.cfg.Stream = srv.URL, "AUTHTEST"
				nc, _, err := bus.Connect(bad.cfg, "auth-test", log)
				if err == nil {
					nc.Close()
				}
				require.Error(t, err, "%s must be refused", name)
				msg := err.Error()
				for _, s := range c.secrets {
					require.NotContains(t, msg, s, "%s: the error shows a secret", name)
				}
				require.Contains(t, msg, bad.want, "%s", name)
			}
		})
	}
}
