package orchestrator

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPollDelayKeepsPollingCheap(t *testing.T) {
	t.Parallel()
	// A cheap count polls at the configured interval…
	require.Equal(t, 500*time.Millisecond, pollDelay(500*time.Millisecond, 3*time.Millisecond))
	require.Equal(t, 500*time.Millisecond, pollDelay(500*time.Millisecond, 25*time.Millisecond))
	// …an expensive one (a stage of millions of tasks) waits twenty times
	// its own duration, so polling takes at most a twentieth of a core.
	require.Equal(t, 4*time.Second, pollDelay(500*time.Millisecond, 200*time.Millisecond))
}
