// Package docs_test keeps the documentation from rotting: every link in
// README.md, docs/*.md and tinylm/README.md must lead somewhere, and every
// block marked runnable must run.
package docs_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/selfplaytest"
)

// page is a markdown file as the checks see it.
type page struct {
	links   []link          // links and images outside code
	anchors map[string]bool // heading anchors, as GitHub makes them
	blocks  []block         // fenced code blocks
}

type link struct {
	line   int
	target string
}

type block struct {
	line int    // line of the opening fence
	info string // info string, e.g. "sh runnable"
	body string
}

var (
	fenceRE    = regexp.MustCompile("^[ \t]*(`{3,}|~{3,})(.*)$")
	headingRE  = regexp.MustCompile(`^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$`)
	refDefRE   = regexp.MustCompile(`(?m)^ {0,3}\[[^\]^][^\]]*\]:[ \t]*<?([^\s>]+)`)
	blankRE    = regexp.MustCompile(`\n[ \t]*\n`)
	inlineRE   = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)|<[^>]+>`)
	absoluteRE = regexp.MustCompile(`(?i)^(https?|mailto):`)
)

// parse splits a markdown file into fenced blocks, headings and links.
// Fenced blocks and inline code spans hold neither headings nor links.
func parse(src string) *page {
	p := &page{anchors: map[string]bool{}}
	seen := map[string]int{}
	lines := strings.Split(src, "\n")
	var fence string // the open fence, "" outside a block
	var body []string
	for i, line := range lines {
		m := fenceRE.FindStringSubmatch(line)
		if m != nil && m[1][0] == '`' && strings.Contains(m[2], "`") {
			m = nil // "```x```" is inline code, not a fence
		}
		switch {
		case fence == "" && m != nil:
			fence, body = m[1], nil
			p.blocks = append(p.blocks, block{line: i + 1, info: strings.TrimSpace(m[2])})
		case fence != "" && m != nil && m[1][0] == fence[0] && len(m[1]) >= len(fence) && strings.TrimSpace(m[2]) == "":
			fence = ""
			p.blocks[len(p.blocks)-1].body = strings.Join(body, "")
		case fence != "":
			body = append(body, line+"\n")
		default:
			if h := headingRE.FindStringSubmatch(line); h != nil {
				s := slug(h[1])
				for base := s; p.anchors[s]; { // GitHub's numbering of duplicates
					seen[base]++
					s = fmt.Sprintf("%s-%d", base, seen[base])
				}
				p.anchors[s] = true
			}
			continue
		}
		lines[i] = "" // fences and their contents are not prose
	}
	if fence != "" { // an unclosed block runs to the end
		p.blocks[len(p.blocks)-1].body = strings.Join(body, "")
	}
	text := maskCode(strings.Join(lines, "\n"))
	lineOf := func(off int) int { return 1 + strings.Count(text[:off], "\n") }
	for i := 0; ; {
		k := strings.Index(text[i:], "](")
		if k < 0 {
			break
		}
		k += i
		i = k + 2
		if target, ok := destination(text[k+2:]); ok && opened(text[:k]) {
			p.links = append(p.links, link{lineOf(k), target})
		}
	}
	for _, m := range refDefRE.FindAllStringSubmatchIndex(text, -1) {
		p.links = append(p.links, link{lineOf(m[2]), text[m[2]:m[3]]})
	}
	return p
}

// maskCode blanks inline code spans, keeping newlines so that offsets keep
// their line numbers. A span ends at the next backtick run of the same
// length within its paragraph; an unclosed run is literal.
func maskCode(s string) string {
	b := []byte(s)
	for i := 0; i < len(b); {
		if b[i] != '`' {
			i++
			continue
		}
		n := runLen(b, i)
		end := len(b)
		if loc := blankRE.FindIndex(b[i:]); loc != nil {
			end = i + loc[0]
		}
		j := i + n
		for j < end && (b[j] != '`' || runLen(b, j) != n) {
			if b[j] == '`' {
				j += runLen(b, j)
			} else {
				j++
			}
		}
		if j >= end {
			i += n
			continue
		}
		for k := i; k < j+n; k++ {
			if b[k] != '\n' {
				b[k] = ' '
			}
		}
		i = j + n
	}
	return string(b)
}

func runLen(b []byte, i int) int {
	n := 0
	for i+n < len(b) && b[i+n] == '`' {
		n++
	}
	return n
}

// opened reports whether the text before a "](" holds the link text's
// unmatched "[" within the same paragraph.
func opened(before string) bool {
	depth := 0
	for i := len(before) - 1; i >= 0; i-- {
		switch before[i] {
		case ']':
			depth++
		case '[':
			if depth == 0 {
				return true
			}
			depth--
		case '\n':
			if i > 0 && before[i-1] == '\n' {
				return false
			}
		}
	}
	return false
}

// destination reads a link destination after "](": <...>, or up to
// whitespace (a title follows) or the unbalanced ")".
func destination(s string) (string, bool) {
	s = strings.TrimLeft(s, " \t\n")
	if strings.HasPrefix(s, "<") {
		end := strings.IndexAny(s, ">\n")
		return s[1:max(end, 1)], end > 0 && s[end] == '>'
	}
	depth := 0
	for i, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth == 0:
			return s[:i], true
		case r == ')':
			depth--
		case unicode.IsSpace(r):
			return s[:i], depth == 0
		}
	}
	return "", false
}

// slug is the anchor GitHub gives a heading: its text lowercased, without
// markup and every character but letters, digits, spaces, "-" and "_", and
// spaces turned into "-". Leading "#" marks are accepted and dropped.
func slug(heading string) string {
	heading = strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(heading), "#"))
	heading = inlineRE.ReplaceAllString(heading, "$1") // [text](url) and ![alt](src) read as their text; HTML tags go
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsDigit(r) || unicode.Is(unicode.Pc, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// site loads each markdown page once, for its links and for the anchors
// other pages link to.
type site struct {
	root  string
	pages map[string]*page
}

func (s *site) page(path string) (*page, error) {
	if p, ok := s.pages[path]; ok {
		return p, nil
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s.pages[path] = parse(string(src))
	return s.pages[path], nil
}

// resolve checks a link target of the markdown file from and returns the
// file or folder it leads to ("" for an absolute URL).
func (s *site) resolve(from, target string) (string, error) {
	if absoluteRE.MatchString(target) {
		return "", nil
	}
	if target == "" {
		return "", errors.New("empty target")
	}
	ref, frag, _ := strings.Cut(target, "#")
	ref, _, _ = strings.Cut(ref, "?")
	ref, err1 := url.PathUnescape(ref)
	frag, err2 := url.PathUnescape(frag)
	if err := errors.Join(err1, err2); err != nil {
		return "", err
	}
	dest := from
	switch {
	case strings.HasPrefix(ref, "/"): // GitHub reads a leading / from the repository root
		dest = filepath.Join(s.root, filepath.FromSlash(ref))
	case ref != "":
		dest = filepath.Join(filepath.Dir(from), filepath.FromSlash(ref))
	}
	if rel, err := filepath.Rel(s.root, dest); err != nil || !filepath.IsLocal(rel) {
		return "", errors.New("leads out of the repository")
	}
	fi, err := os.Stat(dest)
	switch {
	case err != nil:
		return "", errors.New("no such file or folder")
	case strings.HasSuffix(ref, "/") && !fi.IsDir():
		return "", errors.New("not a folder")
	case frag == "" || fi.IsDir() || !strings.EqualFold(filepath.Ext(dest), ".md"):
		return dest, nil
	}
	p, err := s.page(dest)
	if err != nil {
		return "", err
	}
	if !p.anchors[frag] {
		return "", fmt.Errorf("no heading with anchor #%s in %s", frag, filepath.Base(dest))
	}
	return dest, nil
}

// docPages lists docs/*.md.
func docPages(t *testing.T, root string) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, docs)
	return docs
}

// TestLinksResolve checks every link and image in README.md, docs/*.md and
// tinylm/README.md, outside code: a relative target must exist (a trailing
// "/" must be a folder), and an anchor must be a heading of its page as
// GitHub names it. Pages move and headings get renamed; this is what keeps
// "see X" from leading nowhere. It also checks that README.md links every
// page of docs/, since a page nobody reaches from the front door is lost.
// All broken links are reported, each as file:line.
func TestLinksResolve(t *testing.T) {
	root := selfplaytest.Root()
	s := &site{root: root, pages: map[string]*page{}}
	readme := filepath.Join(root, "README.md")
	docs := docPages(t, root)
	linked := map[string]bool{}
	for _, path := range append(append([]string{readme}, docs...), filepath.Join(root, "tinylm", "README.md")) {
		p, err := s.page(path)
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, path)
		for _, l := range p.links {
			dest, err := s.resolve(path, l.target)
			if err != nil {
				t.Errorf("%s:%d: (%s): %v", filepath.ToSlash(rel), l.line, l.target, err)
			} else if path == readme {
				linked[dest] = true
			}
		}
	}
	for _, d := range docs {
		if !linked[d] {
			rel, _ := filepath.Rel(root, d)
			t.Errorf("%s: not linked from README.md", filepath.ToSlash(rel))
		}
	}
}

// TestRunnableBlocks runs the examples the documentation promises work: in
// README.md and docs/*.md, a block fenced as "```sh runnable" runs under
// bash -euo pipefail from the repository root, with the selfplay binary
// first on PATH, and a "```yaml runnable" block is a complete schedule that
// `selfplay config check` must accept. Each must succeed within two minutes.
// A runnable language other than sh or yaml fails, and so does finding no
// runnable block at all, so the check cannot quietly stop checking.
func TestRunnableBlocks(t *testing.T) {
	root := selfplaytest.Root()
	bin := selfplaytest.Binary(t)
	path := filepath.Dir(bin) + string(os.PathListSeparator) + os.Getenv("PATH")
	s := &site{root: root, pages: map[string]*page{}}
	ran := 0
	for _, file := range append([]string{filepath.Join(root, "README.md")}, docPages(t, root)...) {
		p, err := s.page(file)
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, file)
		for _, b := range p.blocks {
			info := strings.Fields(b.info)
			if len(info) < 2 || !slices.Contains(info[1:], "runnable") {
				continue
			}
			ran++
			t.Run(fmt.Sprintf("%s:%d", filepath.ToSlash(rel), b.line), func(t *testing.T) {
				var args []string
				switch info[0] {
				case "sh":
					args = []string{"bash", "-euo", "pipefail", "-c", b.body}
				case "yaml":
					schedule := filepath.Join(t.TempDir(), "schedule.yaml")
					require.NoError(t, os.WriteFile(schedule, []byte(b.body), 0o644))
					args = []string{bin, "config", "check", "-c", schedule}
				default:
					t.Fatalf("runnable %s block: only sh and yaml blocks run", info[0])
				}
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, args[0], args[1:]...)
				cmd.Dir = root
				cmd.Env = append(os.Environ(), "PATH="+path)
				cmd.WaitDelay = 5 * time.Second // background children must not hold the output open
				out, err := cmd.CombinedOutput()
				require.NoError(t, err, "```%s\n%s```\n%s", b.info, b.body, out)
			})
		}
	}
	require.NotZero(t, ran, "no runnable block in README.md or docs/*.md")
}

// TestAnchorSlug checks slug against anchors GitHub made for these headings.
func TestAnchorSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"## vLLM: the version and what selfplay sends it": "vllm-the-version-and-what-selfplay-sends-it",
		"## llama.cpp and Ollama":                         "llamacpp-and-ollama",
		"### SQL on a million pairs":                      "sql-on-a-million-pairs",
		"## ε-DPO":                                        "ε-dpo",
		"Production: vLLM on GPUs":                        "production-vllm-on-gpus",
		"# tinylm — the built-in language model":          "tinylm--the-built-in-language-model",
		"## The `pair_details` view":                      "the-pair_details-view",
		"## See [the metric](metric.md)":                  "see-the-metric",
	} {
		require.Equal(t, want, slug(heading), heading)
	}
}
