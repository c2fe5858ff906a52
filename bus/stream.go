package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ConsumerName is the durable pull consumer all workers share.
const ConsumerName = "workers"

// DuplicateWindow is how long JetStream remembers message ids: long enough
// that an orchestrator restarting and re-publishing its pending tasks does
// not enqueue them twice.
const DuplicateWindow = time.Hour

// Subject is the subject of a task kind on the named stream.
func Subject(stream, kind string) string {
	return strings.ToLower(stream) + ".tasks." + kind
}

// streamSubjects are the subjects of the named stream's tasks.
func streamSubjects(stream string) string { return strings.ToLower(stream) + ".tasks.>" }

// StreamOptions configures the work queue.
type StreamOptions struct {
	Name       string        // stream name, e.g. SELFPLAY
	AckWait    time.Duration // redelivery after this long without ack or progress
	MaxDeliver int           // deliveries per message
	// MaxAckPending bounds messages in flight across all workers; default 10000.
	MaxAckPending int
}

// EnsureStream creates or updates the work-queue stream and the shared
// durable consumer. It is idempotent; the orchestrator and every worker
// call it at start.
func EnsureStream(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.Consumer, error) {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       o.Name,
		Subjects:   []string{streamSubjects(o.Name)},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: DuplicateWindow,
	})
	if err != nil {
		return nil, explainStreamError(ctx, js, o.Name, err)
	}
	if o.MaxAckPending == 0 {
		o.MaxAckPending = 10000
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, o.Name, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    o.MaxDeliver,
		MaxAckPending: o.MaxAckPending,
		FilterSubject: strings.ToLower(o.Name) + ".tasks.>",
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on stream %s: %w", ConsumerName, o.Name, err)
	}
	return cons, nil
}

// Publisher publishes tasks with their message ids, asynchronously with a
// bounded window, and waits for every acknowledgement in Flush.
type Publisher struct {
	js     jetstream.JetStream
	stream string
	acks   []jetstream.PubAckFuture
}

// NewPublisher publishes to the named stream.
func NewPublisher(js jetstream.JetStream, stream string) *Publisher {
	return &Publisher{js: js, stream: stream}
}

// Publish queues one task; call Flush to wait for the server's acks.
func (p *Publisher) Publish(ctx context.Context, t Task) error {
	f, err := p.js.PublishAsync(Subject(p.stream, t.Kind), t.Encode(), jetstream.WithMsgID(t.MsgID()))
	if err != nil {
		return fmt.Errorf("publish task %s: %w", t.MsgID(), err)
	}
	p.acks = append(p.acks, f)
	if len(p.acks) >= 2000 {
		return p.Flush(ctx)
	}
	return nil
}

// Flush waits until every queued publication is acknowledged and returns
// the first error.
func (p *Publisher) Flush(ctx context.Context) error {
	var errs []error
	for _, f := range p.acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs = append(errs, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.acks = p.acks[:0]
	if len(errs) > 0 {
		return fmt.Errorf("publish: %d of the tasks were not accepted: %w", len(errs), errors.Join(errs...))
	}
	return nil
}
