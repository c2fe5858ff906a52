package selfplaytest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TableCells splits a Markdown table line into its trimmed cells; an
// escaped \| stays inside its cell as |.
func TableCells(line string) []string {
	const pipe = "\x00"
	line = strings.ReplaceAll(line, `\|`, pipe)
	parts := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(strings.ReplaceAll(p, pipe, "|"))
	}
	return parts
}

// DocLines returns the lines of a Markdown page of the repository (path
// relative to its root) that follow the heading line heading, e.g.
// "## Commands", to the end of the page; the test fails when the page or
// the heading is missing.
func DocLines(t testing.TB, page, heading string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Root(), page))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		if line == heading {
			return lines[i+1:]
		}
	}
	t.Fatalf("%s has no %q heading", page, heading)
	return nil
}
