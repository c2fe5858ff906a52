package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// RunQueue is one run's consumer as a worker pulls from it, with the
// settings its orchestrator wrote into it, as last read from the broker.
type RunQueue struct {
	Run        int64
	Name       string
	Consumer   jetstream.Consumer
	AckWait    time.Duration
	MaxDeliver int
	// Info is the consumer's state as the listing that last read it
	// returned (pull requests waiting, in flight, queued).
	Info *jetstream.ConsumerInfo
}

// Queues follows the run consumers of one deployment as orchestrators
// create, change and delete them: what a worker pulls from and with which
// settings is read from the broker, never remembered from start.
type Queues struct {
	js         jetstream.JetStream
	stream     string
	deployment string

	mu      sync.Mutex
	byName  map[string]RunQueue
	list    []RunQueue // by run id
	changed chan struct{}
}

// NewQueues follows the deployment's run consumers on the named stream;
// call Refresh to read them.
func NewQueues(js jetstream.JetStream, stream, deployment string) *Queues {
	return &Queues{js: js, stream: stream, deployment: deployment, byName: map[string]RunQueue{}, changed: make(chan struct{})}
}

// Deployment is the deployment token whose consumers these are.
func (q *Queues) Deployment() string { return q.deployment }

// Refresh reads the deployment's run consumers from the broker (one
// paged CONSUMER.LIST of the stream) and returns those it did not have
// before. A stream that does not exist yet has none.
func (q *Queues) Refresh(ctx context.Context) ([]RunQueue, error) {
	s, err := q.js.Stream(ctx, q.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		q.replace(nil)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", q.stream, err)
	}
	prefix := runConsumerPrefix(q.deployment)
	var infos []*jetstream.ConsumerInfo
	lister := s.ListConsumers(ctx)
	for info := range lister.Info() {
		if strings.HasPrefix(info.Name, prefix) {
			infos = append(infos, info)
		}
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("list the consumers of stream %s: %w", q.stream, err)
	}
	var next, added []RunQueue
	for _, info := range infos {
		run, err := strconv.ParseInt(strings.TrimPrefix(info.Name, prefix), 10, 64)
		if err != nil {
			continue // not a run consumer of ours
		}
		q.mu.Lock()
		have, ok := q.byName[info.Name]
		q.mu.Unlock()
		if !ok {
			cons, err := s.Consumer(ctx, info.Name)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				continue // deleted since it was listed
			}
			if err != nil {
				return nil, fmt.Errorf("bind consumer %s on stream %s: %w", info.Name, q.stream, err)
			}
			have = RunQueue{Run: run, Name: info.Name, Consumer: cons}
		}
		have.AckWait, have.MaxDeliver, have.Info = info.Config.AckWait, info.Config.MaxDeliver, info
		if !ok {
			added = append(added, have)
		}
		next = append(next, have)
	}
	slices.SortFunc(next, func(a, b RunQueue) int { return int(a.Run - b.Run) })
	q.replace(next)
	return added, nil
}

// replace installs a new list and wakes the waiters of Changed when the
// set of consumers differs.
func (q *Queues) replace(next []RunQueue) {
	q.mu.Lock()
	defer q.mu.Unlock()
	same := len(next) == len(q.list)
	byName := make(map[string]RunQueue, len(next))
	for _, r := range next {
		byName[r.Name] = r
		if _, ok := q.byName[r.Name]; !ok {
			same = false
		}
	}
	q.byName, q.list = byName, next
	if !same {
		close(q.changed)
		q.changed = make(chan struct{})
	}
}

// List returns the run consumers as last read, by run id.
func (q *Queues) List() []RunQueue {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.list
}

// Get returns the named consumer's entry as last read.
func (q *Queues) Get(name string) (RunQueue, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	r, ok := q.byName[name]
	return r, ok
}

// Changed is closed when the set of consumers next changes.
func (q *Queues) Changed() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.changed
}

// RunConsumer returns one run's consumer as its orchestrator made it,
// never creating or changing it.
func RunConsumer(ctx context.Context, js jetstream.JetStream, q Queue) (jetstream.Consumer, error) {
	cons, err := js.Consumer(ctx, q.Stream, q.Consumer())
	if err != nil {
		return nil, fmt.Errorf("consumer %s on stream %s: %w", q.Consumer(), q.Stream, err)
	}
	return cons, nil
}
