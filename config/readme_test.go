package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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
	readme, err := os.ReadFile(filepath.Join("..", "docs", "configuration.md"))
	require.NoError(t, err)
	text := string(readme)
	start := strings.Index(text, "## Configuration reference")
	require.GreaterOrEqual(t, start, 0, "docs/configuration.md has a configuration reference")
	end := strings.Index(text[start+1:], "\n## ")
	if end < 0 {
		end = len(text) - start - 1
	}
	var firstCells []string
	for _, line := range strings.Split(text[start:start+1+end], "\n") {
		if cells := strings.Split(line, "|"); len(cells) > 2 && strings.HasPrefix(line, "|") {
			firstCells = append(firstCells, cells[1])
		}
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
