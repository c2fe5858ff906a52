package orchestrator

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// boundOrchestrator returns an orchestrator on a fresh test database and
// its own stream, with the run's queue bound as Run binds it, for
// tests that drive one stage by hand. configure adjusts the default
// configuration (the stream and a 30 s ack_wait, 3 deliveries are set).
func boundOrchestrator(t *testing.T, configure func(*config.Config)) (*Orchestrator, *pgxpool.Pool) {
	t.Helper()
	pool, _ := storetest.NewPool(t)
	natsCfg := bustest.NewStream(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	nc, js, err := bus.Connect(natsCfg, "test", log)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	cfg := config.Defaults()
	cfg.NATS.Stream = natsCfg.Stream
	cfg.Worker.AckWait, cfg.Worker.MaxDeliver = 30*time.Second, 3
	configure(&cfg)
	o := New(&cfg, pool, js, Options{}, log)
	require.NoError(t, o.checkStream(context.Background()))
	run, err := store.EnsureRun(context.Background(), pool, cfg.Run, []byte(`{}`))
	require.NoError(t, err)
	require.NoError(t, o.bindQueue(context.Background(), run.ID))
	return o, pool
}
