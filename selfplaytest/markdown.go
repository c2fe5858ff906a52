package selfplaytest

import "strings"

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
