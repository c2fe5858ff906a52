package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/internal/atomicfile"
	"github.com/selfplay/selfplay/internal/jsonl"
	"github.com/selfplay/selfplay/metric"
)

// newScoreCmd scores and selects a JSONL file of preference pairs offline,
// with the same metric code the orchestrator uses.
func newScoreCmd() *cobra.Command {
	var (
		in, out, metricName string
		spec                metric.Spec
		length              lengthOptions
	)
	cmd := &cobra.Command{
		Use:   "score --in pairs.jsonl --out scored.jsonl",
		Short: "Score and select a JSONL file of preference pairs (alignment potential and baselines)",
		Long: `Score reads a JSONL file of preference pairs, z-scores their margins over the
whole file and writes every row back, in input order, with explicit_z,
implicit_z, alignment_potential, score, rank and selected added.

Each row needs either explicit_margin and implicit_margin, or score_chosen,
score_rejected, chosen_logps, rejected_logps, chosen_tokens and rejected_tokens
(the margins are then computed in the SimPO form and added to the row).

With --length-control residual the explicit margin is scored with the length
effect removed, m_ex − slope·(chosen_tokens − rejected_tokens), and written as
residual_margin; every row then needs chosen_tokens and rejected_tokens. The
slope is --length-slope when given (e.g. the run's length_fits.slope), else
the least-squares fit of reward on tokens over the file's chosen and rejected
replies (rows need score_chosen and score_rejected). When every reply has the
same length the slope is undefined and the raw margin is scored. An
integer "id" field, when present, breaks ties and seeds the random metric;
otherwise the row's 1-based position among the data rows is used.

The file is read twice (it must be a regular file, not a pipe); memory grows by
a few dozen bytes per row. The output is written to a temporary file next to
--out and renamed into place only when every row is good.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := metric.ParseMetric(metricName)
			if err != nil {
				return err
			}
			spec.Metric = m
			if cmd.Flags().Changed("count") {
				if cmd.Flags().Changed("ratio") {
					return errors.New("set --ratio or --count, not both")
				}
				spec.Ratio = 0
			}
			if err := spec.Validate(); err != nil {
				return err
			}
			if err := length.validate(cmd.Flags().Changed("length-slope")); err != nil {
				return err
			}
			sum, err := scoreFile(cmd.Context(), in, out, spec, length)
			if err != nil {
				return err
			}
			if sum.note != "" {
				printf(cmd, "%s\n", sum.note)
			}
			printf(cmd, "scored %d pairs by %s, selected %d, wrote %s\n", sum.rows, spec.Metric, sum.selected, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&in, "in", "", "the input JSONL of pairs (required)")
	f.StringVar(&out, "out", "", "the output JSONL (required; replaced atomically)")
	f.StringVar(&metricName, "metric", string(metric.AlignmentPotential), "alignment_potential, explicit_margin, implicit_margin or random")
	f.Float64Var(&spec.Ratio, "ratio", metric.DefaultRatio, "fraction of pairs to select, in (0, 1]; k = floor(ratio·N)")
	f.IntVar(&spec.Count, "count", 0, "select the top N pairs instead of a ratio")
	f.Float64Var(&spec.ImplicitWeight, "implicit-weight", metric.DefaultImplicitWeight, "w in AP = z(m_ex) − w·z(|m_im|)")
	f.Int64Var(&spec.Seed, "seed", 42, "seed of the random metric")
	f.StringVar(&length.control, "length-control", string(metric.LengthNone), "none, or residual: score the explicit margin with the length effect removed")
	f.Float64Var(&length.slope, "length-slope", 0, "reward per token to remove with residual (default: fitted over the file)")
	_ = cmd.MarkFlagRequired("in")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// scoreSummary is what scoreFile reports back.
type scoreSummary struct {
	rows, selected int
	note           string // what the length control did
}

// lengthOptions are the length control flags of score.
type lengthOptions struct {
	control  string
	slope    float64
	slopeSet bool
}

func (l *lengthOptions) validate(slopeSet bool) error {
	l.slopeSet = slopeSet
	switch {
	case l.control != string(metric.LengthNone) && l.control != string(metric.LengthResidual):
		return fmt.Errorf("--length-control %q: want none or residual", l.control)
	case slopeSet && l.control != string(metric.LengthResidual):
		return errors.New("--length-slope needs --length-control residual")
	case math.IsNaN(l.slope) || math.IsInf(l.slope, 0):
		return fmt.Errorf("--length-slope %g: want a finite number", l.slope)
	}
	return nil
}

// scorePool is everything pass 1 keeps: a few words per row.
type scorePool struct {
	explicit, implicit []float64
	ids                []int64
	computed           []bool // margins were computed from scores and logps
	// residual are the explicit margins scored under --length-control
	// residual (nil otherwise); lengths and rewards are the rows' replies'
	// (chosen, rejected), NaN for a reward the row does not have.
	residual []float64
	tokens   [][2]float64
	rewards  [][2]float64
}

func (p *scorePool) item(i int) metric.Item {
	ex := p.explicit[i]
	if p.residual != nil {
		ex = p.residual[i]
	}
	return metric.Item{ID: p.ids[i], ExplicitMargin: ex, ImplicitMargin: p.implicit[i]}
}

// applyLength fills pool.residual for the residual control: with the
// given slope, or the fit over the file's chosen and rejected replies. It
// returns what it did, for the user.
func (p *scorePool) applyLength(path string, l lengthOptions) (string, error) {
	if l.control != string(metric.LengthResidual) {
		return "", nil
	}
	tokens := make([][2]int, len(p.tokens))
	for i, t := range p.tokens {
		for j, v := range t {
			switch {
			case math.IsNaN(v):
				return "", fmt.Errorf("%s: row %d: --length-control residual needs chosen_tokens and rejected_tokens", path, i+1)
			case v < 0 || v != math.Trunc(v) || v > math.MaxInt32:
				return "", fmt.Errorf("%s: row %d: %s must be a non-negative integer, got %g", path, i+1, []string{"chosen_tokens", "rejected_tokens"}[j], v)
			}
			tokens[i][j] = int(v)
		}
	}
	slope := l.slope
	note := fmt.Sprintf("length control residual: slope %g reward per token (--length-slope)", slope)
	if !l.slopeSet {
		xs := make([]int, 0, 2*len(tokens))
		ys := make([]float64, 0, 2*len(tokens))
		for i, t := range tokens {
			r := p.rewards[i]
			if math.IsNaN(r[0]) || math.IsNaN(r[1]) {
				return "", fmt.Errorf("%s: row %d: fitting the length slope needs score_chosen and score_rejected (or give --length-slope)", path, i+1)
			}
			xs, ys = append(xs, t[0], t[1]), append(ys, r[0], r[1])
		}
		fit, err := metric.FitLength(xs, ys)
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		if !fit.Defined {
			return "length control residual: every reply has the same length, so the slope is undefined; scored the raw margins", nil
		}
		slope = fit.Slope
		note = fmt.Sprintf("length control residual: slope %g reward per token, R² %.3f, fitted over the file's %d replies", slope, fit.R2, fit.N)
	}
	p.residual = make([]float64, len(p.explicit))
	for i, t := range tokens {
		p.residual[i] = metric.ResidualMargin(p.explicit[i], slope, t[0], t[1])
	}
	return note, nil
}

// scoreFile is the two-pass scorer behind `selfplay score`: pass 1 reads the
// margins, pass 2 re-reads the rows and writes them with their scores.
func scoreFile(ctx context.Context, in, out string, spec metric.Spec, length lengthOptions) (scoreSummary, error) {
	if st, err := os.Stat(in); err != nil {
		return scoreSummary{}, err
	} else if !st.Mode().IsRegular() {
		return scoreSummary{}, fmt.Errorf("%s is not a regular file: score reads its input twice, so save the pairs to a file first", in)
	}
	pool, err := readScorePool(ctx, in, length.control == string(metric.LengthResidual))
	if err != nil {
		return scoreSummary{}, err
	}
	note, err := pool.applyLength(in, length)
	if err != nil {
		return scoreSummary{}, err
	}
	explicit := pool.explicit
	if pool.residual != nil {
		explicit = pool.residual
	}
	scorer, err := metric.NewScorer(explicit, pool.implicit, spec)
	if err != nil {
		return scoreSummary{}, fmt.Errorf("%s: %w", in, err)
	}
	k, err := metric.SelectCount(len(pool.ids), spec)
	if err != nil {
		return scoreSummary{}, err
	}
	ranks := metric.RankBy(len(pool.ids), func(i int) float64 { return scorer.Score(pool.item(i)).Score },
		func(i int) int64 { return pool.ids[i] })
	if err := writeScored(ctx, in, out, pool, scorer, ranks, k); err != nil {
		return scoreSummary{}, err
	}
	return scoreSummary{rows: len(ranks), selected: k, note: note}, nil
}

// scoreRow holds the fields pass 1 reads from a row; the rest is skipped.
// Pointers tell a missing (or null) field from a zero.
type scoreRow struct {
	ID             json.RawMessage `json:"id"`
	ExplicitMargin *float64        `json:"explicit_margin"`
	ImplicitMargin *float64        `json:"implicit_margin"`
	ScoreChosen    *float64        `json:"score_chosen"`
	ScoreRejected  *float64        `json:"score_rejected"`
	ChosenLogps    *float64        `json:"chosen_logps"`
	RejectedLogps  *float64        `json:"rejected_logps"`
	ChosenTokens   *float64        `json:"chosen_tokens"`
	RejectedTokens *float64        `json:"rejected_tokens"`
}

// readScorePool is pass 1; it keeps the replies' lengths and rewards only
// for the residual length control (32 bytes a row). Errors are FILE:LINE:
// reason.
func readScorePool(ctx context.Context, path string, lengths bool) (scorePool, error) {
	var pool scorePool
	err := eachRow(ctx, path, func(_ int, line []byte) error {
		r, err := parseScoreRow(line, int64(len(pool.ids)+1))
		if err != nil {
			return err
		}
		pool.explicit = append(pool.explicit, r.explicit)
		pool.implicit = append(pool.implicit, r.implicit)
		pool.ids = append(pool.ids, r.id)
		pool.computed = append(pool.computed, r.computed)
		if lengths {
			pool.tokens = append(pool.tokens, r.tokens)
			pool.rewards = append(pool.rewards, r.rewards)
		}
		return nil
	})
	return pool, err
}

// parsedRow is what pass 1 takes from one row.
type parsedRow struct {
	explicit, implicit float64
	computed           bool // margins computed from the score and logps fields
	id                 int64
	tokens             [2]float64 // chosen_tokens and rejected_tokens, NaN when absent
	rewards            [2]float64 // score_chosen and score_rejected, NaN when absent
}

// parseScoreRow validates one row and reads its margins and id (ordinal
// when the row has none).
func parseScoreRow(line []byte, ordinal int64) (parsedRow, error) {
	if line[0] != '{' {
		return parsedRow{}, errors.New("want a JSON object")
	}
	var r scoreRow
	if err := json.Unmarshal(line, &r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if strings.HasPrefix(te.Value, "number") {
				return parsedRow{}, fmt.Errorf("%s: %s is out of range", te.Field, te.Value)
			}
			return parsedRow{}, fmt.Errorf("%s: want a number, got %s", te.Field, te.Value)
		}
		return parsedRow{}, fmt.Errorf("invalid JSON: %w", err)
	}
	out := parsedRow{id: ordinal, tokens: [2]float64{math.NaN(), math.NaN()}, rewards: [2]float64{math.NaN(), math.NaN()}}
	for _, f := range []struct{ from, to *float64 }{
		{r.ChosenTokens, &out.tokens[0]}, {r.RejectedTokens, &out.tokens[1]},
		{r.ScoreChosen, &out.rewards[0]}, {r.ScoreRejected, &out.rewards[1]},
	} {
		if f.from != nil {
			*f.to = *f.from
		}
	}
	if raw := bytes.TrimSpace(r.ID); len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		id, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return parsedRow{}, fmt.Errorf("id must be an integer, got %s", raw)
		}
		out.id = id
	}
	switch {
	case r.ExplicitMargin != nil && r.ImplicitMargin != nil:
		out.explicit, out.implicit = *r.ExplicitMargin, *r.ImplicitMargin
		return out, nil
	case r.ExplicitMargin != nil:
		return parsedRow{}, errors.New("has explicit_margin but no implicit_margin")
	case r.ImplicitMargin != nil:
		return parsedRow{}, errors.New("has implicit_margin but no explicit_margin")
	}
	fields := []struct {
		name string
		v    *float64
	}{
		{"score_chosen", r.ScoreChosen}, {"score_rejected", r.ScoreRejected},
		{"chosen_logps", r.ChosenLogps}, {"rejected_logps", r.RejectedLogps},
		{"chosen_tokens", r.ChosenTokens}, {"rejected_tokens", r.RejectedTokens},
	}
	var missing []string
	for _, f := range fields {
		if f.v == nil {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return parsedRow{}, fmt.Errorf("want explicit_margin and implicit_margin, or score_chosen, score_rejected, chosen_logps, rejected_logps, chosen_tokens and rejected_tokens (missing %s)", strings.Join(missing, ", "))
	}
	for _, f := range fields[4:] {
		if *f.v <= 0 || *f.v != math.Trunc(*f.v) {
			return parsedRow{}, fmt.Errorf("%s must be a positive integer, got %g", f.name, *f.v)
		}
	}
	out.explicit = *r.ScoreChosen - *r.ScoreRejected
	out.implicit = *r.ChosenLogps / *r.ChosenTokens - *r.RejectedLogps / *r.RejectedTokens
	if math.IsInf(out.explicit, 0) || math.IsInf(out.implicit, 0) {
		return parsedRow{}, fmt.Errorf("margins overflow: explicit %g, implicit %g", out.explicit, out.implicit)
	}
	out.computed = true
	return out, nil
}

// eachRow calls fn for every non-blank line of path with its 1-based line
// number, and prefixes any error with "path:line: ".
func eachRow(ctx context.Context, path string, fn func(lineNo int, line []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return jsonl.Each(f, path, func(n int, line []byte) error {
		if n%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := fn(n, line); err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		return nil
	})
}

// writeScored is pass 2: it re-reads in and writes every row with its
// additions to a temporary file next to out, renamed over out on success.
func writeScored(ctx context.Context, in, out string, pool scorePool, scorer *metric.Scorer, ranks []int, k int) error {
	return atomicfile.Write(out, func(w io.Writer) error {
		var buf []byte
		i := 0
		err := eachRow(ctx, in, func(_ int, line []byte) error {
			if i >= len(ranks) {
				return errors.New("the file grew while it was being scored")
			}
			s := scorer.Score(pool.item(i))
			add := scoreAdditions{scored: s, rank: ranks[i], selected: ranks[i] <= k}
			if pool.residual != nil {
				add.residual, add.hasResidual = pool.residual[i], true
			}
			if pool.computed[i] {
				add.margins, add.explicit, add.implicit = true, pool.explicit[i], pool.implicit[i]
			}
			var err error
			if buf, err = add.appendRow(buf[:0], line); err != nil {
				return err
			}
			buf = append(buf, '\n')
			i++
			_, err = w.Write(buf)
			return err
		})
		if err != nil {
			return err
		}
		if i != len(ranks) {
			return fmt.Errorf("%s: the file shrank from %d to %d rows while it was being scored", in, len(ranks), i)
		}
		return nil
	})
}

// scoreAdditions are the fields score adds to a row.
type scoreAdditions struct {
	margins            bool // write explicit and implicit: they were computed
	explicit, implicit float64
	scored             metric.Scored
	rank               int
	selected           bool
	hasResidual        bool // write residual_margin (--length-control residual)
	residual           float64
}

// addedKeys are the keys score writes; the margins come first and are
// written only when they were computed.
var addedKeys = []string{"explicit_margin", "implicit_margin", "explicit_z", "implicit_z", "alignment_potential", "score", "rank", "selected", "residual_margin"}

// quotedAddedKeys are addedKeys as they appear in JSON, made once so that
// pass 2 allocates nothing per row.
var quotedAddedKeys = func() [][]byte {
	q := make([][]byte, len(addedKeys))
	for i, k := range addedKeys {
		q[i] = []byte(`"` + k + `"`)
	}
	return q
}()

func (a scoreAdditions) keys() (keys []string, quoted [][]byte) {
	keys, quoted = addedKeys, quotedAddedKeys
	if !a.hasResidual {
		keys, quoted = keys[:len(keys)-1], quoted[:len(quoted)-1]
	}
	if a.margins {
		return keys, quoted
	}
	return keys[2:], quoted[2:]
}

// appendRow appends the row line (a JSON object validated in pass 1) with
// the additions to b. The row's own members are copied byte for byte; a
// member whose key score is about to write (from an earlier run, say) is
// dropped so the output has no duplicate keys.
func (a scoreAdditions) appendRow(b, line []byte) ([]byte, error) {
	if len(line) < 2 || line[0] != '{' || line[len(line)-1] != '}' {
		return nil, errors.New("the row changed while the file was being scored")
	}
	keys, quoted := a.keys()
	clash := false
	for _, q := range quoted {
		if bytes.Contains(line, q) {
			clash = true
			break
		}
	}
	head := bytes.TrimRight(line[:len(line)-1], " \t\r\n") // the row without its '}'
	if clash {
		var err error
		if head, err = dropMembers(line, keys); err != nil {
			return nil, err
		}
	}
	b = append(b, head...)
	if len(head) > 1 { // not an empty object
		b = append(b, ',')
	}
	if a.margins {
		b = appendFloatField(b, "explicit_margin", a.explicit)
		b = appendFloatField(b, "implicit_margin", a.implicit)
	}
	b = appendFloatField(b, "explicit_z", a.scored.ExplicitZ)
	b = appendFloatField(b, "implicit_z", a.scored.ImplicitZ)
	b = appendFloatField(b, "alignment_potential", a.scored.AlignmentPotential)
	b = appendFloatField(b, "score", a.scored.Score)
	b = append(b, `"rank":`...)
	b = strconv.AppendInt(b, int64(a.rank), 10)
	b = append(b, `,"selected":`...)
	b = strconv.AppendBool(b, a.selected)
	if a.hasResidual {
		b = append(b, `,"residual_margin":`...)
		b = appendJSONFloat(b, a.residual)
	}
	return append(b, '}'), nil
}

// dropMembers returns the object line without the members whose key is in
// drop and without its closing brace. Everything else, separators and
// whitespace included, is copied byte for byte.
func dropMembers(line []byte, drop []string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil { // '{'
		return nil, err
	}
	head := []byte{'{'}
	first := true
	for dec.More() {
		start := dec.InputOffset() // just after the previous value (or '{')
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, err
		}
		if key, _ := tok.(string); slices.Contains(drop, key) {
			continue
		}
		seg := line[start:dec.InputOffset()] // [whitespace] [,] [whitespace] "key": value
		body := bytes.TrimLeft(seg, " \t\r\n,")
		sep := seg[:len(seg)-len(body)]
		switch {
		case first:
			sep = bytes.ReplaceAll(sep, []byte(","), nil)
		case !bytes.Contains(sep, []byte(",")):
			head = append(head, ',')
		}
		head = append(head, sep...)
		head = append(head, body...)
		first = false
	}
	return head, nil
}

func appendFloatField(b []byte, key string, v float64) []byte {
	b = append(b, '"')
	b = append(b, key...)
	b = append(b, `":`...)
	b = appendJSONFloat(b, v)
	return append(b, ',')
}

// appendJSONFloat formats a finite float like encoding/json does: the
// shortest representation that round-trips, in exponent form only for very
// small or very large magnitudes.
func appendJSONFloat(b []byte, v float64) []byte {
	abs := math.Abs(v)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, v, format, -1, 64)
	if format == 'e' { // clean up e-09 to e-9
		n := len(b) - start
		if n >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
	}
	return b
}
