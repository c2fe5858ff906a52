package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/tinylm"
)

// modelNames resolves the model arguments of `lm train` and `lm eval` the
// way `lm serve` names what it serves: --model NAME=SPEC gives names to
// specs (default tiny-0=builtin), and with --models-dir DIR a bare NAME is
// the file DIR/NAME.bin.gz. So a train hook can say `--init {policy_model}
// --out {next_model}` and hit exactly the files the server watches.
type modelNames struct {
	specs []string
	dir   string
}

func (n *modelNames) flags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&n.specs, "model", nil, "name a model as NAME=PATH (repeatable; PATH builtin = embedded; default tiny-0=builtin), as lm serve does")
	fl.StringVar(&n.dir, "models-dir", "", "directory of NAME.bin.gz files (lm serve --models-dir): a bare NAME stands for DIR/NAME.bin.gz")
}

// aliases parses the --model specs.
func (n *modelNames) aliases() (map[string]string, error) {
	specs := n.specs
	if len(specs) == 0 {
		specs = []string{"tiny-0=builtin"}
	}
	out := map[string]string{}
	for _, spec := range specs {
		name, path, ok := strings.Cut(spec, "=")
		if !ok || name == "" || path == "" {
			return nil, fmt.Errorf("--model %q: want NAME=PATH (PATH \"builtin\" for the embedded model)", spec)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--model: model name %q given twice", name)
		}
		out[name] = path
	}
	return out, nil
}

// isBareName reports whether v names a model rather than a file: no path
// separator and no weights-file suffix.
func isBareName(v string) bool {
	return v != "builtin" && !strings.ContainsRune(v, filepath.Separator) && !strings.ContainsRune(v, '/') &&
		!strings.HasSuffix(v, tinylm.ModelFileSuffix)
}

// spec turns a model argument into something tinylm.LoadSpec reads.
func (n *modelNames) spec(v string) (string, error) {
	al, err := n.aliases()
	if err != nil {
		return "", err
	}
	if s, ok := al[v]; ok {
		return s, nil
	}
	if n.dir != "" && isBareName(v) {
		return filepath.Join(n.dir, v+tinylm.ModelFileSuffix), nil
	}
	return v, nil
}

// load resolves and loads a model argument.
func (n *modelNames) load(flag, v string) (*tinylm.Model, string, error) {
	if v == "" {
		return nil, "", fmt.Errorf("%s is empty: give builtin, a weights file, or a model name", flag)
	}
	spec, err := n.spec(v)
	if err != nil {
		return nil, "", err
	}
	m, err := tinylm.LoadSpec(spec)
	if err != nil {
		return nil, "", fmt.Errorf("%s %s: %w", flag, v, err)
	}
	return m, spec, nil
}

// outPath is where a trained model named or pathed v is written.
func (n *modelNames) outPath(v string) string {
	if n.dir != "" && isBareName(v) {
		return filepath.Join(n.dir, v+tinylm.ModelFileSuffix)
	}
	return v
}
