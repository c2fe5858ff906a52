package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/selfplaytest"
)

// configKeys lists every key of the schedule file: sections' fields as
// dotted paths, named endpoints as endpoints.<name>.KEY and iterations as
// iterations[].KEY.
func configKeys(prefix string, t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		key := joinKey(prefix, tag)
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Struct && !isDuration(ft):
			keys = append(keys, configKeys(key, ft)...)
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, configKeys(key+".<name>", ft.Elem())...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, configKeys(key+"[]", ft.Elem())...)
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

func isDuration(t reflect.Type) bool { return t.PkgPath() == "time" && t.Name() == "Duration" }

// TestEveryKeyIsInTheReadme: the README's configuration reference has a
// row for every key the loader accepts. A row may name a key in full
// (`hooks.final_model`), for one endpoint (`endpoints.reward.kind` for
// endpoints.<name>.kind), or after a sibling as a suffix
// (`nats.tls.ca_file`, `.cert_file`).
func TestEveryKeyIsInTheReadme(t *testing.T) {
	var firstCells []string
	for _, row := range referenceRows(t) {
		firstCells = append(firstCells, row[0])
	}
	keys := configKeys("", reflect.TypeOf(Config{}))
	require.Contains(t, keys, "endpoints.<name>.base_url")
	require.Contains(t, keys, "iterations[].prompts.files")
	for _, key := range keys {
		documented := false
		dot := strings.LastIndex(key, ".")
		parent, last := key[:max(dot, 0)], key[dot+1:]
		oneEndpoint := regexp.MustCompile("`" + strings.Replace(regexp.QuoteMeta(key), "<name>", `\w+`, 1) + "`")
		for _, cell := range firstCells {
			if strings.Contains(cell, "`"+key+"`") || oneEndpoint.MatchString(cell) ||
				(dot > 0 && strings.Contains(cell, "`"+parent+".") && strings.Contains(cell, "`."+last+"`")) {
				documented = true
				break
			}
		}
		require.True(t, documented, "docs/configuration.md's reference has no row for %s", key)
	}
}

// referenceRows returns the rows of the first table under "## Configuration
// reference" in docs/configuration.md, each as its cells (the header and
// the |---| line left out; an escaped \| stays inside its cell).
func referenceRows(t *testing.T) [][]string {
	t.Helper()
	var rows [][]string
	inTable := false
	for _, line := range selfplaytest.DocLines(t, "docs/configuration.md", "## Configuration reference") {
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break
			}
			continue
		}
		inTable = true
		cells := selfplaytest.TableCells(line)
		if len(cells) < 3 || cells[0] == "key" || strings.HasPrefix(cells[0], "---") {
			continue
		}
		rows = append(rows, cells)
	}
	require.NotEmpty(t, rows, "the configuration reference has a table")
	return rows
}

var codeSpan = regexp.MustCompile("`([^`]*)`")

// rowKeys expands a key cell into its keys: `nats.tls.ca_file`,
// `.cert_file` names nats.tls.ca_file and nats.tls.cert_file.
func rowKeys(cell string) []string {
	var keys []string
	parent := ""
	for _, m := range codeSpan.FindAllStringSubmatch(cell, -1) {
		key := m[1]
		if strings.HasPrefix(key, ".") {
			key = parent + key
		} else if dot := strings.LastIndex(key, "."); dot > 0 {
			parent = key[:dot]
		}
		keys = append(keys, key)
	}
	return keys
}

// lookupKey walks cfg along a documented key: mapstructure names, a map
// entry by name, iterations[] as the iteration numbered it. ok is false
// when a map has no such entry; an unknown field is an error.
func lookupKey(cfg Config, key string, it int) (v reflect.Value, ok bool, err error) {
	v = reflect.ValueOf(cfg)
	for _, part := range strings.Split(key, ".") {
		slice := strings.HasSuffix(part, "[]")
		part = strings.TrimSuffix(part, "[]")
		switch v.Kind() {
		case reflect.Struct:
			found := false
			for i := 0; i < v.NumField(); i++ {
				if v.Type().Field(i).Tag.Get("mapstructure") == part {
					v, found = v.Field(i), true
					break
				}
			}
			if !found {
				return v, false, fmt.Errorf("%s: no key %q in %s", key, part, v.Type())
			}
		case reflect.Map:
			e := v.MapIndex(reflect.ValueOf(part))
			if !e.IsValid() {
				return e, false, nil
			}
			v = e
		default:
			return v, false, fmt.Errorf("%s: %q is inside a %s", key, part, v.Type())
		}
		if slice {
			if v.Kind() != reflect.Slice || v.Len() <= it {
				return v, false, fmt.Errorf("%s: %s has no element %d", key, part, it)
			}
			v = v.Index(it)
		}
	}
	return v, true, nil
}

// literalEquals reports whether a documented default, as written between
// backticks, is the value v: durations as time.Duration (`10m`), numbers
// as numbers (`1.0` is 1), `""` the empty string, `[a, b]` a list and `{}`
// an empty map.
func literalEquals(lit string, v reflect.Value) (bool, error) {
	if v.Type() == reflect.TypeOf(time.Duration(0)) {
		d, err := time.ParseDuration(lit)
		return err == nil && time.Duration(v.Int()) == d, err
	}
	switch v.Kind() {
	case reflect.String:
		if lit == `""` {
			lit = ""
		}
		return v.String() == lit, nil
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(lit, 10, 64)
		return err == nil && v.Int() == n, err
	case reflect.Float64, reflect.Float32:
		f, err := strconv.ParseFloat(lit, 64)
		return err == nil && v.Float() == f, err
	case reflect.Bool:
		b, err := strconv.ParseBool(lit)
		return err == nil && v.Bool() == b, err
	case reflect.Slice:
		if !strings.HasPrefix(lit, "[") || !strings.HasSuffix(lit, "]") {
			return false, fmt.Errorf("%q is not a [list]", lit)
		}
		var want []string
		if inner := strings.TrimSpace(lit[1 : len(lit)-1]); inner != "" {
			for _, s := range strings.Split(inner, ",") {
				want = append(want, strings.TrimSpace(s))
			}
		}
		got := make([]string, v.Len())
		for i := range got {
			got[i] = fmt.Sprint(v.Index(i).Interface())
		}
		return slices.Equal(got, want), nil
	case reflect.Map:
		if lit != "{}" {
			return false, fmt.Errorf("%q: only {} is read for a mapping", lit)
		}
		return v.Len() == 0, nil
	}
	return false, fmt.Errorf("cannot compare %q with a %s", lit, v.Type())
}

// show prints a configuration value as Go source, durations as 10m0s.
func show(v reflect.Value) string {
	if d, ok := v.Interface().(time.Duration); ok {
		return d.String()
	}
	return fmt.Sprintf("%#v", v.Interface())
}

// defaultsNotChecked lists the rows of the configuration reference whose
// default column TestReadmeDefaultsMatchTheCode cannot read, by key cell,
// with the reason. It is empty: every row is read. A row the test cannot
// read fails it until its default is written in one of the forms the test
// knows, or the row is listed here.
var defaultsNotChecked = map[string]string{}

var (
	// policy `http://…`, reward `http://…`; reward: `reward`
	perEndpointDefault = regexp.MustCompile("^\\w+:? `[^`]*`(, \\w+:? `[^`]*`)*$")
	perEndpointPart    = regexp.MustCompile("(\\w+):? `([^`]*)`")
	// `endpoints.reference.model`, else `""`
	fallbackDefault = regexp.MustCompile("^`([a-z_.]+)`, else `([^`]*)`$")
	// all five: the list the meaning column names
	allDefault = regexp.MustCompile(`^all (two|three|four|five|six|seven|eight|nine|ten)$`)
	numberWord = map[string]int{"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
)

// TestReadmeDefaultsMatchTheCode: the default column of the configuration
// reference is what Load gives a key the schedule leaves out. A default is
// a literal between backticks (see literalEquals) or one of these forms:
//   - per endpoint, as in policy `A`, reward `B`: those endpoints' values,
//     and the zero value for the other endpoints Defaults has;
//   - none: the zero value (an empty list); absent: no such entry;
//   - —: no default, Load reports the key missing;
//   - `K`, else `V`: K's value when K is set, else V;
//   - all five: the list of the five values named in the meaning column.
//
// endpoints.<name>.KEY is checked for the endpoints of Defaults (policy and
// reward) and for one the schedule adds; iterations[].KEY on an iteration
// that leaves KEY out.
func TestReadmeDefaultsMatchTheCode(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, EnvPrefix+"_") {
			t.Setenv(k, "") // restored after the test
			require.NoError(t, os.Unsetenv(k))
		}
	}
	write := func(body string) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), "selfplay.yaml")
		require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
		return path
	}
	load := func(body string) *Config {
		t.Helper()
		cfg, err := Load(write(body))
		require.NoError(t, err, "the test's schedule loads with the code's defaults")
		return cfg
	}
	const iterations = `
iterations:
  - {name: a, policy_model: m, prompts: {files: [p.jsonl]}, overrides: {evolve: {enabled: true}}}
  - {name: b, policy_model: m, prompts: {evolved: true}}
`
	// extra is an endpoint the schedule adds, with nothing but base_url.
	cfg := load("endpoints: {extra: {base_url: 'http://127.0.0.1:9/v1'}}\n" + iterations)
	withRef := load("endpoints: {reference: {base_url: 'http://127.0.0.1:9/v1', model: ref-m}}\n" + iterations)
	// missing: the problems of an iteration that gives nothing but files.
	var missing []Problem
	if _, err := Load(write("iterations: [{prompts: {files: [p.jsonl]}}]\n")); err != nil {
		var cerr *Error
		require.ErrorAs(t, err, &cerr)
		missing = cerr.Problems
	}
	defaultEndpoints := sortedKeys(Defaults().Endpoints)

	// iteration picks an iteration that leaves key out of the schedule: b
	// has no files (it takes the prompts a evolved, whatever the
	// evolve.enabled default, as a overrides it) and no overrides.
	iteration := func(key string) int {
		if key == "iterations[].prompts.files" || key == "iterations[].overrides" {
			return 1
		}
		return 0
	}
	// value is key's value in c, for endpoint ep when key is per endpoint.
	value := func(c *Config, key, ep string) (reflect.Value, bool) {
		t.Helper()
		v, ok, err := lookupKey(*c, strings.Replace(key, "<name>", ep, 1), iteration(key))
		require.NoError(t, err, "docs/configuration.md names a key the configuration does not have")
		return v, ok
	}
	compare := func(key, ep, lit string, v reflect.Value) {
		t.Helper()
		if ep != "" {
			key = strings.Replace(key, "<name>", ep, 1)
		}
		ok, err := literalEquals(lit, v)
		if err != nil {
			t.Errorf("docs/configuration.md: %s: cannot read the default `%s` as a %s: %v", key, lit, v.Type(), err)
		} else if !ok {
			t.Errorf("docs/configuration.md: %s defaults to `%s`, the code to %s", key, lit, show(v))
		}
	}

	checked := 0
	seenExceptions := map[string]bool{}
	for _, row := range referenceRows(t) {
		keyCell, def, meaning := row[0], row[1], row[2]
		if reason, ok := defaultsNotChecked[keyCell]; ok {
			t.Logf("not checked: %s (%s): %s", keyCell, def, reason)
			seenExceptions[keyCell] = true
			continue
		}
		keys := rowKeys(keyCell)
		require.NotEmpty(t, keys, "a row of the configuration reference names no key: %v", row)
		for _, key := range keys {
			endpoints := []string{""}
			if strings.Contains(key, "<name>") {
				endpoints = slices.Concat(defaultEndpoints, []string{"extra"})
			}
			literal := codeSpan.FindStringSubmatch(def)
			switch {
			case literal != nil && literal[0] == def:
				for _, ep := range endpoints {
					if ep == "extra" && strings.HasSuffix(key, ".base_url") {
						continue // the schedule sets it
					}
					v, ok := value(cfg, key, ep)
					require.True(t, ok, "%s: no such entry", key)
					compare(key, ep, literal[1], v)
				}
			case perEndpointDefault.MatchString(def):
				require.Contains(t, key, "<name>", "%s: a per-endpoint default for a key of one endpoint", key)
				named := map[string]string{}
				for _, m := range perEndpointPart.FindAllStringSubmatch(def, -1) {
					named[m[1]] = m[2]
				}
				for _, ep := range defaultEndpoints {
					v, ok := value(cfg, key, ep)
					require.True(t, ok)
					lit, isNamed := named[ep]
					if !isNamed {
						if !v.IsZero() {
							t.Errorf("docs/configuration.md: %s names no default for endpoint %s, the code has %s", key, ep, show(v))
						}
						continue
					}
					compare(key, ep, lit, v)
				}
				for ep := range named {
					if !slices.Contains(defaultEndpoints, ep) {
						t.Errorf("docs/configuration.md: %s names a default for endpoint %s, which the defaults do not have", key, ep)
					}
				}
			case def == "none":
				for _, ep := range endpoints {
					if v, ok := value(cfg, key, ep); ok && !v.IsZero() {
						t.Errorf("docs/configuration.md: %s defaults to none, the code to %s", key, show(v))
					}
				}
			case def == "absent":
				for _, ep := range endpoints {
					if v, ok := value(cfg, key, ep); ok {
						t.Errorf("docs/configuration.md: %s is absent by default, the code has %s", key, show(v))
					}
				}
			case def == "—":
				want := strings.Replace(key, "[]", "[0]", 1)
				if !slices.ContainsFunc(missing, func(p Problem) bool { return p.Key == want }) {
					t.Errorf("docs/configuration.md: %s has no default (—), yet a schedule leaving it out has no problem with it: %v", key, missing)
				}
			case fallbackDefault.MatchString(def):
				m := fallbackDefault.FindStringSubmatch(def)
				from, ok := value(withRef, m[1], "")
				require.True(t, ok && !from.IsZero(), "%s: the test's schedule sets no %s", key, m[1])
				if v, _ := value(withRef, key, ""); !v.Equal(from) {
					t.Errorf("docs/configuration.md: %s defaults to %s (%s), the code to %s", key, m[1], show(from), show(v))
				}
				if fallback, ok := value(cfg, m[1], ""); ok && !fallback.IsZero() {
					t.Fatalf("%s: set in the test's base schedule", m[1])
				}
				v, _ := value(cfg, key, "")
				compare(key, "", m[2], v)
			case allDefault.MatchString(def):
				var want []string
				for _, m := range codeSpan.FindAllStringSubmatch(meaning, -1) {
					want = append(want, m[1])
				}
				if n := numberWord[allDefault.FindStringSubmatch(def)[1]]; len(want) != n {
					t.Errorf("docs/configuration.md: %s defaults to %s, but its meaning names %d values: %v", key, def, len(want), want)
				}
				v, _ := value(cfg, key, "")
				compare(key, "", "["+strings.Join(want, ", ")+"]", v)
			default:
				t.Errorf("docs/configuration.md: %s: cannot read the default %q; write it as a `literal` or list the row in defaultsNotChecked with the reason", key, def)
			}
			checked++
		}
	}
	for keyCell := range defaultsNotChecked {
		require.True(t, seenExceptions[keyCell], "defaultsNotChecked lists %s, which has no row", keyCell)
	}
	require.Greater(t, checked, 60, "keys checked")
}
