package orchestrator_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestSecretsNeverShown plants secrets where a deployment keeps them — the
// database password (in SELFPLAY_DATABASE_URL; the PostgreSQL is a private
// one the test starts checking passwords), the policy and reward API
// keys (api_key_env) and the NATS password or token (password_env,
// token_env; the NATS server is a second one the test starts requiring
// them) — runs a two-iteration loop with debug logging, and then looks for
// the secrets in every process's output, in `selfplay status`, `config
// check`, `export` and `report`, in every row of every table (stored config
// snapshots included), in every file the run wrote, and in the errors of
// commands given a wrong secret or an unreachable server.
func TestSecretsNeverShown(t *testing.T) {
	t.Parallel()
	// One password-checking server for both cases, each with its own
	// database: the planted password is the one the server verifies.
	pg := storetest.StartPasswordServer(t)
	tests := []struct {
		name   string
		server func(secret string) string // nats-server authorization block
		client func(env string) string    // the schedule's nats auth keys
	}{
		{
			name:   "NATS user and password",
			server: func(s string) string { return fmt.Sprintf("authorization {\n  user: selfplay\n  password: %q\n}\n", s) },
			client: func(env string) string { return "user: selfplay, password_env: " + env },
		},
		{
			name:   "NATS token",
			server: func(s string) string { return fmt.Sprintf("authorization {\n  token: %q\n}\n", s) },
			client: func(env string) string { return "token_env: " + env },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			secret := func(prefix string) string {
				b := make([]byte, 10)
				_, _ = rand.Read(b)
				return prefix + hex.EncodeToString(b)
			}
			dbPassword, policyKey, rewardKey, natsSecret, wrongSecret, wrongDBPassword :=
				pg.Password, secret("sk-policy-"), secret("sk-reward-"), secret("nats-"), secret("wrong-"), secret("wrongpw")
			secrets := map[string]string{"database password": dbPassword, "policy API key": policyKey,
				"reward API key": rewardKey, "NATS secret": natsSecret, "wrong NATS secret": wrongSecret,
				"wrong database password": wrongDBPassword}

			dir := t.TempDir()
			natsConf := filepath.Join(dir, "nats.conf")
			require.NoError(t, os.WriteFile(natsConf, []byte(tc.server(natsSecret)), 0o600))
			srv := bustest.StartServer(t, "-c", natsConf)

			dbURL := pg.NewDatabase(t)
			u, err := url.Parse(dbURL)
			require.NoError(t, err)
			pw, ok := u.User.Password()
			require.True(t, ok && pw == dbPassword, "the database URL carries the server's password")
			l := startLoop(t, loopOptions{prompts: 8, samples: 3, ackWait: "30s", workerCon: 4, nats: srv.URL, db: dbURL})
			// The database password comes from the environment, as the
			// README recommends, never from the file.
			noPassword := *u
			noPassword.User = url.User(u.User.Username())
			editFile(t, l.cfgPath, func(s string) string {
				s = strings.Replace(s, fmt.Sprintf("%q", dbURL), fmt.Sprintf("%q", noPassword.String()), 1)
				s = strings.Replace(s, "nats: {url:", "nats: {"+tc.client("SECRET_TEST_NATS")+", url:", 1)
				s = strings.Replace(s, "policy: {base_url:", "policy: {api_key_env: SECRET_TEST_POLICY_KEY, base_url:", 1)
				return strings.Replace(s, "reward: {base_url:", "reward: {api_key_env: SECRET_TEST_REWARD_KEY, base_url:", 1)
			})
			env := []string{
				"SELFPLAY_DATABASE_URL=" + u.String(),
				"SECRET_TEST_NATS=" + natsSecret,
				"SECRET_TEST_POLICY_KEY=" + policyKey,
				"SECRET_TEST_REWARD_KEY=" + rewardKey,
			}

			w := selfplaytest.Start(t, "worker", env, "worker", "-c", l.cfgPath, "--log-level", "debug")
			run := selfplaytest.Start(t, "orchestrator", env, "run", "-c", l.cfgPath, "--log-level", "debug")
			require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))
			require.EqualValues(t, 2, l.count(t, `SELECT count(*) FROM iterations WHERE stage = 'done'`),
				"the run finished, so every secret was in use")

			// Everything a person or a program gets to see.
			seen := map[string]string{
				"tinylm log":       l.lm.Output(),
				"worker log":       w.Output(),
				"orchestrator log": run.Output(),
			}
			command := func(name string, env []string, wantOK bool, args ...string) string {
				cmd := exec.Command(selfplaytest.Binary(t), args...)
				cmd.Env = append(os.Environ(), env...)
				cmd.Dir = l.dir
				out, err := cmd.CombinedOutput()
				if wantOK {
					require.NoError(t, err, "%s: %s", name, out)
				} else {
					require.Error(t, err, "%s must fail: %s", name, out)
				}
				seen[name] = string(out)
				return string(out)
			}
			check := command("config check", env, true, "config", "check", "-c", l.cfgPath)
			require.Contains(t, check, config.Redacted, "the database password is shown redacted")
			require.Contains(t, check, "SECRET_TEST_POLICY_KEY", "key variables are named")
			command("status", env, true, "status", "-c", l.cfgPath)
			command("export", env, true, "export", "-c", l.cfgPath, "--iteration", "iter0", "--out", filepath.Join(l.dir, "re-export"), "--metric", "explicit_margin")
			command("report", env, true, "report", "-c", l.cfgPath, "--iteration", "iter1", "--out", filepath.Join(l.dir, "report.html"))

			// Errors: a wrong NATS secret, an unreachable database.
			badEnv := append(append([]string(nil), env...), "SECRET_TEST_NATS="+wrongSecret)
			out := command("worker with a wrong NATS secret", badEnv, false, "worker", "-c", l.cfgPath, "--log-level", "debug")
			require.Contains(t, out, "the server refused")
			down := *u
			down.Host = selfplaytest.FreeAddr(t)
			downEnv := append(append([]string(nil), env...), "SELFPLAY_DATABASE_URL="+down.String())
			out = command("status with the database down", downEnv, false, "status", "-c", l.cfgPath)
			require.Contains(t, out, down.Host, "the error names the server")
			wrongPW := *u
			wrongPW.User = url.UserPassword(u.User.Username(), wrongDBPassword)
			wrongPWEnv := append(append([]string(nil), env...), "SELFPLAY_DATABASE_URL="+wrongPW.String())
			out = command("status with a wrong database password", wrongPWEnv, false, "status", "-c", l.cfgPath)
			require.Contains(t, out, "28P01", "the server refused the password (invalid_password)")
			schedule, err := os.ReadFile(l.cfgPath)
			require.NoError(t, err)
			require.NotContains(t, string(schedule), dbPassword, "the schedule file holds no password")

			// Every row of every table, the stored config snapshots included.
			ctx := context.Background()
			rows, err := l.pool.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`)
			require.NoError(t, err)
			tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
			require.NoError(t, err)
			require.Contains(t, tables, "runs")
			for _, table := range tables {
				rows, err := l.pool.Query(ctx, `SELECT t::text FROM `+pgx.Identifier{table}.Sanitize()+` t`)
				require.NoError(t, err)
				texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
				require.NoError(t, err)
				seen["table "+table] = strings.Join(texts, "\n")
			}
			var runConfig string
			require.NoError(t, l.pool.QueryRow(ctx, `SELECT config::text FROM runs`).Scan(&runConfig))
			require.Contains(t, runConfig, "SECRET_TEST_REWARD_KEY", "the snapshot names the key variable")

			// Every file the run and the commands wrote.
			files := 0
			require.NoError(t, filepath.WalkDir(l.dir, func(path string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				b, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				seen["file "+path] = string(b)
				files++
				return nil
			}))
			require.GreaterOrEqual(t, files, 8, "exports, manifests, reports, hook log")

			for where, text := range seen {
				for what, s := range secrets {
					require.NotContains(t, text, s, "the %s shows up in the %s", what, where)
				}
			}
		})
	}
}
