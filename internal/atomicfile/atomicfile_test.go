package atomicfile_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/internal/atomicfile"
)

func TestWriteReplacesWholeOrNotAtAll(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "train.jsonl")
	require.NoError(t, atomicfile.Write(path, func(w io.Writer) error {
		_, err := io.WriteString(w, strings.Repeat("x", 100_000)) // more than the buffer
		return err
	}))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Len(t, got, 100_000)
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), info.Mode().Perm())

	boom := errors.New("boom")
	err = atomicfile.Write(path, func(w io.Writer) error {
		_, _ = io.WriteString(w, "half")
		return boom
	})
	require.ErrorIs(t, err, boom)
	got, err = os.ReadFile(path)
	require.NoError(t, err)
	require.Len(t, got, 100_000, "a failed write leaves the old file")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left behind")

	require.Error(t, atomicfile.Write(filepath.Join(dir, "missing", "f"), func(io.Writer) error { return nil }))
}
