package metric

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzScore feeds arbitrary pools (16 bytes per item: the bit patterns of
// m_ex and m_im) through Score and Select. Valid pools must never produce a
// NaN or infinite score, ranks must be a permutation of 1..N and exactly k
// items must be selected; a pool with a non-finite margin must be rejected.
func FuzzScore(f *testing.F) {
	pool := func(vals ...float64) []byte {
		b := make([]byte, 0, 8*len(vals))
		for _, v := range vals {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
		return b
	}
	f.Add(pool(7, 1.375, 1, -0.875, 5, 0.625, 3, -1, 4, 1.125), 1.0, uint8(0), int64(42), uint16(2))
	f.Add(pool(0.1, 1, 0.1, 1, 0.1, 1), 2.5, uint8(1), int64(-1), uint16(1))
	f.Add(pool(1.5e308, -1.5e308, -1.7e308, 1e-320, 0, 5e-324), 1e6, uint8(2), int64(0), uint16(3))
	f.Add(pool(math.NaN(), 1), 1.0, uint8(3), int64(7), uint16(1))
	f.Add([]byte{}, 0.0, uint8(0), int64(1), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, w float64, metric uint8, seed int64, count uint16) {
		items := make([]Item, len(data)/16)
		allFinite := true
		for i := range items {
			ex := math.Float64frombits(binary.LittleEndian.Uint64(data[16*i:]))
			im := math.Float64frombits(binary.LittleEndian.Uint64(data[16*i+8:]))
			items[i] = Item{ID: int64(i % 7), ExplicitMargin: ex, ImplicitMargin: im}
			allFinite = allFinite && finite(ex) && finite(im)
		}
		spec := Spec{Metric: Metrics[int(metric)%len(Metrics)], ImplicitWeight: w, Seed: seed, Count: int(count) + 1}
		scored, err := Score(items, spec)
		if !allFinite || !(w >= 0 && w <= MaxImplicitWeight) {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		require.NoError(t, Select(scored, spec))
		seen := make([]bool, len(scored))
		selected := 0
		for _, s := range scored {
			for _, v := range []float64{s.ExplicitZ, s.ImplicitZ, s.AlignmentPotential, s.Score} {
				require.False(t, math.IsNaN(v) || math.IsInf(v, 0), "non-finite value in %+v", s)
			}
			require.True(t, s.Rank >= 1 && s.Rank <= len(scored) && !seen[s.Rank-1], "rank %d", s.Rank)
			seen[s.Rank-1] = true
			if s.Selected {
				selected++
			}
		}
		require.Equal(t, min(int(count)+1, len(scored)), selected)
	})
}
