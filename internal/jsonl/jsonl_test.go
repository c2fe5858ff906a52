package jsonl_test

import (
	"context"
	"errors"
	"io"
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

// zeros is /dev/zero: a file with no newline that never ends.
type zeros struct{ read int }

func (z *zeros) Read(p []byte) (int, error) {
	clear(p)
	z.read += len(p)
	return len(p), nil
}

func TestEachRefusesALineOverTheLimit(t *testing.T) {
	t.Parallel()
	z := &zeros{}
	err := jsonl.EachContext(context.Background(), z, "zero.jsonl", 1<<20, func(int, []byte) error {
		t.Fatal("no line is handed over")
		return nil
	})
	var tl *jsonl.LineTooLongError
	require.ErrorAs(t, err, &tl)
	require.Equal(t, "zero.jsonl:1: line longer than 1048576 bytes (is this a JSON Lines file?)", err.Error())
	require.Less(t, z.read, 3<<20, "the read stops soon after the limit")

	// A line of exactly the limit is fine, and the default limit is used
	// when none is given.
	ok := strings.Repeat("x", 100) + "\r\n" + strings.Repeat("y", 101) + "\n"
	var got []int
	err = jsonl.EachContext(context.Background(), strings.NewReader(ok), "f.jsonl", 100, func(n int, _ []byte) error {
		got = append(got, n)
		return nil
	})
	require.ErrorAs(t, err, &tl)
	require.Equal(t, 2, tl.Line)
	require.Equal(t, []int{1}, got)
	require.ErrorAs(t, jsonl.Each(io.LimitReader(&zeros{}, jsonl.MaxLineBytes+1), "big", func(int, []byte) error { return nil }), &tl)
}

func TestEachStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	// Between lines: an endless file of short lines.
	ctx, cancel := context.WithCancel(context.Background())
	lines := 0
	endless := io.MultiReader(strings.NewReader("{}\n{}\n"), &repeat{b: []byte("{}\n")})
	err := jsonl.EachContext(ctx, endless, "f.jsonl", 0, func(int, []byte) error {
		if lines++; lines == 2 {
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 2, lines)

	// Inside one long line: the read notices between chunks.
	ctx, cancel = context.WithCancel(context.Background())
	r := &cancelAfter{r: &zeros{}, after: 4 << 20, cancel: cancel}
	err = jsonl.EachContext(ctx, r, "zero.jsonl", 1<<30, func(int, []byte) error { return nil })
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, r.read, 8<<20)
}

func TestEachDropsAByteOrderMark(t *testing.T) {
	t.Parallel()
	var got []string
	require.NoError(t, jsonl.Each(strings.NewReader(jsonl.BOM+"{\"a\":1}\n"+jsonl.BOM+"{}\n"), "bom.jsonl", func(_ int, line []byte) error {
		got = append(got, string(line))
		return nil
	}))
	require.Equal(t, []string{`{"a":1}`, jsonl.BOM + `{}`}, got, "only the file's first bytes are a byte order mark")
}

type repeat struct{ b []byte }

func (r *repeat) Read(p []byte) (int, error) {
	n := 0
	for n+len(r.b) <= len(p) {
		n += copy(p[n:], r.b)
	}
	return n, nil
}

type cancelAfter struct {
	r      io.Reader
	read   int
	after  int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.read += n; c.read >= c.after {
		c.cancel()
	}
	return n, err
}
