package cli

import (
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/selfplaytest"
)

// commandsDoc is the "## Commands" section of docs/operations.md: the rows
// of its table (cells, header and |---| left out) and the paragraph right
// after the table, cut into sentences.
type commandsDoc struct {
	rows      [][]string
	sentences []string
}

func readCommandsDoc(t *testing.T) commandsDoc {
	t.Helper()
	var doc commandsDoc
	var paragraph []string
	inTable := false
	for _, line := range selfplaytest.DocLines(t, "docs/operations.md", "## Commands") {
		blank := strings.TrimSpace(line) == ""
		if strings.HasPrefix(line, "## ") || (len(paragraph) > 0 && blank) {
			break // the section, or the paragraph, ends
		}
		switch {
		case len(paragraph) == 0 && strings.HasPrefix(line, "|"):
			inTable = true
			if cells := selfplaytest.TableCells(line); len(cells) >= 2 && cells[0] != "command" && !strings.HasPrefix(cells[0], "---") {
				doc.rows = append(doc.rows, cells)
			}
		case inTable && !blank:
			paragraph = append(paragraph, line)
		}
	}
	require.NotEmpty(t, doc.rows, "the Commands section has a table")
	require.NotEmpty(t, paragraph, "a paragraph follows the Commands table")
	doc.sentences = sentences(strings.Join(paragraph, " "))
	return doc
}

// sentences cuts text after each ". " that a capital letter or a code
// span follows.
func sentences(text string) []string {
	var out []string
	for {
		cut := -1
		for i := 0; i+2 < len(text); i++ {
			if text[i] == '.' && text[i+1] == ' ' {
				j := i + 1
				for j < len(text) && text[j] == ' ' {
					j++
				}
				if j < len(text) && (text[j] == '`' || (text[j] >= 'A' && text[j] <= 'Z')) {
					cut = i + 1
					break
				}
			}
		}
		if cut < 0 {
			return append(out, strings.TrimSpace(text))
		}
		out = append(out, strings.TrimSpace(text[:cut]))
		text = text[cut:]
	}
}

var (
	docCode = regexp.MustCompile("`([^`]*)`")
	docWord = regexp.MustCompile(`^[a-z]+$`)
	// a flag inside a code span: -c, --retry-failed (not epsilon-dpo)
	docFlagName = regexp.MustCompile(`(?:^|[\s\[(|])(--?[A-Za-z][A-Za-z0-9-]*)`)
	// `--timeout D` (default `3s`)
	docFlagDefault = regexp.MustCompile("`(--?[A-Za-z][A-Za-z0-9-]*)[^`]*`\\s*\\(default\\s+`([^`]*)`")
	// `-c` defaults to `$SELFPLAY_CONFIG`, else `selfplay.yaml`
	docFlagEnvDefault = regexp.MustCompile("`(--?[A-Za-z][A-Za-z0-9-]*)`\\s+defaults\\s+to\\s+`\\$([A-Z0-9_]+)`,\\s+else\\s+`([^`]*)`")
)

// docFlags lists the flags named in the code spans of text, as written
// (-c, --run).
func docFlags(text string) []string {
	var out []string
	for _, span := range docCode.FindAllStringSubmatch(text, -1) {
		for _, m := range docFlagName.FindAllStringSubmatch(span[1], -1) {
			if !slices.Contains(out, m[1]) {
				out = append(out, m[1])
			}
		}
	}
	return out
}

// docCommands lists the commands a sentence names in code spans, as
// `run`, `lm serve` or `selfplay lm serve`.
func docCommands(text string, commands map[string]*cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, span := range docCode.FindAllStringSubmatch(text, -1) {
		if cmd, ok := commands[strings.TrimPrefix(span[1], "selfplay ")]; ok && !slices.Contains(out, cmd) {
			out = append(out, cmd)
		}
	}
	return out
}

// docCommandPath is the command a row's first cell names: its code span's
// leading words, `selfplay lm train --data FILE …` giving "lm train".
func docCommandPath(cell string) string {
	m := docCode.FindStringSubmatch(cell)
	if m == nil {
		return ""
	}
	fields := strings.Fields(m[1])
	if len(fields) == 0 || fields[0] != "selfplay" {
		return ""
	}
	var words []string
	for _, f := range fields[1:] {
		if !docWord.MatchString(f) {
			break
		}
		words = append(words, f)
	}
	return strings.Join(words, " ")
}

// commandTree maps every command below root by its path without
// "selfplay " ("lm serve"), leaving out cobra's own help and completion.
func commandTree(root *cobra.Command) map[string]*cobra.Command {
	out := map[string]*cobra.Command{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			out[strings.TrimPrefix(sub.CommandPath(), root.Name()+" ")] = sub
			walk(sub)
		}
	}
	walk(root)
	return out
}

// lookupFlag finds a flag as the docs write it (-c or --config) among the
// command's local and inherited flags.
func lookupFlag(cmd *cobra.Command, name string) *pflag.Flag {
	if short, ok := strings.CutPrefix(name, "-"); ok && !strings.HasPrefix(short, "-") {
		if f := cmd.Flags().ShorthandLookup(short); f != nil {
			return f
		}
		return cmd.InheritedFlags().ShorthandLookup(short)
	}
	name = strings.TrimPrefix(name, "--")
	if f := cmd.Flags().Lookup(name); f != nil {
		return f
	}
	return cmd.InheritedFlags().Lookup(name)
}

// ownFlags are the flags the docs must name for cmd: its non-hidden local
// and inherited flags, but not --help or those inherited from the root.
func ownFlags(root, cmd *cobra.Command) []*pflag.Flag {
	var out []*pflag.Flag
	add := func(f *pflag.Flag) {
		if !f.Hidden && f.Name != "help" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	cmd.LocalFlags().VisitAll(add)
	cmd.InheritedFlags().VisitAll(func(f *pflag.Flag) {
		if root.PersistentFlags().Lookup(f.Name) == nil {
			add(f)
		}
	})
	return out
}

// TestDocsCommandsMatchTheCLI: the "## Commands" table of
// docs/operations.md has a row for every command, each row names an
// existing command and only its flags, and every flag of every command is
// named in the command's row or in the paragraph after the table. A
// sentence of that paragraph documents its flags for the commands it names
// (`run` and `worker` take `--metrics-addr`), or, naming none, for every
// command that has them (`-c` defaults to …).
func TestDocsCommandsMatchTheCLI(t *testing.T) {
	root := NewRoot()
	commands := commandTree(root)
	doc := readCommandsDoc(t)

	documented := map[*cobra.Command][]string{} // flags as the docs write them
	hasRow := map[*cobra.Command]bool{}
	for _, row := range doc.rows {
		path := docCommandPath(row[0])
		cmd, ok := commands[path]
		if !ok {
			t.Errorf("docs/operations.md: the row %q names no command of the CLI (%q)", row[0], path)
			continue
		}
		if hasRow[cmd] {
			t.Errorf("docs/operations.md: two rows for selfplay %s", path)
		}
		hasRow[cmd] = true
		for _, name := range docFlags(strings.Join(row, " ")) {
			if lookupFlag(cmd, name) == nil {
				t.Errorf("docs/operations.md: the row of selfplay %s names %s, which is not one of its flags", path, name)
				continue
			}
			documented[cmd] = append(documented[cmd], name)
		}
	}
	for _, s := range doc.sentences {
		named := docCommands(s, commands)
		for _, name := range docFlags(s) {
			if len(named) == 0 {
				has := 0
				for _, cmd := range commands {
					if lookupFlag(cmd, name) != nil {
						documented[cmd] = append(documented[cmd], name)
						has++
					}
				}
				if has == 0 {
					t.Errorf("docs/operations.md: after the Commands table, %s is no command's flag: %q", name, s)
				}
				continue
			}
			for _, cmd := range named {
				if lookupFlag(cmd, name) == nil {
					t.Errorf("docs/operations.md: after the Commands table, %s is said of %s, which has no such flag: %q", name, cmd.CommandPath(), s)
					continue
				}
				documented[cmd] = append(documented[cmd], name)
			}
		}
	}

	for _, path := range slices.Sorted(maps.Keys(commands)) {
		cmd := commands[path]
		if cmd.Hidden {
			continue
		}
		if cmd.Runnable() && !hasRow[cmd] {
			t.Errorf("docs/operations.md: the Commands table has no row for selfplay %s", path)
			continue
		}
		for _, f := range ownFlags(root, cmd) {
			if !slices.Contains(documented[cmd], "--"+f.Name) && (f.Shorthand == "" || !slices.Contains(documented[cmd], "-"+f.Shorthand)) {
				t.Errorf("docs/operations.md: selfplay %s --%s (%s) is named neither in its row of the Commands table nor in the paragraph after it", path, f.Name, f.Usage)
			}
		}
	}
}

// TestDocsFlagDefaults: where the Commands section of docs/operations.md
// gives a flag's default — `--timeout D` (default `3s`), or `-c` defaults
// to `$SELFPLAY_CONFIG`, else `selfplay.yaml` — the flag has it, and the
// help of -c names both.
func TestDocsFlagDefaults(t *testing.T) {
	t.Setenv("SELFPLAY_CONFIG", "")
	commands := commandTree(NewRoot())
	doc := readCommandsDoc(t)

	// A claim is a row, or a sentence of the paragraph, and the commands
	// whose flags it speaks of, by path.
	type claim struct {
		paths []string
		text  string
		row   bool
	}
	var claims []claim
	for _, row := range doc.rows {
		if path := docCommandPath(row[0]); commands[path] != nil {
			claims = append(claims, claim{paths: []string{path}, text: strings.Join(row, " "), row: true})
		}
	}
	for _, s := range doc.sentences {
		var paths []string
		for _, cmd := range docCommands(s, commands) {
			paths = append(paths, strings.TrimPrefix(cmd.CommandPath(), "selfplay "))
		}
		if len(paths) == 0 {
			paths = slices.Sorted(maps.Keys(commands))
		}
		claims = append(claims, claim{paths: paths, text: s})
	}

	checked, envChecked := 0, 0
	for _, c := range claims {
		for _, m := range docFlagDefault.FindAllStringSubmatch(c.text, -1) {
			for _, path := range c.paths {
				f := lookupFlag(commands[path], m[1])
				if f == nil {
					require.False(t, c.row, "%s is no flag of selfplay %s (see TestDocsCommandsMatchTheCLI)", m[1], path)
					continue // a sentence naming no command speaks of those that have the flag
				}
				checked++
				if f.DefValue != m[2] {
					t.Errorf("docs/operations.md: selfplay %s %s defaults to %q, the CLI to %q (%q)", path, m[1], m[2], f.DefValue, c.text)
				}
			}
		}
		for _, m := range docFlagEnvDefault.FindAllStringSubmatch(c.text, -1) {
			flag, env, fallback := m[1], m[2], m[3]
			for _, value := range []string{"", filepath.Join(t.TempDir(), "from-env.yaml")} {
				t.Setenv(env, value)
				want := value
				if want == "" {
					want = fallback
				}
				tree := commandTree(NewRoot()) // flags read the environment when made
				for _, path := range c.paths {
					f := lookupFlag(tree[path], flag)
					if f == nil {
						continue
					}
					envChecked++
					if f.DefValue != want {
						t.Errorf("docs/operations.md: with %s=%q, selfplay %s %s defaults to %q, the CLI to %q", env, value, path, flag, want, f.DefValue)
					}
					if value != "" {
						continue
					}
					fs := pflag.NewFlagSet("", pflag.ContinueOnError)
					fs.AddFlag(f)
					if help := fs.FlagUsages(); !strings.Contains(help, env) || !strings.Contains(help, fallback) {
						t.Errorf("selfplay %s %s: the help %q does not name both %s and %s", path, flag, help, env, fallback)
					}
				}
			}
		}
	}
	require.NotZero(t, checked, "the Commands section gives no `--flag` (default `V`)")
	require.NotZero(t, envChecked, "the Commands section does not say what -c defaults to")
}
