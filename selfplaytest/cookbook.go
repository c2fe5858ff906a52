package selfplaytest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// CookbookQuery is one statement of the README's SQL cookbook.
type CookbookQuery struct {
	// Title is the first line of the statement's leading comment, or the
	// statement itself when it has none.
	Title string
	SQL   string
}

// Setting says whether the statement is a SET for the session (the
// cookbook's advice for the queries after it), which returns no rows.
func (q CookbookQuery) Setting() bool {
	lines := strings.Split(q.SQL, "\n")
	for len(lines) > 0 && strings.HasPrefix(strings.TrimSpace(lines[0]), "--") {
		lines = lines[1:]
	}
	return len(lines) > 0 && strings.HasPrefix(strings.ToUpper(strings.TrimSpace(lines[0])), "SET ")
}

// Cookbook extracts the statements of the README's "## SQL" section, in
// order: each statement of its sql blocks, titled by its leading comment.
// Run them in one session, as an analyst's psql would: a SET applies to
// the queries after it.
func Cookbook(t testing.TB) []CookbookQuery {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "\n## SQL\n")
	if start < 0 {
		t.Fatal("README has no ## SQL section")
	}
	section := readme[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	var out []CookbookQuery
	for _, block := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(section, -1) {
		for _, stmt := range strings.Split(block[1], ";\n") {
			stmt = strings.TrimSpace(stmt)
			if stmt == "" {
				continue
			}
			title := stmt
			if strings.HasPrefix(stmt, "--") {
				title = strings.TrimSpace(strings.TrimPrefix(strings.SplitN(stmt, "\n", 2)[0], "--"))
			}
			out = append(out, CookbookQuery{Title: title, SQL: stmt})
		}
	}
	return out
}
