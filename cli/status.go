package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/config"
)

func newStatusCmd() *cobra.Command {
	var path, run string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show runs and their iterations (stage, task counts, pairs, selection sizes) and the workers pulling now",
		Args:  cobra.NoArgs,
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&run, "run", "", "only this run (default: every run)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		cfg, pool, err := databaseOnly(cmd, path, true)
		if err != nil {
			return err
		}
		defer pool.Close()
		rows, err := pool.Query(ctx, `
			SELECT r.name, i.ordinal, i.name, i.stage, i.policy_model,
			       (SELECT count(*) FROM iteration_prompts ip WHERE ip.iteration_id = i.id),
			       count(t.*) FILTER (WHERE t.kind = 'generate' AND t.status = 'done'),
			       count(t.*) FILTER (WHERE t.kind = 'generate' AND t.status = 'failed'),
			       count(t.*) FILTER (WHERE t.kind = 'generate' AND t.status = 'pending'),
			       (SELECT count(*) FROM pairs p WHERE p.iteration_id = i.id),
			       (SELECT count(*) FROM pairs p WHERE p.iteration_id = i.id AND p.selected),
			       count(t.*) FILTER (WHERE t.kind = 'evolve' AND t.status = 'done'),
			       coalesce(i.error, '')
			FROM runs r JOIN iterations i ON i.run_id = r.id
			LEFT JOIN tasks t ON t.iteration_id = i.id
			WHERE $1 = '' OR r.name = $1
			GROUP BY r.name, i.id ORDER BY r.name, i.ordinal`, run)
		if err != nil {
			return err
		}
		defer rows.Close()
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RUN\tITERATION\tSTAGE\tPOLICY\tPROMPTS\tDONE\tFAILED\tPENDING\tPAIRS\tSELECTED\tEVOLVED\tERROR")
		n := 0
		for rows.Next() {
			var runName, name, stage, policy, errText string
			var ordinal int
			var prompts, done, failed, pending, pairs, selected, evolved int64
			if err := rows.Scan(&runName, &ordinal, &name, &stage, &policy, &prompts, &done, &failed, &pending, &pairs, &selected, &evolved, &errText); err != nil {
				return err
			}
			if len(errText) > 60 {
				errText = errText[:57] + "..."
			}
			fmt.Fprintf(tw, "%s\t%d:%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", runName, ordinal, name, stage, policy, prompts, done, failed, pending, pairs, selected, evolved, errText)
			n++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if n == 0 && run != "" {
			names, err := runNames(ctx, pool)
			if err != nil {
				return err
			}
			return fmt.Errorf("run %q does not exist in this database: %s", run, listRuns(names))
		}
		if n == 0 {
			fmt.Fprintln(cmd.OutOrStdout(), "no runs yet: start one with `selfplay run -c FILE`")
			return nil
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), workersLine(ctx, cfg, pool))
		return nil
	}
	return cmd
}

// workersLine says who pulls this deployment's tasks now, read from the
// JetStream consumer of each run that has one: pull requests waiting (a
// worker with free slots and nothing to take keeps one), messages in flight and
// messages queued. The database needs nothing from NATS, so a NATS that
// cannot be asked is reported on the line, not as the command's error.
func workersLine(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool) string {
	var token string
	// A plain read (not store.DeploymentToken, which renews the token of
	// a copied database): status may run as the read-only analyst role.
	if err := pool.QueryRow(ctx, `SELECT token FROM deployment`).Scan(&token); err != nil {
		return fmt.Sprintf("workers: unknown (read the deployment token: %v)", err)
	}
	runs := map[int64]string{}
	rows, err := pool.Query(ctx, `SELECT id, name FROM runs`)
	if err == nil {
		var id int64
		var name string
		_, err = pgx.ForEachRow(rows, []any{&id, &name}, func() error { runs[id] = name; return nil })
	}
	if err != nil {
		return fmt.Sprintf("workers: unknown (read the runs: %v)", err)
	}
	nc, js, err := bus.Connect(cfg.NATS, "selfplay-status", slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Sprintf("workers: unknown (%v)", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	queues := bus.NewQueues(js, cfg.NATS.Stream, token)
	if _, err := queues.Refresh(ctx); err != nil {
		return fmt.Sprintf("workers: unknown (%v)", err)
	}
	if len(queues.List()) == 0 {
		return fmt.Sprintf("workers: none pulling (no run has a consumer on stream %s now: `selfplay run` makes one, and removes it when the run is done)", cfg.NATS.Stream)
	}
	var b strings.Builder
	for i, q := range queues.List() {
		if i > 0 {
			b.WriteByte('\n')
		}
		where := fmt.Sprintf("run %s, consumer %s on stream %s", runs[q.Run], q.Name, cfg.NATS.Stream)
		info := q.Info // as the listing just read it
		fmt.Fprintf(&b, "workers: %d pull requests waiting (idle workers), %d tasks in flight, %d queued (%s)",
			info.NumWaiting, info.NumAckPending, info.NumPending, where)
	}
	return b.String()
}
