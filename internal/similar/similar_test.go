package similar

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDistance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b string
		want int
	}{
		{"equal", "generation", "generation", 0},
		{"one deletion", "generaton", "generation", 1},
		{"transposition is two edits", "smaples", "samples", 2},
		{"empty", "", "abc", 3},
		{"substitution", "ratio", "ratios", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, Distance(tt.a, tt.b))
			require.Equal(t, tt.want, Distance(tt.b, tt.a))
		})
	}
}
