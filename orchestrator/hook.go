package orchestrator

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/selfplay/selfplay/config"
)

// train runs the train hook on this iteration's export, then waits until
// the next iteration's policy model is served. With no hook and the same
// model next, it does nothing. After the last iteration the next model is
// hooks.final_model, waited for only when the hook made it.
func (s *iterationState) train(ctx context.Context) error {
	hook := s.o.cfg.Hooks
	nextModel := hook.FinalModel
	if s.next != nil {
		nextModel = s.next.PolicyModel
	}
	if len(hook.Train) > 0 {
		dir := filepath.Join(s.o.cfg.Export.Dir, s.run.Name, s.it.Name)
		vars := map[string]string{
			"{dataset}":      filepath.Join(dir, "train.jsonl"),
			"{manifest}":     filepath.Join(dir, "manifest.json"),
			"{run}":          s.run.Name,
			"{iteration}":    s.it.Name,
			"{policy_model}": s.it.PolicyModel,
			"{next_model}":   nextModel,
		}
		if err := runHook(ctx, hook.Train, vars, hook.TrainTimeout, s.o.log.With("iteration", s.it.Name, "hook", "train")); err != nil {
			if ctx.Err() != nil {
				return ctx.Err() // stopped (or the run lock was lost), not the hook's failure
			}
			// The hook's own failure: never an outage, whatever it printed.
			return &permanentError{err}
		}
	}
	if s.next == nil && (len(hook.Train) == 0 || nextModel == "") {
		return nil
	}
	if len(hook.Train) == 0 && nextModel == s.it.PolicyModel {
		return nil
	}
	return s.waitForModel(ctx, nextModel)
}

// Substitute replaces the placeholders in each argument. Each argument
// stays one argument whatever the values hold: no shell ever sees them.
// A value that itself contains a placeholder stays as it is: each
// argument is scanned once.
func Substitute(argv []string, vars map[string]string) []string {
	pairs := make([]string, 0, 2*len(vars))
	for k, v := range vars {
		pairs = append(pairs, k, v)
	}
	r := strings.NewReplacer(pairs...)
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = r.Replace(a)
	}
	return out
}

// hookTail is how many lines of a failed hook's output the error carries.
const hookTail = 20

// runHook runs argv (after substitution) with a timeout, logging its
// output line by line; a non-zero exit or the timeout is an error with the
// tail of the output.
func runHook(ctx context.Context, argv []string, vars map[string]string, timeout time.Duration, log interface {
	Info(string, ...any)
}) error {
	args := Substitute(argv, vars)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.WaitDelay = 5 * time.Second
	// The hook dies with the orchestrator, so a killed and restarted
	// orchestrator does not leave a first training run going beside the
	// second.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var mu sync.Mutex
	var tail []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			log.Info("hook output", "line", line)
			mu.Lock()
			tail = append(tail, line)
			if len(tail) > hookTail {
				tail = tail[1:]
			}
			mu.Unlock()
		}
	}()
	// The template, not the substituted arguments, and with the URLs in it
	// redacted: the log must not carry what the values may hold.
	log.Info("running hook", "argv_template", config.RedactArgs(argv))
	err := cmd.Run()
	pw.Close()
	<-done
	if err == nil {
		return nil
	}
	mu.Lock()
	out := strings.Join(tail, "\n")
	mu.Unlock()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("train hook %q timed out after %s; last output:\n%s", args[0], timeout, out)
	}
	return fmt.Errorf("train hook %q: %w; last output:\n%s", args[0], err, out)
}

// waitForModel polls /v1/models of every policy replica until model is
// served by at least one and by every replica that answers HTTP, or
// hooks.wait_for_model passes. A replica that gives no HTTP response at all
// (the client's *url.Error: refused, reset, unreachable) is down; the
// workers' clients send it no work while another replica is up, so it does
// not hold the run.
func (s *iterationState) waitForModel(ctx context.Context, model string) error {
	var urls []string
	for _, base := range s.o.cfg.Endpoints["policy"].URLs() {
		urls = append(urls, modelsURL(base))
	}
	key, err := config.Secret("endpoints.policy.api_key_env", s.o.cfg.Endpoints["policy"].APIKeyEnv)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(s.o.cfg.Hooks.WaitForModel)
	logged := false
	for {
		served, down := 0, 0
		var lastErr error
		lastURL := urls[0]
		for _, url := range urls {
			ok, err := serves(ctx, s.o.opts.HTTPClient, url, key, model)
			var noResponse *neturl.Error
			switch {
			case ok:
				served++
			case errors.As(err, &noResponse):
				down++
				lastErr, lastURL = err, url
			default:
				lastErr, lastURL = err, url
			}
		}
		if served > 0 && served+down == len(urls) {
			s.o.log.InfoContext(ctx, "next policy model is served", "model", model, "replicas", served, "replicas_down", down)
			return nil
		}
		if time.Now().After(deadline) {
			shown := config.RedactURL(lastURL)
			if lastErr == nil {
				return fmt.Errorf("model %q was not served at %s within hooks.wait_for_model %s: the server answered, but its model list does not name %q", model, shown, s.o.cfg.Hooks.WaitForModel, model)
			}
			return fmt.Errorf("model %q was not served at %s within hooks.wait_for_model %s (last error: %s)", model, shown, s.o.cfg.Hooks.WaitForModel, strings.ReplaceAll(lastErr.Error(), lastURL, shown))
		}
		if !logged {
			s.o.log.InfoContext(ctx, "waiting for the next policy model", "model", model, "url", config.RedactURL(lastURL))
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// serves reports whether the /v1/models list at url names model.
func serves(ctx context.Context, client *http.Client, url, apiKey, model string) (bool, error) {
	ids, err := listModels(ctx, client, url, apiKey)
	return slices.Contains(ids, model), err
}

// modelsURL is the /v1/models address of an endpoint's base URL, given with
// or without its /v1.
func modelsURL(base string) string {
	return strings.TrimSuffix(strings.TrimRight(base, "/"), "/v1") + "/v1/models"
}

// listModels reads the ids of the models listed at url (an OpenAI-style
// /v1/models).
func listModels(ctx context.Context, client *http.Client, url, apiKey string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	ids := make([]string, 0, len(list.Data))
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	return ids, nil
}
