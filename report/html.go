package report

import (
	"context"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"

	"github.com/selfplay/selfplay/internal/atomicfile"
	"github.com/selfplay/selfplay/store"
)

// page is what the template renders.
type page struct {
	*Data
	Cards  []card
	Charts []chart
}

type card struct{ Label, Value, Detail string }

type chart struct {
	Figure
	SVG template.HTML
	// Table is an optional small table under the chart.
	TableTitle string
	Table      []Count
}

// Render writes d as a self-contained HTML page: inline CSS, inline SVG
// charts, no scripts, nothing fetched from the network.
func Render(w io.Writer, d *Data) error {
	p := page{Data: d, Cards: cards(d)}
	for _, fig := range Figures(d) {
		c := chart{Figure: fig, SVG: template.HTML(fig.SVG)} // built from escaped parts in svg.go
		switch fig.ID {
		case "outcomes":
			c.TableTitle, c.Table = "Most frequent failure reasons", d.Failures
		case "evolution":
			c.TableTitle, c.Table = "Rewrites dropped, by filter", d.Dropped
		}
		p.Charts = append(p.Charts, c)
	}
	return pageTemplate.Execute(w, p)
}

func cards(d *Data) []card {
	s := d.Summary
	sel := d.Settings.Selection
	rule := fmt.Sprintf("top %g by %s", sel.Ratio, sel.Metric)
	if sel.Count > 0 {
		rule = fmt.Sprintf("top %d by %s", sel.Count, sel.Metric)
	}
	return []card{
		{"Prompts", fmt.Sprint(s.Prompts), fmt.Sprintf("%d tasks done, %d failed", s.TasksDone, s.TasksFailed)},
		{"Pairs", fmt.Sprint(s.Pairs), fmt.Sprintf("without a pair: %d prompts", s.TasksDone-s.Pairs)},
		{"Selected", fmt.Sprint(s.Selected), rule},
		{"Mean chosen reward", num(orNaN(s.All.ChosenReward)), "selected: " + num(orNaN(s.Sel.ChosenReward))},
		{"Mean explicit margin", num(orNaN(s.All.ExplicitMargin)), "selected: " + num(orNaN(s.Sel.ExplicitMargin))},
		{"Mean |implicit margin|", num(orNaN(s.All.AbsImplicitMargin)), "selected: " + num(orNaN(s.Sel.AbsImplicitMargin))},
	}
}

// WriteFile loads the report of an iteration from db and writes it to
// path through a temporary file and a rename, so a reader never sees half
// a report. The folder is created when missing.
func WriteFile(ctx context.Context, db store.DBTX, run, iteration, path string) error {
	d, err := Load(ctx, db, run, iteration)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report folder: %w", err)
	}
	return atomicfile.Write(path, func(w io.Writer) error {
		if err := Render(w, d); err != nil {
			return fmt.Errorf("render report: %w", err)
		}
		return nil
	})
}

var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"num": num,
	"trunc": func(s string, n int) string {
		return truncate(s, n)
	},
	"deref":  func(s *string) string { return *s },
	"derefF": func(f *float64) float64 { return *f },
	"derefI": func(i *int32) int32 { return *i },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>selfplay report · {{.Run}} · {{.Iteration}}</title>
<style>
  :root { color-scheme: light; }
  body { margin: 0; padding: 24px 32px 48px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #212529; background: #f8f9fa; }
  header h1 { margin: 0 0 4px; font-size: 22px; }
  header p { margin: 0; color: #495057; }
  .cards { display: grid; grid-template-columns: repeat(6, 1fr); gap: 12px; margin: 20px 0; }
  .card { background: #fff; border: 1px solid #dee2e6; border-radius: 8px; padding: 10px 14px; }
  .card .label { color: #868e96; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
  .card .value { font-size: 22px; font-weight: 600; }
  .card .detail { color: #495057; font-size: 12px; }
  .charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
  figure { margin: 0; background: #fff; border: 1px solid #dee2e6; border-radius: 8px; padding: 12px 14px; }
  figure h2 { margin: 0 0 4px; font-size: 15px; }
  figcaption { color: #495057; font-size: 12.5px; margin-top: 4px; }
  svg.chart { width: 100%; height: auto; display: block; }
  svg.chart text { font: 11px system-ui, sans-serif; fill: #495057; }
  svg.chart text.title { font-size: 12px; fill: #212529; }
  svg.chart text.empty { font-size: 14px; fill: #868e96; }
  svg.chart line.grid { stroke: #e9ecef; }
  svg.chart line.axis, svg.chart line.tick { stroke: #868e96; }
  table { border-collapse: collapse; width: 100%; margin-top: 8px; font-size: 12.5px; }
  th, td { text-align: left; padding: 4px 6px; border-top: 1px solid #e9ecef; vertical-align: top; }
  th { color: #868e96; font-weight: 600; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  section.top { margin-top: 16px; background: #fff; border: 1px solid #dee2e6; border-radius: 8px; padding: 12px 14px; }
  section.top h2 { margin: 0; font-size: 15px; }
  td.text { max-width: 28em; white-space: pre-wrap; word-break: break-word; }
  p.warning { margin: 0 0 12px; padding: 8px 12px; background: #fff4e6; border: 1px solid #f08c00; border-radius: 8px; }
  footer { margin-top: 20px; color: #868e96; font-size: 12px; }
  @media (max-width: 900px) { .charts { grid-template-columns: 1fr; } .cards { grid-template-columns: repeat(2, 1fr); } }
</style>
</head>
<body>
<header>
  <h1>Run {{.Run}} · iteration {{.Iteration}}</h1>
  <p>Iteration #{{.Ordinal}}, stage <b>{{.Stage}}</b> · policy <b>{{.PolicyModel}}</b>{{if .ReferenceModel}} · reference <b>{{.ReferenceModel}}</b>{{end}} · {{.Settings.Generation.Samples}} samples per prompt at temperature {{.Settings.Generation.Temperature}}, top_p {{.Settings.Generation.TopP}} · read {{.Generated.Format "2006-01-02 15:04:05 UTC"}}</p>
</header>
{{- range .Warnings}}
<p class="warning">⚠ {{.}}</p>
{{- end}}
<section class="cards">
{{- range .Cards}}
  <div class="card"><div class="label">{{.Label}}</div><div class="value">{{.Value}}</div><div class="detail">{{.Detail}}</div></div>
{{- end}}
</section>
<section class="charts">
{{- range .Charts}}
  <figure id="{{.ID}}">
    <h2>{{.Title}}</h2>
    {{.SVG}}
    <figcaption>{{.Caption}}</figcaption>
    {{- if .Table}}
    <table><tr><th>{{.TableTitle}}</th><th class="n">count</th></tr>
    {{- range .Table}}<tr><td>{{trunc .Label 240}}</td><td class="n">{{.N}}</td></tr>{{end}}
    </table>
    {{- end}}
  </figure>
{{- end}}
</section>
<section class="top">
  <h2>Top selected pairs</h2>
  {{- if .Top}}
  <table>
    <tr><th class="n">rank</th><th>prompt</th><th>chosen</th><th>rejected</th><th class="n">reward<br>chosen / rejected</th><th class="n">margin<br>explicit / implicit</th><th class="n">AP</th></tr>
    {{- range .Top}}
    <tr><td class="n">{{.Rank}}</td><td class="text">{{trunc .Prompt 400}}</td><td class="text">{{trunc .Chosen 400}}</td><td class="text">{{trunc .Rejected 400}}</td>
      <td class="n">{{num .ChosenReward}} / {{num .RejectedReward}}</td><td class="n">{{num .ExplicitMargin}} / {{num .ImplicitMargin}}</td><td class="n">{{num .AlignmentPotential}}</td></tr>
    {{- end}}
  </table>
  {{- else}}<p>No pair is selected in this iteration.</p>{{end}}
</section>
<section class="top" id="data-quality">
  <h2>Data quality</h2>
  {{- if .Flags}}
  <table>
    <tr><th>reason</th><th>action</th><th>prompts</th><th>file or strategy</th><th class="n">count</th></tr>
    {{- range .Flags}}
    <tr><td>{{.Reason}}</td><td>{{if .Dropped}}dropped{{else}}kept, reported{{end}}</td><td>{{.Origin}}</td><td>{{.Source}}</td><td class="n">{{.Count}}</td></tr>
    {{- end}}
  </table>
  {{- if .NearExamples}}
  <table>
    <tr><th>near-duplicate</th><th>of the run's prompt</th><th class="n">Jaccard<br>estimated / exact</th></tr>
    {{- range .NearExamples}}
    <tr><td class="text">{{trunc .Text 300}}{{if .Strategy}} <i>({{.Strategy}})</i>{{end}}</td><td class="text">{{if .MatchedText}}{{trunc (deref .MatchedText) 300}}{{end}}</td>
      <td class="n">{{if .Estimated}}{{num (derefF .Estimated)}}{{end}} / {{if .Exact}}{{num (derefF .Exact)}}{{end}}</td></tr>
    {{- end}}
  </table>
  {{- end}}
  {{- if .ContaminatedExamples}}
  <table>
    <tr><th>contaminated prompt</th><th>benchmark file:row</th></tr>
    {{- range .ContaminatedExamples}}
    <tr><td class="text">{{trunc .Text 300}}{{if .Strategy}} <i>({{.Strategy}})</i>{{end}}</td><td>{{if .BenchmarkFile}}{{deref .BenchmarkFile}}:{{derefI .BenchmarkRow}}{{end}}</td></tr>
    {{- end}}
  </table>
  {{- end}}
  {{- else}}<p>No prompt of this iteration was found near-duplicate (dedup.near_threshold {{.Settings.Dedup.NearThreshold}}){{if .Settings.Decontaminate.Files}} or contaminated ({{len .Settings.Decontaminate.Files}} benchmark files, {{.Settings.Decontaminate.NGram}}-word n-grams){{else}}; no benchmark files are set (decontaminate.files){{end}}.</p>{{end}}
</section>
<footer>Every number here was read from PostgreSQL (tables pairs, responses, tasks, prompts, prompt_flags and the pair_details view) when the report was made; see the SQL cookbook (docs/sql.md) to query them yourself. Made by selfplay report.</footer>
</body>
</html>
`))
