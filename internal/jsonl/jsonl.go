// Package jsonl reads JSON Lines input one line at a time, for the loaders
// that must name the file and line of whatever they refuse.
package jsonl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Each calls fn with the 1-based number and the content of every non-blank
// line of r, surrounding white space trimmed (so CRLF files read the same).
// Lines may be of any length. An error from fn stops the read and is
// returned as it is; a read error is returned as "name:LINE: error".
func Each(r io.Reader, name string, fn func(n int, line []byte) error) error {
	br := bufio.NewReaderSize(r, 1<<20)
	for n := 1; ; n++ {
		raw, err := br.ReadBytes('\n')
		if line := bytes.TrimSpace(raw); len(line) > 0 {
			if ferr := fn(n, line); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, n, err)
		}
	}
}
