package orchestrator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"image/png"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/orchestrator"
	"github.com/selfplay/selfplay/report"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/telemetry"
)

var screenshotOut = flag.String("screenshot", "", "also save the report screenshot here (go test ./orchestrator -run TestObservability -screenshot $PWD/docs/report.png)")

// TestObservability runs the two-iteration loop once, with Parquet export
// on, metrics served by every process, a few injected 500s and one prompt
// too long for the model (its task fails for good), and then checks what
// people see: the metrics, the Parquet file, the HTML report in headless
// Chromium and every query of the SQL cookbook (README and docs/sql.md).
func TestObservability(t *testing.T) {
	t.Parallel()
	l := startLoop(t, loopOptions{prompts: 60, samples: 4, ackWait: "30s", workerCon: 8,
		lmArgs: []string{"--error-rate", "0.03", "--fault-seed", "7"}})
	editFile(t, l.cfgPath, func(s string) string {
		return strings.Replace(s, "export: {dir:", "export: {formats: [jsonl, parquet], dir:", 1)
	})
	// "a.a.a…": one token per character, past tinylm's 4096-token context
	// but under max_prompt_chars, so the policy answers 400.
	overlong := strings.Repeat("a.", 2100)
	editFile(t, filepath.Join(l.dir, "prompts.jsonl"), func(s string) string {
		return s + fmt.Sprintf("{\"prompt\": %q}\n", overlong)
	})

	workerAddrs := []string{selfplaytest.FreeAddr(t), selfplaytest.FreeAddr(t)}
	for i, addr := range workerAddrs {
		selfplaytest.Start(t, fmt.Sprintf("worker-%d", i+1), nil, "worker", "-c", l.cfgPath, "--log-level", "warn", "--metrics-addr", addr)
	}
	runAddr := selfplaytest.FreeAddr(t)
	run := selfplaytest.Start(t, "orchestrator", nil, "run", "-c", l.cfgPath, "--metrics-addr", runAddr)
	require.Eventually(t, func() bool {
		fams, err := scrape("http://" + runAddr + "/metrics")
		return err == nil && fams["selfplay_iteration_stage"] != nil
	}, time.Minute, 20*time.Millisecond, "the orchestrator's metrics never showed an iteration stage")
	require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))
	require.Contains(t, run.Output(), "report written")

	t.Run("worker metrics", func(t *testing.T) { checkWorkerMetrics(t, l, workerAddrs) })
	t.Run("run metrics", func(t *testing.T) { checkRunMetrics(t, l) })
	t.Run("parquet", func(t *testing.T) { checkParquet(t, l) })
	t.Run("report", func(t *testing.T) { checkReport(t, l) })
	t.Run("cookbook", func(t *testing.T) { checkCookbook(t, l) })
}

func editFile(t *testing.T, path string, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	out := edit(string(b))
	require.NotEqual(t, string(b), out, "edit of %s changed nothing", path)
	require.NoError(t, os.WriteFile(path, []byte(out), 0o600))
}

// scrape reads a metrics endpoint in the Prometheus text format.
func scrape(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// sum adds the values of a family's series whose labels include want.
func sum(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var total float64
	fam := fams[name]
	if fam == nil {
		return 0
	}
next:
	for _, m := range fam.Metric {
		for k, v := range want {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total
}

func checkWorkerMetrics(t *testing.T, l *loop, addrs []string) {
	total := func(name string, labels map[string]string) float64 {
		var s float64
		for _, a := range addrs {
			fams, err := scrape("http://" + a + "/metrics")
			require.NoError(t, err)
			s += sum(fams, name, labels)
		}
		return s
	}
	done := l.count(t, `SELECT count(*) FROM tasks WHERE kind = 'generate' AND status = 'done'`)
	require.GreaterOrEqual(t, total("selfplay_tasks_total", map[string]string{"kind": "generate", "outcome": "done"}), float64(done))
	require.EqualValues(t, 1, total("selfplay_tasks_total", map[string]string{"kind": "generate", "outcome": "failed"}), "the over-long prompt's task")
	require.EqualValues(t, l.count(t, `SELECT count(*) FROM tasks WHERE kind = 'evolve' AND status = 'done'`),
		total("selfplay_tasks_total", map[string]string{"kind": "evolve", "outcome": "done"}))
	require.Zero(t, total("selfplay_tasks_in_flight", nil), "nothing in flight after the run")

	for _, ep := range []string{"policy", "reward"} {
		requests := total("selfplay_endpoint_requests_total", map[string]string{"endpoint": ep})
		require.Positive(t, requests, ep)
		require.Equal(t, requests, total("selfplay_endpoint_request_duration_seconds", map[string]string{"endpoint": ep}),
			"one latency observation per %s request", ep)
		// Only 500s are injected and the client retries each of them.
		require.Equal(t, total("selfplay_endpoint_errors_total", map[string]string{"endpoint": ep, "status": "500"}),
			total("selfplay_endpoint_retries_total", map[string]string{"endpoint": ep}), ep)
	}
	require.GreaterOrEqual(t, total("selfplay_endpoint_errors_total", map[string]string{"endpoint": "policy", "status": "400"}), 1.0,
		"the over-long prompt's 400")

	tokens := l.count(t, `SELECT sum(r.token_count) FROM responses r`)
	responses := l.count(t, `SELECT count(*) FROM responses`)
	require.GreaterOrEqual(t, total("selfplay_tokens_sampled_total", map[string]string{"kind": "generate"}), float64(tokens))
	require.GreaterOrEqual(t, total("selfplay_responses_sampled_total", map[string]string{"kind": "generate"}), float64(responses))
	evolved := l.count(t, `SELECT count(*) FROM tasks WHERE kind = 'evolve' AND status = 'done'`)
	require.GreaterOrEqual(t, total("selfplay_responses_sampled_total", map[string]string{"kind": "evolve"}), float64(5*evolved),
		"one rewrite per strategy and evolved prompt")
	require.Positive(t, total("selfplay_tokens_sampled_total", map[string]string{"kind": "evolve"}))
}

func checkRunMetrics(t *testing.T, l *loop) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(telemetry.NewRunCollector(l.pool, "e2e", slog.New(slog.DiscardHandler)))
	addr, err := telemetry.Serve(ctx, "127.0.0.1:0", reg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	fams, err := scrape("http://" + addr.String() + "/metrics")
	require.NoError(t, err)

	require.EqualValues(t, 1, sum(fams, "selfplay_current_iteration", nil), "both iterations are done: the last one")
	for _, it := range []string{"iter0", "iter1"} {
		require.EqualValues(t, 1, sum(fams, "selfplay_iteration_stage", map[string]string{"iteration": it, "stage": "done"}), it)
		require.EqualValues(t, 1, sum(fams, "selfplay_iteration_stage", map[string]string{"iteration": it}), "one stage at a time")
		id := l.count(t, `SELECT id FROM iterations WHERE name = $1`, it)
		require.EqualValues(t, l.count(t, `SELECT count(*) FROM pairs WHERE iteration_id = $1`, id),
			sum(fams, "selfplay_pair_outcomes", map[string]string{"iteration": it, "outcome": "paired"}), it)
		require.EqualValues(t, l.count(t, `SELECT count(*) FROM pairs WHERE iteration_id = $1 AND selected`, id),
			sum(fams, "selfplay_pairs_selected", map[string]string{"iteration": it}), it)
		require.EqualValues(t, l.count(t, `SELECT count(*) FROM iteration_prompts WHERE iteration_id = $1`, id),
			sum(fams, "selfplay_run_tasks", map[string]string{"iteration": it, "kind": "generate"}), "a generate task per pool prompt")
	}
	require.EqualValues(t, 61, sum(fams, "selfplay_pair_outcomes", map[string]string{"iteration": "iter0"}), "60 prompts and the over-long one")
	require.EqualValues(t, 1, sum(fams, "selfplay_pair_outcomes", map[string]string{"iteration": "iter0", "outcome": "failed"}))
	require.EqualValues(t, 1, sum(fams, "selfplay_run_tasks", map[string]string{"iteration": "iter0", "kind": "generate", "status": "failed"}))
}

func checkParquet(t *testing.T, l *loop) {
	var jsonlPath, parquetPath string
	var parquetRows int64
	require.NoError(t, l.pool.QueryRow(context.Background(), `
		SELECT j.path, p.path, p.rows FROM exports j JOIN exports p ON p.iteration_id = j.iteration_id AND p.kind = 'parquet'
		JOIN iterations i ON i.id = j.iteration_id WHERE i.name = 'iter0' AND j.kind = 'jsonl'`).Scan(&jsonlPath, &parquetPath, &parquetRows))
	require.Equal(t, filepath.Join(filepath.Dir(jsonlPath), "train.parquet"), parquetPath)

	var want []orchestrator.Row
	f, err := os.Open(jsonlPath)
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var r orchestrator.Row
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		want = append(want, r)
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, want)

	got, err := parquet.ReadFile[orchestrator.ParquetRow](parquetPath)
	require.NoError(t, err)
	require.Len(t, got, len(want))
	require.EqualValues(t, len(want), parquetRows)
	for i, w := range want {
		g := got[i]
		require.Equal(t, w.PromptID, g.PromptID, "row %d", i)
		for _, lists := range [][2]any{{w.Prompt, g.Prompt}, {w.Chosen, g.Chosen}, {w.Rejected, g.Rejected}} {
			wb, _ := json.Marshal(lists[0])
			gb, _ := json.Marshal(lists[1])
			require.JSONEq(t, string(wb), string(gb), "row %d", i)
		}
		require.Equal(t, w.ScoreChosen, g.ScoreChosen, "row %d", i)
		require.Equal(t, w.ScoreRejected, g.ScoreRejected, "row %d", i)
		require.Equal(t, w.ExplicitMargin, g.ExplicitMargin, "row %d", i)
		require.Equal(t, w.ImplicitMargin, g.ImplicitMargin, "row %d", i)
		require.Equal(t, w.AlignmentPotential, g.AlignmentPotential, "row %d", i)
	}

	// The layout datasets loads: message lists are LISTs of {role, content}
	// structs, the scores plain doubles; no reference columns without a
	// reference model.
	pf, err := os.Open(parquetPath)
	require.NoError(t, err)
	defer pf.Close()
	st, err := pf.Stat()
	require.NoError(t, err)
	file, err := parquet.OpenFile(pf, st.Size())
	require.NoError(t, err)
	schema := file.Schema().String()
	for _, col := range []string{"prompt", "chosen", "rejected"} {
		require.Regexp(t, `(?s)group `+col+` \(LIST\) \{\s*repeated group list \{\s*required group element \{\s*required binary role \(STRING\);\s*required binary content \(STRING\);`, schema)
	}
	require.Contains(t, schema, "required double alignment_potential;")
	require.NotContains(t, schema, "ref_chosen_logps")

	var manifest orchestrator.Manifest
	b, err := os.ReadFile(filepath.Join(filepath.Dir(jsonlPath), "manifest.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &manifest))
	require.EqualValues(t, len(want), manifest.Files["train.parquet"].Rows)
	require.Len(t, manifest.Files["train.parquet"].SHA256, 64)
}

// chartCheck measures, inside the browser, each figure's chart: its
// rendered size and how many data marks have a non-empty bounding box.
const chartCheck = `<script>
const out = {};
for (const fig of document.querySelectorAll("figure")) {
  const svg = fig.querySelector("svg.chart");
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  let marks = 0;
  for (const m of fig.querySelectorAll("svg.chart .mark")) {
    const b = m.getBBox();
    if (b.width > 0 && b.height > 0) marks++;
  }
  out[fig.id] = {width: box.width, height: box.height, marks: marks};
}
const pre = document.createElement("pre");
pre.id = "chart-check";
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>`

func checkReport(t *testing.T, l *loop) {
	checkReportData(t, l)
	// The orchestrator wrote one next to each export.
	for _, it := range []string{"iter0", "iter1"} {
		b, err := os.ReadFile(filepath.Join(l.dir, "exports", "e2e", it, "report.html"))
		require.NoError(t, err, it)
		require.Contains(t, string(b), "iteration "+it)
	}
	// `selfplay report` makes one on demand, with every iteration's trend.
	out := filepath.Join(t.TempDir(), "report.html")
	p := selfplaytest.Start(t, "report", nil, "report", "-c", l.cfgPath, "--iteration", "iter0", "--out", out)
	require.NoError(t, p.Wait(time.Minute), p.Tail(20))
	bad := selfplaytest.Start(t, "report-bad", nil, "report", "-c", l.cfgPath, "--iteration", "iter9", "--out", out)
	require.Error(t, bad.Wait(time.Minute))
	require.Contains(t, bad.Output(), `run "e2e" has no iteration "iter9"; it has iter0, iter1`)

	page, err := os.ReadFile(out)
	require.NoError(t, err)
	// Self-contained: nothing is fetched when it opens.
	require.NotRegexp(t, `(?i)<script|<link|src=|url\(|@import|https?://[^"\s]*\.(css|js|png|svg)`, string(page))

	chromium := requireChromium(t)
	checked := filepath.Join(t.TempDir(), "checked.html")
	require.NoError(t, os.WriteFile(checked, []byte(strings.Replace(string(page), "</body>", chartCheck+"</body>", 1)), 0o600))
	dom := runChromium(t, chromium, "--dump-dom", "file://"+checked)
	m := regexp.MustCompile(`<pre id="chart-check">(.*?)</pre>`).FindStringSubmatch(dom)
	require.NotNil(t, m, "the check script did not run:\n%s", tail(dom, 2000))
	var charts map[string]struct {
		Width, Height float64
		Marks         int
	}
	require.NoError(t, json.Unmarshal([]byte(html.UnescapeString(m[1])), &charts))
	require.ElementsMatch(t, []string{"rewards", "margins", "ap", "outcomes", "evolution", "trend-reward", "trend-explicit", "trend-implicit",
		"length", "trend-length"}, keys(charts))
	for id, c := range charts {
		require.Greater(t, c.Width, 200.0, "%s chart width", id)
		require.Greater(t, c.Height, 100.0, "%s chart height", id)
		require.Positive(t, c.Marks, "%s chart has no visible data points", id)
	}
	pairs := l.count(t, `SELECT count(*) FROM pairs p JOIN iterations i ON i.id = p.iteration_id WHERE i.name = 'iter0'`)
	require.EqualValues(t, pairs, charts["margins"].Marks, "one dot per pair in the scatter")
	require.EqualValues(t, 2, charts["trend-reward"].Marks/2, "two series over the two iterations")

	shot := filepath.Join(t.TempDir(), "report.png")
	runChromium(t, chromium, "--screenshot="+shot, "--window-size=1280,2400", "--hide-scrollbars", "file://"+out)
	f, err := os.Open(shot)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	require.Equal(t, 1280, img.Bounds().Dx())
	if *screenshotOut != "" {
		_, err := f.Seek(0, io.SeekStart)
		require.NoError(t, err)
		b, err := io.ReadAll(f)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(*screenshotOut, b, 0o644))
	}
}

// checkReportData checks what the report reads against the run's rows.
func checkReportData(t *testing.T, l *loop) {
	d, err := report.Load(context.Background(), l.pool, "e2e", "iter0")
	require.NoError(t, err)
	pairs := l.count(t, `SELECT count(*) FROM pairs p JOIN iterations i ON i.id = p.iteration_id WHERE i.name = 'iter0'`)
	require.Len(t, d.Pairs, int(pairs))
	require.EqualValues(t, pairs, d.Summary.Pairs)
	require.EqualValues(t, 61, d.Summary.Prompts)
	require.EqualValues(t, 1, d.Summary.TasksFailed)

	outcomes := map[string]int64{}
	var total int64
	for _, c := range d.Outcomes {
		outcomes[c.Label] = c.N
		total += c.N
	}
	require.EqualValues(t, 61, total)
	require.Equal(t, pairs, outcomes["paired"])
	require.EqualValues(t, 1, outcomes["failed"])
	require.Equal(t, "paired", d.Outcomes[0].Label)
	require.Len(t, d.Failures, 1)
	require.Contains(t, d.Failures[0].Label, "maximum context length")

	// The cut-off is the lowest AP selected, and no pair left out has more.
	lowest, selected := math.Inf(1), 0
	var chosen float64
	for _, p := range d.Pairs {
		chosen += p.ChosenReward
		if p.Selected {
			lowest = math.Min(lowest, p.AlignmentPotential)
			selected++
		}
	}
	require.EqualValues(t, d.Summary.Selected, selected)
	require.NotNil(t, d.Cutoff)
	require.Equal(t, lowest, *d.Cutoff)
	for _, p := range d.Pairs {
		if !p.Selected {
			require.LessOrEqual(t, p.AlignmentPotential, *d.Cutoff, "pair %d", p.ID)
		}
	}

	// Evolution: every evolved prompt tried each strategy once; the kept
	// ones are iter1's pool.
	var made, kept int64
	for _, s := range d.Evolution {
		made += s.Made
		kept += s.Kept
	}
	evolveTasks := l.count(t, `SELECT count(*) FROM tasks t JOIN iterations i ON i.id = t.iteration_id WHERE i.name = 'iter0' AND t.kind = 'evolve'`)
	require.Len(t, d.Evolution, 5)
	require.Equal(t, 5*evolveTasks, made)
	require.Equal(t, l.count(t, `SELECT count(*) FROM iteration_prompts ip JOIN iterations i ON i.id = ip.iteration_id WHERE i.name = 'iter1'`), kept)

	require.Len(t, d.Trend, 2)
	require.Equal(t, []string{"iter0", "iter1"}, []string{d.Trend[0].Name, d.Trend[1].Name})
	require.InDelta(t, chosen/float64(len(d.Pairs)), d.Trend[0].MeanChosenAll, 1e-9)
	require.Len(t, d.Top, 5)
	for i, p := range d.Top {
		require.Equal(t, i+1, p.Rank)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// requireChromium finds Debian's chromium; a missing one fails the test
// with the command that installs it.
func requireChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed; install it with `apt-get update && apt-get install -y --no-install-recommends chromium` (bash .ci/run does this)")
	return ""
}

// runChromium runs headless Chromium with a fresh profile and no network
// chatter, and returns its standard output.
func runChromium(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "chromium %s:\n%s", strings.Join(args, " "), tail(stderr.String(), 3000))
	return string(out)
}

func checkCookbook(t *testing.T, l *loop) {
	queries := selfplaytest.Cookbook(t)
	require.GreaterOrEqual(t, len(queries), 5)
	ctx := context.Background()
	// One session: a SET applies to the queries after it.
	conn, err := l.pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	for _, q := range queries {
		if q.Setting() {
			_, err := conn.Exec(ctx, q.SQL)
			require.NoError(t, err, q.SQL)
			continue
		}
		t.Run(q.Title, func(t *testing.T) {
			// The README speaks of the demo run; this one is called e2e.
			sql := strings.ReplaceAll(q.SQL, "'demo'", "'e2e'")
			rows, err := conn.Query(ctx, sql)
			require.NoError(t, err, sql)
			defer rows.Close()
			var got []map[string]any
			for rows.Next() {
				vals, err := rows.Values()
				require.NoError(t, err)
				row := map[string]any{}
				for i, fd := range rows.FieldDescriptions() {
					row[fd.Name] = vals[i]
				}
				got = append(got, row)
			}
			require.NoError(t, rows.Err(), sql)
			require.NotEmpty(t, got, "no rows from:\n%s", sql)
			if strings.HasPrefix(q.Title, "Failure reasons by endpoint") {
				// The one failure is the over-long prompt the policy refused.
				require.Len(t, got, 1)
				require.Equal(t, "policy", got[0]["endpoint"])
				require.Equal(t, "400", got[0]["http_status"])
				require.EqualValues(t, 1, got[0]["tasks"])
			}
			if strings.HasPrefix(q.Title, "How selection by each metric") {
				// The stored selection was made by alignment potential: the
				// query's top k by AP must be exactly it.
				selected := l.count(t, `SELECT count(*) FROM pair_details WHERE run = 'e2e' AND iteration = 'iter0' AND selected`)
				require.Len(t, got, 3)
				for _, row := range got {
					require.EqualValues(t, selected, row["pairs"], row["metric"])
					if row["metric"] == "alignment_potential" {
						require.EqualValues(t, selected, row["in_stored_selection"])
					}
				}
			}
		})
	}
}
