package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/store"
)

// One schedule per run: an iteration runs with the settings stored when it
// was created or, while it has not started, last updated from the schedule.
// Once it starts they are fixed: the orchestrator, the workers and the
// report all read them from the iteration's row. A schedule file whose
// settings for a started iteration differ from the stored ones is refused
// with the differences, since it would make one run out of two schedules.
// Changes to iterations not yet started apply (they are stored at start).
// A failed iteration that did no work (no task done) is the one exception:
// retried with --retry-failed, it takes the schedule's settings, so a
// misspelt model can be fixed without a new run name.

// storedSettings reads the settings stored with an iteration.
func storedSettings(it store.Iteration) (config.Settings, error) {
	// Settings stored before the dedup, decontaminate and learning_check
	// sections existed read as their defaults.
	d := config.Defaults()
	s := config.Settings{Dedup: d.Dedup, Decontaminate: d.Decontaminate, LearningCheck: d.LearningCheck}
	if err := json.Unmarshal(it.Config, &s); err != nil {
		return s, fmt.Errorf("iteration %s: stored settings: %w", it.Name, err)
	}
	return s, nil
}

// iterationOf is the schedule's view of an iteration made from its stored
// settings.
func iterationOf(s config.Settings) config.Iteration {
	return config.Iteration{Name: s.Name, PolicyModel: s.PolicyModel, ReferenceModel: s.ReferenceModel, Prompts: s.Prompts,
		Generation: s.Generation, Scoring: s.Scoring, Selection: s.Selection, Evolve: s.Evolve,
		Dedup: s.Dedup, Decontaminate: s.Decontaminate, LearningCheck: s.LearningCheck}
}

// settingsDiff lists the keys whose values differ between the stored
// settings and the schedule's, as "key: stored A, schedule B", sorted.
func settingsDiff(stored, schedule config.Settings) ([]string, error) {
	a, err := flatSettings(stored)
	if err != nil {
		return nil, err
	}
	b, err := flatSettings(schedule)
	if err != nil {
		return nil, err
	}
	var out []string
	for k, av := range a {
		if bv, ok := b[k]; !ok || !reflect.DeepEqual(av, bv) {
			out = append(out, fmt.Sprintf("%s: stored %s, schedule %s", k, show(av, true), show(bv, ok)))
		}
	}
	for k, bv := range b {
		if _, ok := a[k]; !ok {
			out = append(out, fmt.Sprintf("%s: stored (none), schedule %s", k, show(bv, true)))
		}
	}
	sort.Strings(out)
	return out, nil
}

func show(v any, ok bool) string {
	if !ok {
		return "(none)"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// flatSettings turns settings into dotted keys and JSON values
// (generation.samples → 2), lists kept whole.
func flatSettings(s config.Settings) (map[string]any, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	out := map[string]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if mm, ok := v.(map[string]any); ok {
			for k, vv := range mm {
				walk(strings.TrimPrefix(prefix+"."+k, "."), vv)
			}
			return
		}
		out[prefix] = v
	}
	walk("", m)
	return out, nil
}

// checkSchedule compares the schedule with the settings stored with the
// run's started iterations. It fails, with every difference, when they
// differ — except for a failed iteration without work that is being
// retried, which is updated to the schedule. It returns the iterations as
// they are now stored.
func (o *Orchestrator) checkSchedule(ctx context.Context, its []store.Iteration, specs []store.IterationSpec) ([]store.Iteration, error) {
	var problems []string
	for i := range its {
		it := its[i]
		if i >= len(specs) || it.Stage == store.StagePending {
			continue
		}
		stored, err := storedSettings(it)
		if err != nil {
			return nil, err
		}
		diff, err := settingsDiff(stored, o.cfg.Iterations[i].Settings())
		if err != nil {
			return nil, err
		}
		if len(diff) == 0 {
			continue
		}
		if it.Stage == store.StageFailed && o.opts.RetryFailed {
			worked, err := store.IterationHasWork(ctx, o.pool, it.ID)
			if err != nil {
				return nil, err
			}
			if !worked {
				if err := store.ReplaceIterationSettings(ctx, o.pool, it.ID, specs[i]); err != nil {
					return nil, err
				}
				o.log.WarnContext(ctx, "failed iteration did no work; retrying it with the changed schedule", "iteration", it.Name, "changes", strings.Join(diff, "; "))
				if its[i], err = store.GetIteration(ctx, o.pool, it.ID); err != nil {
					return nil, err
				}
				continue
			}
		}
		problems = append(problems, fmt.Sprintf("  %s (%s): %s", it.Name, it.Stage, strings.Join(diff, "; ")))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("the schedule differs from the settings stored with run %q's started iterations, which keep them (a run has one schedule; changes apply only to iterations not yet started):\n%s\nundo these changes, or run the changed schedule under another run name",
			o.cfg.Run, strings.Join(problems, "\n"))
	}
	return its, nil
}
