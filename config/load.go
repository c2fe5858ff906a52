package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/selfplay/selfplay/internal/similar"
)

// EnvPrefix prefixes environment overrides: SELFPLAY_<SECTION>_<KEY>, for
// example SELFPLAY_DATABASE_URL or SELFPLAY_GENERATION_SAMPLES.
const EnvPrefix = "SELFPLAY"

// Problem is one thing wrong with a configuration: the key path (for
// example "iterations[1].policy_model") and what is expected there.
type Problem struct {
	Key     string
	Message string
}

func (p Problem) String() string { return p.Key + ": " + p.Message }

// Error lists every problem found while loading a configuration, so a user
// fixes them all in one go.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	name := e.File
	if name == "" {
		name = "configuration"
	}
	fmt.Fprintf(&b, "%s: %d problem(s):", name, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Load reads the YAML schedule at path (no file when path is ""), applies
// the defaults and the SELFPLAY_* environment overrides, and validates the
// result strictly: unknown keys, wrong types and out-of-range values are all
// reported at once in an *Error.
func Load(path string) (*Config, error) {
	return loadWith(path, nil)
}

// LoadDatabase is Load for the commands that need only the database
// (migrate, status, export, report): the file may be missing (path "",
// or the default path not there) or hold only some sections, and only
// the database.url and unknown keys are checked; the rest of what these
// commands need is the run's stored schedule. pathGiven says the user named
// the file (-c or SELFPLAY_CONFIG), which must then exist.
func LoadDatabase(path string, pathGiven bool) (*Config, error) {
	if path != "" && !pathGiven {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			path = ""
		}
	}
	return loadWith(path, func(p Problem) bool {
		return p.Key == "database" || strings.HasPrefix(p.Key, "database.") || strings.HasPrefix(p.Message, "unknown key")
	})
}

// loadWith loads as Load does, reporting only the problems keep accepts
// (all of them when keep is nil).
func loadWith(path string, keep func(Problem) bool) (*Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	for key, value := range flatten("", toMap(reflect.ValueOf(Defaults()))) {
		v.SetDefault(key, value)
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	if path != "" {
		b, err := readSchedule(path)
		if err != nil {
			return nil, err
		}
		if err := v.ReadConfig(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("parse config %s: %w", path, err)
		}
	}
	settings := v.AllSettings()
	// Environment variables for keys not in the file or the defaults (e.g.
	// an endpoint's api_key_env) are invisible to AllSettings; bind the
	// per-endpoint keys explicitly so SELFPLAY_ENDPOINTS_<NAME>_<KEY> works.
	if eps, ok := settings["endpoints"].(map[string]any); ok {
		for name := range eps {
			for _, key := range fieldKeys(reflect.TypeOf(Endpoint{})) {
				full := "endpoints." + name + "." + key
				if val, ok := os.LookupEnv(EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(full, ".", "_"))); ok {
					v.Set(full, val)
				}
			}
		}
		settings = v.AllSettings()
	}

	var problems []Problem
	problems = append(problems, unknownKeys("", settings, reflect.TypeOf(Config{}))...)

	var cfg Config
	if err := decode(settings, &cfg); err != nil {
		problems = append(problems, decodeProblems("", err)...)
	}
	cfg.Path = path
	for name, ep := range cfg.Endpoints {
		cfg.Endpoints[name] = endpointDefaults(ep)
	}
	problems = append(problems, cfg.resolveOverrides(settings)...)
	// A key that failed to decode holds its zero value; range checks on it
	// would only repeat the problem.
	undecodable := map[string]bool{}
	for _, p := range problems {
		undecodable[p.Key] = true
	}
	for _, p := range cfg.validate() {
		if !undecodable[p.Key] {
			problems = append(problems, p)
		}
	}
	if keep != nil {
		problems = slices.DeleteFunc(problems, func(p Problem) bool { return !keep(p) })
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Key < problems[j].Key })
		return nil, &Error{File: path, Problems: problems}
	}
	return &cfg, nil
}

// MaxScheduleBytes bounds the schedule file, 1 MiB: a schedule of a
// thousand iterations is a few hundred KiB, and parsing YAML takes far more
// memory than the file's size (a 72 MB file took 6.4 GB to check).
const MaxScheduleBytes = 1 << 20

// readSchedule reads the schedule file, refusing one over MaxScheduleBytes
// without reading more of it, and drops a leading UTF-8 byte order mark.
func readSchedule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxScheduleBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(b) > MaxScheduleBytes {
		return nil, fmt.Errorf("read config %s: larger than %d bytes (MaxScheduleBytes); a schedule is a small YAML file, and prompts go in prompts.files", path, MaxScheduleBytes)
	}
	return bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), nil
}

func decode(input any, out any) error {
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           out,
		WeaklyTypedInput: true,
		Metadata:         nil,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
			strictNumbers,
		),
	})
	if err != nil {
		return err
	}
	return dec.Decode(input)
}

// decodeProblems turns mapstructure's joined errors into one Problem per key.
func decodeProblems(prefix string, err error) []Problem {
	var out []Problem
	var walk func(error)
	walk = func(err error) {
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range joined.Unwrap() {
				walk(e)
			}
			return
		}
		var de *mapstructure.DecodeError
		if errors.As(err, &de) {
			msg := de.Unwrap().Error()
			var pe *mapstructure.ParseError
			var ue *mapstructure.UnconvertibleTypeError
			switch {
			case errors.As(de, &pe):
				msg = fmt.Sprintf("expected %s, got %q", typeWord(pe.Expected.Type()), fmt.Sprint(pe.Value))
			case errors.As(de, &ue):
				msg = fmt.Sprintf("expected %s, got %s", typeWord(ue.Expected.Type()), describe(ue.Value))
			case strings.Contains(msg, "duration"):
				msg = "expected a duration like 30s or 10m (" + msg + ")"
			}
			out = append(out, Problem{Key: joinKey(prefix, de.Name()), Message: msg})
			return
		}
		out = append(out, Problem{Key: strings.TrimSuffix(prefix, "."), Message: err.Error()})
	}
	walk(err)
	return out
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func typeWord(t reflect.Type) string {
	if t == reflect.TypeOf(time.Duration(0)) {
		return "a duration like 30s or 10m"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "a whole number"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

func describe(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%q", fmt.Sprint(v))
}

// toMap renders a struct as a map keyed by mapstructure tags, skipping "-".
func toMap(v reflect.Value) map[string]any {
	out := map[string]any{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		f := v.Field(i)
		if d, ok := f.Interface().(time.Duration); ok {
			out[tag] = d.String()
			continue
		}
		switch f.Kind() {
		case reflect.Struct:
			out[tag] = toMap(f)
		case reflect.Slice:
			if f.Type().Elem().Kind() != reflect.Struct {
				out[tag] = f.Interface()
				continue
			}
			list := make([]any, f.Len())
			for j := range list {
				list[j] = toMap(f.Index(j))
			}
			out[tag] = list
		case reflect.Map:
			m := map[string]any{}
			for _, k := range f.MapKeys() {
				e := f.MapIndex(k)
				if e.Kind() == reflect.Struct {
					m[k.String()] = toMap(e)
				} else {
					m[k.String()] = e.Interface()
				}
			}
			out[tag] = m
		default:
			out[tag] = f.Interface()
		}
	}
	return out
}

// flatten turns nested maps into dotted keys, leaving lists as values.
func flatten(prefix string, m map[string]any) map[string]any {
	out := map[string]any{}
	for k, val := range m {
		key := joinKey(prefix, k)
		if sub, ok := val.(map[string]any); ok && len(sub) > 0 {
			for kk, vv := range flatten(key, sub) {
				out[kk] = vv
			}
			continue
		}
		out[key] = val
	}
	return out
}

func fieldKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if tag := t.Field(i).Tag.Get("mapstructure"); tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}

// overrideSections are the sections an iteration may override, with types.
var overrideSections = map[string]reflect.Type{
	"generation": reflect.TypeOf(Generation{}),
	"scoring":    reflect.TypeOf(Scoring{}),
	"selection":  reflect.TypeOf(Selection{}),
	"evolve":     reflect.TypeOf(Evolve{}),
}

// unknownKeys walks raw settings against the struct type and reports every
// key the type does not have, with a suggestion when one is close.
func unknownKeys(prefix string, raw any, t reflect.Type) []Problem {
	var out []Problem
	switch t.Kind() {
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			return nil // a type problem, reported by decode
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			if tag := t.Field(i).Tag.Get("mapstructure"); tag != "" && tag != "-" {
				fields[tag] = t.Field(i).Type
			}
		}
		keys := sortedKeys(m)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				out = append(out, Problem{Key: joinKey(prefix, k), Message: "unknown key" + suggest(k, fields)})
				continue
			}
			if t == reflect.TypeOf(Iteration{}) && k == "overrides" {
				out = append(out, unknownOverrideKeys(joinKey(prefix, k), m[k])...)
				continue
			}
			out = append(out, unknownKeys(joinKey(prefix, k), m[k], ft)...)
		}
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			return nil
		}
		for _, k := range sortedKeys(m) {
			out = append(out, unknownKeys(joinKey(prefix, k), m[k], t.Elem())...)
		}
	case reflect.Slice:
		list, ok := raw.([]any)
		if !ok {
			return nil
		}
		for i, e := range list {
			out = append(out, unknownKeys(fmt.Sprintf("%s[%d]", prefix, i), e, t.Elem())...)
		}
	}
	return out
}

func unknownOverrideKeys(prefix string, raw any) []Problem {
	m, ok := raw.(map[string]any)
	if !ok {
		if raw == nil {
			return nil
		}
		return []Problem{{Key: prefix, Message: "expected a mapping of sections (generation, scoring, selection, evolve)"}}
	}
	var out []Problem
	for _, k := range sortedKeys(m) {
		t, ok := overrideSections[k]
		if !ok {
			out = append(out, Problem{Key: joinKey(prefix, k), Message: "cannot be overridden per iteration; expected one of generation, scoring, selection, evolve" + suggest(k, overrideSections)})
			continue
		}
		out = append(out, unknownKeys(joinKey(prefix, k), m[k], t)...)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// suggest proposes the closest known key within edit distance 2.
func suggest[V any](key string, known map[string]V) string {
	best, bestD := "", 3
	for _, k := range sortedKeys(known) {
		if d := similar.Distance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return "; expected one of " + strings.Join(sortedKeys(known), ", ")
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// resolveOverrides computes each iteration's effective sections: the global
// section settings with the iteration's overrides merged on top.
func (c *Config) resolveOverrides(settings map[string]any) []Problem {
	var problems []Problem
	for i := range c.Iterations {
		it := &c.Iterations[i]
		it.Generation, it.Scoring, it.Selection, it.Evolve = c.Generation, c.Scoring, c.Selection, c.Evolve
		it.Dedup, it.Decontaminate, it.LearningCheck = c.Dedup, c.Decontaminate, c.LearningCheck
		it.Decontaminate.Files = append([]string{}, c.Decontaminate.Files...)
		if it.ReferenceModel == "" {
			// A reference endpoint that names its model scores every
			// iteration with it unless the iteration names another.
			it.ReferenceModel = c.Endpoints["reference"].Model
		}
		it.Evolve.Strategies = append([]string(nil), c.Evolve.Strategies...)
		for section, raw := range it.Overrides {
			over, ok := raw.(map[string]any)
			if !ok || overrideSections[section] == nil {
				continue // reported by unknownKeys
			}
			base, _ := settings[section].(map[string]any)
			merged := map[string]any{}
			for k, v := range base {
				merged[k] = v
			}
			for k, v := range over {
				merged[k] = v
			}
			var target any
			switch section {
			case "generation":
				target = &it.Generation
			case "scoring":
				target = &it.Scoring
			case "selection":
				target = &it.Selection
			case "evolve":
				target = &it.Evolve
			}
			if err := decode(merged, target); err != nil {
				problems = append(problems, decodeProblems(fmt.Sprintf("iterations[%d].overrides.%s", i, section), err)...)
			}
		}
	}
	return problems
}
