// Package jsonl reads JSON Lines input one line at a time, for the loaders
// that must name the file and line of whatever they refuse.
package jsonl

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// MaxLineBytes is the longest line Each reads, 16 MiB: far above any
// prompt or preference pair (max_prompt_chars defaults to 8000), and low
// enough that a file with no newlines (/dev/zero, a binary) fails at once
// instead of growing memory until the process dies.
const MaxLineBytes = 16 << 20

// BOM is the UTF-8 byte order mark some editors put at the start of a file;
// Each drops it from the first line.
const BOM = "\xef\xbb\xbf"

// LineTooLongError is returned for a line over the reader's limit.
type LineTooLongError struct {
	File string
	Line int
	Max  int
}

func (e *LineTooLongError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason())
}

// Reason is the error without its FILE:LINE prefix.
func (e *LineTooLongError) Reason() string {
	return fmt.Sprintf("line longer than %d bytes (is this a JSON Lines file?)", e.Max)
}

// Each calls fn with the 1-based number and the content of every non-blank
// line of r, surrounding white space trimmed (so CRLF files read the same)
// and a leading UTF-8 byte order mark dropped. A line longer than
// MaxLineBytes stops the read with a *LineTooLongError. An error from fn
// stops the read and is returned as it is; a read error is returned as
// "name:LINE: error".
func Each(r io.Reader, name string, fn func(n int, line []byte) error) error {
	return EachContext(context.Background(), r, name, MaxLineBytes, fn)
}

// EachContext is Each with a cancellable context, checked between lines
// and between the chunks of a long line (ctx.Err() is returned as it is),
// and a limit of maxLine bytes per line (<= 0 means MaxLineBytes).
func EachContext(ctx context.Context, r io.Reader, name string, maxLine int, fn func(n int, line []byte) error) error {
	if maxLine <= 0 {
		maxLine = MaxLineBytes
	}
	br := bufio.NewReaderSize(r, min(1<<20, maxLine+1))
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		raw, err := readLine(ctx, br, maxLine)
		if errors.Is(err, errTooLong) {
			return &LineTooLongError{File: name, Line: n, Max: maxLine}
		}
		if n == 1 {
			raw = bytes.TrimPrefix(raw, []byte(BOM))
		}
		if line := bytes.TrimSpace(raw); len(line) > 0 {
			if ferr := fn(n, line); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return err
			}
			return fmt.Errorf("%s:%d: %w", name, n, err)
		}
	}
}

var errTooLong = errors.New("line too long")

// readLine reads up to and including the next '\n' into a new slice (fn
// may keep it), never holding much more than maxLine bytes of one line.
func readLine(ctx context.Context, br *bufio.Reader, maxLine int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(bytes.TrimRight(buf, "\r\n")) > maxLine {
			return nil, errTooLong
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return buf, err
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
	}
}
