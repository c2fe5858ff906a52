package config

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// FromSnapshot rebuilds the configuration a run stored (Snapshot's JSON,
// as runs.config holds it), for the commands that work from the database
// alone: export and report read export.dir, export.formats and the
// iterations from it. URLs in it are redacted, so it is not for
// connecting; its Hash is the hash the run's own exports recorded.
func FromSnapshot(b []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // seeds up to 2^63-1 do not survive float64
	var settings map[string]any
	if err := dec.Decode(&settings); err != nil {
		return nil, fmt.Errorf("stored configuration: %w", err)
	}
	var cfg Config
	if err := decode(settings, &cfg); err != nil {
		return nil, fmt.Errorf("stored configuration: %w", err)
	}
	if ps := cfg.resolveOverrides(settings); len(ps) > 0 {
		return nil, &Error{File: "stored configuration", Problems: ps}
	}
	return &cfg, nil
}
