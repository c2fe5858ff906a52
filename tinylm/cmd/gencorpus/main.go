// Command gencorpus writes the tinylm training corpus (or just its prompts)
// as JSON lines to standard output. The corpus is deterministic: the same
// seed and size give the same lines.
//
//	go run ./tinylm/cmd/gencorpus > corpus.jsonl                 # {"messages": [...], "response": "..."}
//	go run ./tinylm/cmd/gencorpus -prompts -n 200 -seed 9 > prompts.jsonl  # {"id": "p0000", "messages": [...]}
//
// The prompt lines are in the format of selfplay's prompt files.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/corpus"
)

func main() {
	n := flag.Int("n", corpus.DefaultSize, "number of dialogues")
	seed := flag.Uint64("seed", corpus.DefaultSeed, "generator seed")
	prompts := flag.Bool("prompts", false, "write only the prompts, as selfplay prompt-file lines")
	flag.Parse()
	if err := run(*n, *seed, *prompts); err != nil {
		fmt.Fprintln(os.Stderr, "gencorpus:", err)
		os.Exit(1)
	}
}

func run(n int, seed uint64, promptsOnly bool) error {
	if n < 0 {
		return fmt.Errorf("-n %d must not be negative", n)
	}
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	for i, ex := range corpus.Generate(seed, n) {
		var v any = ex
		if promptsOnly {
			v = struct {
				ID       string           `json:"id"`
				Messages []tinylm.Message `json:"messages"`
			}{fmt.Sprintf("p%04d", i), ex.Messages}
		}
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return w.Flush()
}
