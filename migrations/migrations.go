// Package migrations embeds the numbered SQL files that define selfplay's
// PostgreSQL schema. `selfplay migrate` and the tests apply the very same
// files through the store package.
package migrations

import "embed"

// FS holds the migration files, named NNNNN_description.sql in goose format.
//
//go:embed *.sql
var FS embed.FS
