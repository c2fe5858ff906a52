package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// chatReply is the part of a chat-completions reply the clients use, read
// in one pass over the body by decodeChatReply. Field names follow vLLM's
// ChatCompletionResponse (vllm/entrypoints/openai/chat_completion/
// protocol.py) and llama.cpp server's per-token "id".
type chatReply struct {
	// Choices are in the order the server sent them.
	Choices []chatChoice
	// PromptTokenIDs is vLLM's top-level prompt_token_ids (sent with
	// return_token_ids); nil when absent or null.
	PromptTokenIDs []int
}

// chatChoice is one choice of a chat reply.
type chatChoice struct {
	Index int
	// Content is message.content; HasContent is false when it is absent
	// or null.
	Content    string
	HasContent bool
	// Reasoning is message.reasoning, or the older reasoning_content: the
	// part vLLM's --reasoning-parser splits off the reply.
	Reasoning string
	// HasLogProbs is true when logprobs.content is a list (possibly empty).
	HasLogProbs bool
	// LogProbs are logprobs.content[].logprob in order.
	LogProbs []float64
	// TokenIDs are vLLM's token_ids when present; else the entries' "id"
	// (llama.cpp server) when every entry has one; else ids read from
	// "token_id:N" tokens (vLLM's return_tokens_as_token_ids) when every
	// token has that form; else nil.
	TokenIDs []int
	// FinishReason is finish_reason, "" when null.
	FinishReason string
}

// decodeChatReply reads a chat-completions body in one pass, keeping only
// the fields chatReply holds and checking that everything else is
// well-formed JSON. A body encoding/json would refuse is refused with
// encoding/json's own error, so describeDecodeError explains it the same
// way; a body of the wrong shape gets an error naming the field.
func decodeChatReply(raw []byte) (*chatReply, error) {
	return scanChatReply(&replyScanner{b: raw})
}

// scanChatReply is decodeChatReply with the scanner given.
func scanChatReply(d *replyScanner) (*chatReply, error) {
	raw := d.b
	var r chatReply
	d.object(func(key []byte) {
		switch string(key) {
		case "choices":
			if d.null() {
				return
			}
			d.array(func() {
				var c chatChoice
				d.choice(&c)
				r.Choices = append(r.Choices, c)
			})
		case "prompt_token_ids":
			r.PromptTokenIDs = d.ints("prompt_token_ids", 0)
		default:
			d.skip()
		}
	})
	d.end()
	if d.err != nil {
		if !json.Valid(raw) {
			var v any
			return nil, json.Unmarshal(raw, &v)
		}
		return nil, d.err
	}
	return &r, nil
}

// replyScanner walks a JSON body. The first error stops it: every method
// then does nothing, so callers check err once at the end.
type replyScanner struct {
	b   []byte
	i   int
	err error
	// generic turns off fastEntry, for tests that compare the two paths.
	generic bool
	// entries is the number of log-prob entries of the last choice read.
	entries int
}

func (d *replyScanner) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
	d.i = len(d.b)
}

func (d *replyScanner) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, 0 at the end.
func (d *replyScanner) peek() byte {
	d.ws()
	if d.err != nil || d.i >= len(d.b) {
		return 0
	}
	return d.b[d.i]
}

func (d *replyScanner) expect(c byte) bool {
	if d.peek() != c {
		d.fail("expected %q at offset %d", c, d.i)
		return false
	}
	d.i++
	return true
}

// end checks that nothing but space follows the value.
func (d *replyScanner) end() {
	d.ws()
	if d.err == nil && d.i != len(d.b) {
		d.fail("data after the JSON value at offset %d", d.i)
	}
}

// object calls field for each key, positioned at its value; field must
// consume the value.
func (d *replyScanner) object(field func(key []byte)) {
	if !d.expect('{') {
		return
	}
	if d.peek() == '}' {
		d.i++
		return
	}
	for d.err == nil {
		key := d.key()
		if !d.expect(':') {
			return
		}
		field(key)
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return
		default:
			d.fail("expected , or } at offset %d", d.i)
		}
	}
}

// array calls elem for each element; elem must consume it.
func (d *replyScanner) array(elem func()) {
	if !d.expect('[') {
		return
	}
	if d.peek() == ']' {
		d.i++
		return
	}
	for d.err == nil {
		elem()
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			return
		default:
			d.fail("expected , or ] at offset %d", d.i)
		}
	}
}

// null consumes a null and reports whether there was one.
func (d *replyScanner) null() bool {
	if d.peek() == 'n' && bytes.HasPrefix(d.b[d.i:], []byte("null")) {
		d.i += 4
		return true
	}
	return false
}

// key reads an object key. Keys are only compared with the ASCII names
// this decoder reads, so one without escapes is used as it stands.
func (d *replyScanner) key() []byte {
	if d.peek() == '"' {
		for j := d.i + 1; j < len(d.b); j++ {
			c := d.b[j]
			if c == '"' {
				k := d.b[d.i+1 : j]
				d.i = j + 1
				return k
			}
			if c == '\\' || c < 0x20 {
				break
			}
		}
	}
	return d.str()
}

// str reads a string and returns its decoded bytes, which alias the body
// when the string has no escapes.
func (d *replyScanner) str() []byte {
	if !d.expect('"') {
		return nil
	}
	start := d.i
	escaped := false
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if escaped || !utf8.Valid(s) {
				// The rare path: let encoding/json unescape (and
				// replace invalid UTF-8 as it does).
				var out string
				if err := json.Unmarshal(d.b[start-1:d.i], &out); err != nil {
					d.fail("bad string at offset %d: %v", start-1, err)
					return nil
				}
				return []byte(out)
			}
			return s
		case c == '\\':
			escaped = true
			d.i += 2
		case c < 0x20:
			d.fail("control character in string at offset %d", d.i)
			return nil
		default:
			d.i++
		}
	}
	d.fail("unterminated string")
	return nil
}

// skipStr consumes a string, checking its escapes and control
// characters; it does not check UTF-8, which encoding/json replaces rather
// than refuses.
func (d *replyScanner) skipStr() {
	if !d.expect('"') {
		return
	}
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return
		case c == '\\':
			if d.i+1 >= len(d.b) {
				d.fail("unterminated string")
				return
			}
			switch d.b[d.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.i += 2
			case 'u':
				if d.i+6 > len(d.b) {
					d.fail("unterminated string")
					return
				}
				for _, h := range d.b[d.i+2 : d.i+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						d.fail("bad \\u escape at offset %d", d.i)
						return
					}
				}
				d.i += 6
			default:
				d.fail("bad escape at offset %d", d.i)
				return
			}
		case c < 0x20:
			d.fail("control character in string at offset %d", d.i)
			return
		default:
			d.i++
		}
	}
	d.fail("unterminated string")
}

// text reads a string or null; ok is false for null.
func (d *replyScanner) text(field string) (s string, ok bool) {
	switch d.peek() {
	case 'n':
		if d.null() {
			return "", false
		}
	case '"':
		return string(d.str()), true
	}
	d.fail("%s is not a string", field)
	return "", false
}

// number returns the bytes of a JSON number, the scanner at its first
// byte.
func (d *replyScanner) number() []byte {
	return d.decimal().text
}

// decimalNumber is a JSON number as the scanner read it: its text, and,
// unless long, its value as ±m × 10^exp.
type decimalNumber struct {
	text []byte
	m    uint64
	exp  int
	// long is true when the digits do not fit m (more than 19 from the
	// first one not zero) or the exponent has more than four digits.
	long bool
	// integer is true when the text has no fraction and no exponent.
	integer bool
}

// decimal reads a JSON number, checking its syntax and collecting its
// digits in the same pass. The scanner is at its first byte: callers have
// peeked past the white space before it.
func (d *replyScanner) decimal() (n decimalNumber) {
	b, i := d.b, d.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	// Digits go into m while it has at most 18 (so one more fits);
	// zeros before the first other digit leave it 0.
	const full = 1e18
	intStart := i
	for ; i < len(b); i++ {
		c := b[i] - '0'
		if c > 9 {
			break
		}
		if n.m < full {
			n.m = n.m*10 + uint64(c)
		} else {
			n.long = true
		}
	}
	if i == intStart || (i-intStart > 1 && b[intStart] == '0') {
		d.fail("bad number at offset %d", start)
		return decimalNumber{}
	}
	n.integer = true
	if i < len(b) && b[i] == '.' {
		n.integer = false
		i++
		fracStart := i
		for ; i < len(b); i++ {
			c := b[i] - '0'
			if c > 9 {
				break
			}
			if n.m < full {
				n.m = n.m*10 + uint64(c)
				n.exp--
			} else {
				n.long = true
			}
		}
		if i == fracStart {
			d.fail("bad number at offset %d", start)
			return decimalNumber{}
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		n.integer = false
		i++
		neg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			neg = b[i] == '-'
			i++
		}
		expStart, e := i, 0
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if e < 1000 {
				e = e*10 + int(b[i]-'0')
			} else {
				n.long = true
			}
		}
		if i == expStart {
			d.fail("bad number at offset %d", start)
			return decimalNumber{}
		}
		if neg {
			e = -e
		}
		n.exp += e
	}
	d.i = i
	n.text = b[start:i]
	return n
}

func (d *replyScanner) float(field string) float64 {
	if c := d.peek(); c != '-' && (c < '0' || c > '9') {
		d.fail("%s is not a number", field)
		return 0
	}
	n := d.decimal()
	if d.err != nil {
		return 0
	}
	if !n.long {
		if v, ok := decimalToFloat(n.text[0] == '-', n.m, n.exp); ok {
			return v
		}
	}
	v, err := strconv.ParseFloat(string(n.text), 64)
	if err != nil {
		d.fail("%s %s is out of range", field, n.text)
	}
	return v
}

func (d *replyScanner) int(field string) int {
	if c := d.peek(); c != '-' && (c < '0' || c > '9') {
		d.fail("%s is not a number", field)
		return 0
	}
	n := d.decimal()
	if d.err != nil {
		return 0
	}
	if n.integer && !n.long && n.m <= math.MaxInt64 {
		if n.text[0] == '-' {
			return -int(n.m)
		}
		return int(n.m)
	}
	v, err := strconv.Atoi(string(n.text))
	if err != nil {
		d.fail("%s %s is not an integer", field, n.text)
	}
	return v
}

// ints reads a list of integers or null (nil); capacity is how many it
// probably holds.
func (d *replyScanner) ints(field string, capacity int) []int {
	if d.null() {
		return nil
	}
	out := make([]int, 0, capacity)
	d.array(func() { out = append(out, d.int(field)) })
	return out
}

// skip consumes any value, checking its syntax.
func (d *replyScanner) skip() {
	switch c := d.peek(); {
	case c == '{':
		d.object(func([]byte) { d.skip() })
	case c == '[':
		d.array(d.skip)
	case c == '"':
		d.skipStr()
	case c == '-' || (c >= '0' && c <= '9'):
		d.number()
	default:
		for _, lit := range []string{"null", "true", "false"} {
			if bytes.HasPrefix(d.b[d.i:], []byte(lit)) {
				d.i += len(lit)
				return
			}
		}
		d.fail("unexpected %q at offset %d", c, d.i)
	}
}

func (d *replyScanner) choice(c *chatChoice) {
	if d.null() {
		d.fail("a choice is null")
		return
	}
	var tokenIDs []int
	var entryIDs, formIDs []int
	everyID, everyForm := true, true
	d.object(func(key []byte) {
		switch string(key) {
		case "index":
			c.Index = d.int("choices[].index")
		case "message":
			if d.null() {
				return
			}
			d.object(func(key []byte) {
				switch string(key) {
				case "content":
					c.Content, c.HasContent = d.text("message.content")
				case "reasoning", "reasoning_content":
					// vLLM renamed reasoning_content to reasoning; an
					// older server sends the one, a newer the other (both
					// null when no parser runs).
					if s, ok := d.text("message." + string(key)); ok && s != "" {
						c.Reasoning = s
					}
				default:
					d.skip()
				}
			})
		case "logprobs":
			if d.null() {
				return
			}
			d.object(func(key []byte) {
				if string(key) != "content" {
					d.skip()
					return
				}
				if d.null() {
					return
				}
				c.HasLogProbs = true
				if c.LogProbs == nil && d.entries > 0 {
					// The choices of a reply are mostly of one length.
					c.LogProbs = make([]float64, 0, d.entries)
				}
				c.LogProbs, entryIDs, formIDs = c.LogProbs[:0], entryIDs[:0], formIDs[:0]
				everyID, everyForm = true, true
				d.array(func() {
					if lp, ok := d.fastEntry(); ok {
						c.LogProbs = append(c.LogProbs, lp)
						everyID, everyForm = false, false
						return
					}
					lp, id, hasID, form, hasForm := d.logprobEntry()
					c.LogProbs = append(c.LogProbs, lp)
					everyID = everyID && hasID
					everyForm = everyForm && hasForm
					if everyID {
						entryIDs = append(entryIDs, id)
					}
					if everyForm {
						formIDs = append(formIDs, form)
					}
				})
				d.entries = len(c.LogProbs)
			})
		case "finish_reason":
			c.FinishReason, _ = d.text("finish_reason")
		case "token_ids":
			// vLLM sends them after the log-probs, one per token.
			tokenIDs = d.ints("token_ids", len(c.LogProbs))
		default:
			d.skip()
		}
	})
	switch {
	case tokenIDs != nil:
		c.TokenIDs = tokenIDs
	case everyID && len(entryIDs) > 0:
		c.TokenIDs = entryIDs
	case everyForm && len(formIDs) > 0:
		c.TokenIDs = formIDs
	}
}

// Parts of a log-prob entry as vLLM writes it (pydantic's compact JSON,
// keys in the order of ChatCompletionLogProbsContent in vllm/entrypoints/
// openai/chat_completion/protocol.py).
var (
	entryToken   = []byte(`{"token":"`)
	entryLogProb = []byte(`","logprob":`)
	entryBytes   = []byte(`,"bytes":[`)
	entryEnd     = []byte(`,"top_logprobs":[]}`)
	tokenIDForm  = []byte("token_id:")
)

// fastEntry reads a log-prob entry of exactly the shape vLLM writes,
// {"token":"…","logprob":-0.25,"bytes":[32,116],"top_logprobs":[]}, in
// one straight pass: the bulk of a reply with log-probs. For anything else
// (spaces, other keys or order, an escape in the token, a "token_id:N"
// token, top log-probs) it returns false with the scanner where it was,
// and logprobEntry reads the entry. A malformed log-prob is an error, as
// there.
func (d *replyScanner) fastEntry() (lp float64, ok bool) {
	b, start := d.b, d.i
	if d.generic || !bytes.HasPrefix(b[start:], entryToken) {
		return 0, false
	}
	i := start + len(entryToken)
	tok := i
	for i < len(b) && b[i] != '"' {
		if b[i] == '\\' || b[i] < 0x20 {
			return 0, false
		}
		i++
	}
	if bytes.HasPrefix(b[tok:i], tokenIDForm) || !bytes.HasPrefix(b[i:], entryLogProb) {
		return 0, false
	}
	d.i = i + len(entryLogProb)
	lp = d.float("logprobs.content[].logprob")
	if d.err != nil {
		return 0, true
	}
	i = d.i
	if !bytes.HasPrefix(b[i:], entryBytes) {
		d.i = start
		return 0, false
	}
	i += len(entryBytes)
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		// Byte values: digits without a leading zero, then , or ].
		for {
			n := 0
			for i+n < len(b) && b[i+n] >= '0' && b[i+n] <= '9' {
				n++
			}
			if n == 0 || (n > 1 && b[i] == '0') || i+n >= len(b) {
				d.i = start
				return 0, false
			}
			i += n + 1
			if b[i-1] == ']' {
				break
			}
			if b[i-1] != ',' {
				d.i = start
				return 0, false
			}
		}
	}
	if !bytes.HasPrefix(b[i:], entryEnd) {
		d.i = start
		return 0, false
	}
	d.i = i + len(entryEnd)
	return lp, true
}

// logprobEntry reads one logprobs.content entry: its log-prob, its "id"
// (llama.cpp server) and the id in a "token_id:N" token (vLLM's
// return_tokens_as_token_ids).
func (d *replyScanner) logprobEntry() (lp float64, id int, hasID bool, form int, hasForm bool) {
	hasLP := false
	d.object(func(key []byte) {
		switch string(key) {
		case "logprob":
			lp, hasLP = d.float("logprobs.content[].logprob"), true
		case "id":
			id, hasID = d.int("logprobs.content[].id"), true
		case "token":
			if d.null() {
				return
			}
			// Only the "token_id:N" form matters here, which has no
			// escapes: read it from the body without decoding the token.
			start := d.i + 1
			d.skipStr()
			if rest, ok := bytes.CutPrefix(d.b[start:max(start, d.i-1)], []byte("token_id:")); ok {
				if n, err := strconv.Atoi(string(rest)); err == nil {
					form, hasForm = n, true
				}
			}
		default:
			d.skip()
		}
	})
	if !hasLP && d.err == nil {
		d.fail("a logprobs.content entry has no logprob")
	}
	return lp, id, hasID, form, hasForm
}
