package selfplaytest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// CookbookQuery is one statement of the SQL cookbook (README and docs/sql.md).
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

// Cookbook extracts the statements of the SQL cookbook, in order: the
// query of README.md, then every statement of docs/sql.md's sql blocks,
// each titled by its leading comment. Run them in one session, as an
// analyst's psql would: a SET applies to the queries after it.
func Cookbook(t testing.TB) []CookbookQuery {
	t.Helper()
	var section string
	for _, page := range []string{"README.md", filepath.Join("docs", "sql.md")} {
		b, err := os.ReadFile(filepath.Join(Root(), page))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "```sql\n") {
			t.Fatalf("%s has no sql block", page)
		}
		section += string(b) + "\n"
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
