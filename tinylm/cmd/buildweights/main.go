// Command buildweights rebuilds the embedded tinylm model: it generates the
// dialogue corpus (tinylm/corpus), builds the vocabulary from it, trains the
// log-linear model by maximum likelihood and writes the weights file.
//
//	go run ./tinylm/cmd/buildweights -out tinylm/weights/tiny-0.bin.gz
//
// The defaults are the settings the committed weights were built with; the
// build is deterministic on one platform.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/corpus"
)

func main() {
	out := flag.String("out", "tinylm/weights/tiny-0.bin.gz", "weights file to write")
	seed := flag.Uint64("seed", corpus.DefaultSeed, "corpus seed")
	size := flag.Int("size", corpus.DefaultSize, "number of dialogues")
	dim := flag.Int("dim", 16, "embedding dimension")
	epochs := flag.Int("epochs", 30, "training epochs")
	lr := flag.Float64("lr", 0.01, "Adam learning rate")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *out, *seed, *size, *dim, *epochs, *lr); err != nil {
		fmt.Fprintln(os.Stderr, "buildweights:", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, out string, seed uint64, size, dim, epochs int, lr float64) error {
	data := corpus.Generate(seed, size)
	var texts []string
	for _, ex := range data {
		for _, m := range ex.Messages {
			texts = append(texts, m.Content)
		}
		texts = append(texts, ex.Response)
	}
	tok, err := tinylm.NewTokenizer(tinylm.BuildVocab(texts, 1, 0))
	if err != nil {
		return err
	}
	log.Info("vocabulary", "words", tok.Size(), "dialogues", len(data), "sample", strings.Join(tok.Words()[tinylm.NumSpecial:tinylm.NumSpecial+8], " "))
	m, err := tinylm.NewModel(tok, dim, 0.1, seed)
	if err != nil {
		return err
	}
	_, err = tinylm.TrainMLE(m, data, tinylm.MLEOptions{
		Epochs: epochs, LearningRate: lr, BatchSize: 32, Seed: seed,
		Progress: func(ep int, nll float64) { log.Info("epoch", "epoch", ep+1, "nll_per_token", nll) },
	})
	if err != nil {
		return err
	}
	if err := m.Save(out); err != nil {
		return err
	}
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	log.Info("wrote weights", "path", out, "bytes", st.Size())
	return nil
}
