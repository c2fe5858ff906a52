package tinylm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// ModelFileSuffix is the file name ending of the weights files a models
// directory serves: DIR/NAME.bin.gz is served as model NAME.
const ModelFileSuffix = ".bin.gz"

// ModelsChange is what one Rescan of the models directory changed.
type ModelsChange struct {
	// Loaded are the names of models newly served or replaced by a newer file.
	Loaded []string `json:"loaded"`
	// Removed are the names whose files disappeared.
	Removed []string `json:"removed"`
	// Failed maps the names of files that could not be served (a corrupt
	// file, a name taken by a fixed model, the reward model or a loaded
	// adapter) to the reason. A file is reported once per version.
	Failed map[string]string `json:"failed,omitempty"`
}

// Empty reports whether the rescan changed nothing.
func (c ModelsChange) Empty() bool {
	return len(c.Loaded) == 0 && len(c.Removed) == 0 && len(c.Failed) == 0
}

// modelDir is the state of a watched models directory.
type modelDir struct {
	path string
	// scan serialises rescans; Server.mu guards the served models.
	scan sync.Mutex
	// seen is the file version last looked at for each name, loaded or not.
	seen map[string]os.FileInfo
	// served are the names currently served from the directory.
	served map[string]bool
}

func (s *Server) openModelsDir(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("models directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("models directory %s is not a directory", path)
	}
	s.dir = &modelDir{path: path, seen: map[string]os.FileInfo{}, served: map[string]bool{}}
	ch, err := s.Rescan()
	if err != nil {
		return err
	}
	for name, reason := range ch.Failed {
		s.log.Warn("model file not served", "model", name, "reason", reason)
	}
	return nil
}

// ErrNoModelsDir is returned by Rescan on a server without a models directory.
var ErrNoModelsDir = errors.New("this server watches no models directory (start it with --models-dir)")

// Rescan brings the models served from the models directory in line with
// its files: a new DIR/NAME.bin.gz is loaded and served as NAME, a file
// replaced since the last look (another inode, size or modification time,
// as an atomic Save gives) is loaded again and swapped in, and the model of
// a removed file stops being served. Hidden files (Save's temporary files
// among them) and other names are ignored. A file that fails to load leaves
// the version served before it, if any, in place. Requests already running
// keep the model they started with. Rescan is safe for concurrent use.
func (s *Server) Rescan() (ModelsChange, error) {
	d := s.dir
	if d == nil {
		return ModelsChange{}, ErrNoModelsDir
	}
	d.scan.Lock()
	defer d.scan.Unlock()
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return ModelsChange{}, fmt.Errorf("scan models directory: %w", err)
	}
	var ch ModelsChange
	fail := func(name, reason string) {
		if ch.Failed == nil {
			ch.Failed = map[string]string{}
		}
		ch.Failed[name] = reason
	}
	loaded := map[string]*Model{}
	present := map[string]bool{}
	for _, e := range entries {
		file := e.Name()
		name, ok := strings.CutSuffix(file, ModelFileSuffix)
		if !ok || name == "" || strings.HasPrefix(file, ".") {
			continue
		}
		info, err := os.Stat(filepath.Join(d.path, file))
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		present[name] = true
		if prev, ok := d.seen[name]; ok && os.SameFile(prev, info) && prev.ModTime().Equal(info.ModTime()) && prev.Size() == info.Size() {
			continue
		}
		d.seen[name] = info
		switch {
		case s.fixed[name]:
			fail(name, fmt.Sprintf("%s: the name is taken by a --model given at start", file))
			continue
		case name == s.reward:
			fail(name, fmt.Sprintf("%s: the name is the reward model's", file))
			continue
		}
		m, err := Load(filepath.Join(d.path, file))
		if err != nil {
			fail(name, err.Error())
			continue
		}
		loaded[name] = m
	}
	for name := range d.seen {
		if !present[name] {
			delete(d.seen, name)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, m := range loaded {
		if _, ok := s.adapters[name]; ok {
			fail(name, fmt.Sprintf("%s: the name is taken by an adapter loaded through /v1/load_lora_adapter", name+ModelFileSuffix))
			continue
		}
		s.models[name] = m
		d.served[name] = true
		ch.Loaded = append(ch.Loaded, name)
	}
	for name := range d.served {
		if !present[name] {
			delete(s.models, name)
			delete(d.served, name)
			ch.Removed = append(ch.Removed, name)
		}
	}
	s.names = s.names[:0]
	for name := range s.models {
		s.names = append(s.names, name)
	}
	slices.Sort(s.names)
	slices.Sort(ch.Loaded)
	slices.Sort(ch.Removed)
	return ch, nil
}

// Watch rescans the models directory every interval until ctx ends,
// logging what changed; it returns ErrNoModelsDir at once on a server
// without one. Scan errors (the directory gone, say) are logged and
// retried at the next tick.
func (s *Server) Watch(ctx context.Context, interval time.Duration) error {
	if s.dir == nil {
		return ErrNoModelsDir
	}
	if interval <= 0 {
		return fmt.Errorf("watch models directory: interval %s must be positive", interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ch, err := s.Rescan()
		if err != nil {
			s.log.WarnContext(ctx, "models directory scan failed", "dir", s.dir.path, "err", err)
			continue
		}
		s.logChange(ctx, ch)
	}
}

func (s *Server) logChange(ctx context.Context, ch ModelsChange) {
	if len(ch.Loaded) > 0 || len(ch.Removed) > 0 {
		s.log.InfoContext(ctx, "models directory changed", "loaded", strings.Join(ch.Loaded, ","),
			"removed", strings.Join(ch.Removed, ","), "models", strings.Join(s.ModelNames(), ","))
	}
	for name, reason := range ch.Failed {
		s.log.WarnContext(ctx, "model file not served", "model", name, "reason", reason)
	}
}

// loadResponse is the answer of POST /v1/load.
type loadResponse struct {
	ModelsChange
	// Models are all generative models served after the rescan.
	Models []string `json:"models"`
}

// handleLoad rescans the models directory now, so a trainer that just
// wrote a model need not wait for the next tick.
func (s *Server) handleLoad(w http.ResponseWriter, r *http.Request) {
	ch, err := s.Rescan()
	switch {
	case errors.Is(err, ErrNoModelsDir):
		writeError(w, badRequest("", "%v", err))
		return
	case err != nil:
		writeError(w, &apiError{status: http.StatusInternalServerError, typ: "InternalServerError", msg: err.Error()})
		return
	}
	s.logChange(r.Context(), ch)
	if ch.Loaded == nil {
		ch.Loaded = []string{}
	}
	if ch.Removed == nil {
		ch.Removed = []string{}
	}
	writeJSON(w, http.StatusOK, loadResponse{ModelsChange: ch, Models: s.ModelNames()})
}
