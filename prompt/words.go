package prompt

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Words splits text into the words near-duplicate detection and benchmark
// decontamination compare: the text is NFKC-normalised and case-folded
// (so "Ｆｕｌｌ", "FULL" and "full" are one word, and "Straße" matches
// "STRASSE"), and a word is a run of letters, combining marks and digits;
// everything else — white space, punctuation, symbols — only separates
// words. "Hello,world" and "hello  world" give the same two words. Accents
// are kept: "café" and "cafe" differ. Text without spaces between words
// (Chinese, Japanese) is one word per run of letters.
func Words(text string) []string {
	var folded string
	if isASCII(text) {
		folded = strings.ToLower(text) // NFKC leaves ASCII alone; folding it is lowering
	} else {
		folded = norm.NFKC.String(cases.Fold().String(norm.NFKC.String(text)))
	}
	return strings.FieldsFunc(folded, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsMark(r) && !unicode.IsNumber(r)
	})
}

// Content is the text of a prompt's non-system messages, one per line: what
// near-duplicate detection and decontamination look at. A system message is
// left out because many prompts share one (an evolved prompt keeps its
// parent's), and it is not the request.
func Content(msgs []Message) string {
	var b strings.Builder
	for _, m := range msgs {
		if m.Role == "system" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(m.Content)
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
