package jsonl_test

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/internal/jsonl"
)

func TestEachSkipsBlankLinesAndCountsEveryLine(t *testing.T) {
	long := strings.Repeat("x", 3<<20)                                 // longer than the reader's buffer
	in := "{\"a\":1}\r\n\n   \n\t{\"b\":2}  \n" + long + "\n{\"c\":3}" // no final newline
	type row struct {
		n    int
		line string
	}
	var got []row
	require.NoError(t, jsonl.Each(strings.NewReader(in), "f.jsonl", func(n int, line []byte) error {
		got = append(got, row{n, string(line)})
		return nil
	}))
	require.Equal(t, []row{{1, `{"a":1}`}, {4, `{"b":2}`}, {5, long}, {6, `{"c":3}`}}, got)
}

func TestEachStopsAtTheFirstError(t *testing.T) {
	stop := errors.New("bad line")
	calls := 0
	err := jsonl.Each(strings.NewReader("1\n2\n3\n"), "f.jsonl", func(n int, _ []byte) error {
		calls++
		if n == 2 {
			return stop
		}
		return nil
	})
	require.ErrorIs(t, err, stop)
	require.Equal(t, "bad line", err.Error(), "fn's error comes back as it is")
	require.Equal(t, 2, calls)

	err = jsonl.Each(iotest.TimeoutReader(strings.NewReader(strings.Repeat("{}\n", 1<<20))), "slow.jsonl", func(int, []byte) error { return nil })
	require.ErrorContains(t, err, "slow.jsonl:")
	require.ErrorIs(t, err, iotest.ErrTimeout)
}
