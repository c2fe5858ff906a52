package bus

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Task kinds.
const (
	KindGenerate = "generate"
	KindEvolve   = "evolve"
	// KindLearn teacher-forces one pair under the next policy (the
	// learning check).
	KindLearn = "learn"
)

// Task is the message a worker receives: the key of a tasks row and the
// generation of its publication. Everything else is read from the database.
type Task struct {
	IterationID int64  `json:"iteration_id"`
	PromptID    int64  `json:"prompt_id"`
	Kind        string `json:"kind"`
	// Publication is the generation of the task's message (tasks.
	// publications): it grows when the task is found lost and when a failed
	// task is retried, and is part of the message id, so a deliberate
	// re-publish is never dropped as a duplicate while a retried publish of
	// the same generation is.
	Publication int `json:"publication"`
	// Run is the run's nonce (store.Run.Nonce): ids restart with a new
	// database, so without it a stream that outlived its database would drop
	// the new run's tasks as duplicates of old ones, and a worker could act
	// on an old database's message. Workers leave messages of another run
	// alone: nak'ed, never terminated.
	Run string `json:"run,omitempty"`
}

// MsgID is the Nats-Msg-Id of the task's publication.
func (t Task) MsgID() string {
	return fmt.Sprintf("task-%s-%d-%d-%s-%d", t.Run, t.IterationID, t.PromptID, t.Kind, t.Publication)
}

// Encode renders the message body.
func (t Task) Encode() []byte {
	b, _ := json.Marshal(t)
	return b
}

// DecodeTask parses and checks a message body. Anything that is not a
// well-formed task is an error saying why; a worker terminates such
// messages.
func DecodeTask(data []byte) (Task, error) {
	var t Task
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return Task{}, fmt.Errorf("not a task message: %w", err)
	}
	if dec.More() {
		return Task{}, fmt.Errorf("not a task message: trailing data")
	}
	switch {
	case t.IterationID <= 0:
		return Task{}, fmt.Errorf("not a task message: iteration_id must be positive")
	case t.PromptID <= 0:
		return Task{}, fmt.Errorf("not a task message: prompt_id must be positive")
	case t.Kind != KindGenerate && t.Kind != KindEvolve && t.Kind != KindLearn:
		return Task{}, fmt.Errorf("not a task message: kind %q is not generate, evolve or learn", t.Kind)
	case t.Publication < 0:
		return Task{}, fmt.Errorf("not a task message: negative publication")
	}
	return t, nil
}
