// Command selfplay generates preference data for LLM alignment by self-play
// and selects it with the alignment-potential metric. See the README.
package main

import (
	"os"

	"github.com/selfplay/selfplay/cli"
)

func main() {
	os.Exit(cli.Execute())
}
