package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// legacyConsumer is the one consumer all workers of every database shared
// before deployments had their own: its filter overlaps every deployment's,
// which a work-queue stream refuses.
const legacyConsumer = "workers"

// deploymentConsumer is the consumer one deployment's runs shared before
// each run had its own; its filter overlaps the runs' filters.
func deploymentConsumer(deployment string) string { return "workers-" + deployment }

// DuplicateWindow is how long JetStream remembers message ids. It only has
// to cover a publish retried after a lost acknowledgement or an
// orchestrator that crashed between publishing tasks and recording it:
// tasks already recorded as published are never published again under the
// same id, and every id the window holds costs server memory.
const DuplicateWindow = 2 * time.Minute

// Queue is one run's part of the work-queue stream: the subjects its tasks
// travel on, "<stream>.tasks.<deployment>.r<run>.<kind>.<iteration id>",
// and the durable consumer only its workers pull from,
// "workers-<deployment>-r<run>". Each run so has its own ack_wait and
// max_deliver, and its own counts of queued and in-flight tasks.
type Queue struct {
	Stream     string // stream name, e.g. SELFPLAY
	Deployment string // the database's deployment token (store.DeploymentToken)
	Run        int64  // the run's row id (store.Run.ID)
}

// Prefix is the beginning of every subject of the run's tasks; its
// consumer filters on it followed by ">".
func (q Queue) Prefix() string {
	return DeploymentSubjects(q.Stream, q.Deployment) + "r" + strconv.FormatInt(q.Run, 10) + "."
}

// Subject is the subject of the tasks of one kind of one iteration.
func (q Queue) Subject(kind string, iterationID int64) string {
	return q.Prefix() + kind + "." + strconv.FormatInt(iterationID, 10)
}

// Consumer is the name of the run's durable pull consumer.
func (q Queue) Consumer() string {
	return runConsumerPrefix(q.Deployment) + strconv.FormatInt(q.Run, 10)
}

// runConsumerPrefix begins the name of every run consumer of a deployment.
func runConsumerPrefix(deployment string) string { return deploymentConsumer(deployment) + "-r" }

// streamSubjects are the subjects of the named stream's tasks.
func streamSubjects(stream string) string { return strings.ToLower(stream) + ".tasks.>" }

// DeploymentSubjects is the prefix of every subject of a deployment's runs.
func DeploymentSubjects(stream, deployment string) string {
	return strings.ToLower(stream) + ".tasks." + deployment + "."
}

// StreamOptions configures the work queue and a run's consumer.
type StreamOptions struct {
	Name       string // stream name, e.g. SELFPLAY
	Deployment string // the database's deployment token (store.DeploymentToken)
	Run        int64  // the run's row id; EnsureConsumer needs it
	AckWait    time.Duration
	MaxDeliver int
	// MaxAckPending bounds messages in flight across all workers; default 10000.
	MaxAckPending int
	// Replicas of the stream on a JetStream cluster; default 1.
	Replicas int
}

// Queue is the run's queue the options name.
func (o StreamOptions) Queue() Queue {
	return Queue{Stream: o.Name, Deployment: o.Deployment, Run: o.Run}
}

// consumerConfig is the run's consumer as the orchestrator writes it.
func (o StreamOptions) consumerConfig() jetstream.ConsumerConfig {
	if o.MaxAckPending == 0 {
		o.MaxAckPending = 10000
	}
	q := o.Queue()
	return jetstream.ConsumerConfig{
		Durable:       q.Consumer(),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    o.MaxDeliver,
		MaxAckPending: o.MaxAckPending,
		FilterSubject: q.Prefix() + ">",
	}
}

// EnsureStream creates the work-queue stream (shared by every deployment
// that names it) or checks the one there, and deletes the idle consumers of
// older versions whose filters overlap the runs'. The orchestrator calls it
// at start, before it stores anything.
func EnsureStream(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.Stream, error) {
	if o.Deployment == "" {
		return nil, fmt.Errorf("stream %s: no deployment token", o.Name)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	stream, err := ensureSharedStream(ctx, js, o)
	if err != nil {
		return nil, err
	}
	if err := dropLegacyConsumer(ctx, stream, legacyConsumer, nil); err != nil {
		return nil, err
	}
	// The deployment-wide consumer of the version before runs had their
	// own: emptied of what no worker of that version holds, then deleted
	// with its subjects (see dropLegacyConsumer).
	old := []string{DeploymentSubjects(o.Name, o.Deployment) + KindGenerate + ".>", DeploymentSubjects(o.Name, o.Deployment) + KindEvolve + ".>"}
	if err := dropLegacyConsumer(ctx, stream, deploymentConsumer(o.Deployment), old); err != nil {
		return nil, err
	}
	return stream, nil
}

// EnsureConsumer makes sure of the stream (EnsureStream) and creates or
// updates the run's own consumer with the options' ack_wait and
// max_deliver. Only this run's orchestrator writes it (it holds the run's
// lock); workers find it and read its settings from the broker, and their
// heartbeats follow its ack_wait as it is now, so a changed value never
// has a healthy task redelivered.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.Consumer, error) {
	if o.Run <= 0 {
		return nil, fmt.Errorf("stream %s: a run's consumer needs the run's id", o.Name)
	}
	stream, err := EnsureStream(ctx, js, o)
	if err != nil {
		return nil, err
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, o.consumerConfig())
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on stream %s: %w", o.Queue().Consumer(), o.Name, err)
	}
	return cons, nil
}

// DeleteQueue removes a finished run's consumer and whatever messages are
// left on its subjects (ones that ran out of deliveries, whose tasks were
// settled): a run leaves nothing behind in a stream that lives for years.
func DeleteQueue(ctx context.Context, js jetstream.JetStream, q Queue) error {
	s, err := js.Stream(ctx, q.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", q.Stream, err)
	}
	if err := s.DeleteConsumer(ctx, q.Consumer()); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("delete consumer %s: %w", q.Consumer(), err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(q.Prefix()+">")); err != nil {
		return fmt.Errorf("purge %s>: %w", q.Prefix(), err)
	}
	return nil
}

// ErrStreamSettingsDiffer means the stream exists with settings other than
// the schedule's; selfplay never changes a stream that other deployments
// may share.
var ErrStreamSettingsDiffer = errors.New("the stream exists with other settings")

// ensureSharedStream creates the work-queue stream, or checks that the one
// there has this schedule's replicas. The stream is shared by every
// deployment that names it, so an existing stream is never updated: a
// second deployment with nats.replicas 1 would otherwise drop the first's
// R3 stream to one replica, silently. A difference is refused with both
// values and what to do.
func ensureSharedStream(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.Stream, error) {
	cfg := jetstream.StreamConfig{
		Name:       o.Name,
		Subjects:   []string{streamSubjects(o.Name)},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: DuplicateWindow,
		Replicas:   o.Replicas,
	}
	stream, err := js.Stream(ctx, o.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		stream, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another deployment made it meanwhile: check what it made.
			stream, err = js.Stream(ctx, o.Name)
		} else if err == nil {
			return stream, nil
		}
	}
	if err != nil {
		return nil, explainStreamError(ctx, js, o.Name, o.Replicas, err)
	}
	have := stream.CachedInfo().Config
	if have.Replicas != o.Replicas {
		return nil, fmt.Errorf("%w: stream %s has %d replicas and this schedule's nats.replicas is %d; "+
			"the stream may be another deployment's too, so selfplay does not change it: set nats.replicas: %d, "+
			"use another nats.stream, or change the stream yourself (`nats stream edit %s --replicas %d`)",
			ErrStreamSettingsDiffer, o.Name, have.Replicas, o.Replicas, have.Replicas, o.Name, o.Replicas)
	}
	if have.Retention != jetstream.WorkQueuePolicy || len(have.Subjects) != 1 || have.Subjects[0] != streamSubjects(o.Name) {
		return nil, fmt.Errorf("%w: stream %s is not a selfplay work queue (retention %s, subjects %v; want %s on %s): "+
			"choose another nats.stream", ErrStreamSettingsDiffer, o.Name, have.Retention, have.Subjects,
			jetstream.WorkQueuePolicy, streamSubjects(o.Name))
	}
	return stream, nil
}

// dropLegacyConsumer deletes a consumer of an older version when nothing
// is queued or in flight on it, and purges the subjects it leaves behind;
// while it has work it is left to its workers, and the error says so.
//
// A deployment's own old consumer (purge names its subjects) is first
// emptied of every message the server would deliver now: queued ones, and
// ones handed back or whose ack_wait ran out (a stopped worker's, which
// the server counts as in flight until it delivers them again). Each is
// acknowledged, and the server's confirmation awaited, so that the
// consumer's counts read next no longer hold it: its task, still pending,
// is found lost and published again on the run's subjects. What remains in flight is held by a worker of the
// old version that is still running.
func dropLegacyConsumer(ctx context.Context, stream jetstream.Stream, name string, purge []string) error {
	old, err := stream.Consumer(ctx, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look for the consumer %q of older versions: %w", name, err)
	}
	info := old.CachedInfo()
	if purge != nil && (info.NumPending > 0 || info.NumAckPending > 0) {
		if err := drainDeliverable(ctx, old); err != nil {
			return fmt.Errorf("empty the consumer %q of an older version: %w", name, err)
		}
		if info, err = old.Info(ctx); err != nil {
			return fmt.Errorf("read the consumer %q of an older version: %w", name, err)
		}
	}
	if info.NumPending > 0 || info.NumAckPending > 0 {
		return fmt.Errorf("stream %s still has the consumer %q of an older selfplay version, with %d tasks queued and %d in flight: "+
			"let its workers finish, then delete it (`nats consumer rm %s %s`)",
			info.Stream, name, info.NumPending, info.NumAckPending, info.Stream, name)
	}
	if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("delete the idle consumer %q of an older version: %w", name, err)
	}
	for _, subject := range purge {
		if err := stream.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
			return fmt.Errorf("purge %s: %w", subject, err)
		}
	}
	return nil
}

// drainDeliverable takes and acknowledges every message the consumer would
// deliver now, until a fetch without waiting returns none.
func drainDeliverable(ctx context.Context, cons jetstream.Consumer) error {
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return err
		}
		n := 0
		for msg := range batch.Messages() {
			if err := msg.DoubleAck(ctx); err != nil {
				return err
			}
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// PurgeTasks removes every message of one kind of one iteration from the
// stream. The orchestrator calls it when the run's consumer has nothing
// queued or in flight, or the stage has no pending task left, so what it
// removes are messages that ran out of deliveries (a work queue keeps
// those): before their tasks are published again, and when a stage ends,
// so a stream never piles up finished stages' messages.
func PurgeTasks(ctx context.Context, js jetstream.JetStream, q Queue, kind string, iterationID int64) (uint64, error) {
	subject := q.Subject(kind, iterationID)
	s, info, err := subjectInfo(ctx, js, q.Stream, subject)
	if err != nil {
		return 0, err
	}
	n := info.State.Subjects[subject]
	if n == 0 {
		return 0, nil
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
		return 0, fmt.Errorf("purge %s: %w", subject, err)
	}
	return n, nil
}

// subjectInfo returns the stream and its state with the message count of
// subject (State.Subjects[subject]).
func subjectInfo(ctx context.Context, js jetstream.JetStream, stream, subject string) (jetstream.Stream, *jetstream.StreamInfo, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	return s, info, nil
}

// StoredTasks reads which task messages the stream holds for one kind of
// one iteration: prompt id → the publication of its message (the highest,
// if a task has several). It reads nothing when the subject holds no
// message, and otherwise one message at a time (the work queue's own
// consumer already filters these subjects, so no second consumer may read
// them): a recovery path, for the tasks never marked published.
func StoredTasks(ctx context.Context, js jetstream.JetStream, q Queue, kind string, iterationID int64) (map[int64]int, error) {
	subject := q.Subject(kind, iterationID)
	s, info, err := subjectInfo(ctx, js, q.Stream, subject)
	if err != nil {
		return nil, err
	}
	stored := map[int64]int{}
	if info.State.Subjects[subject] == 0 {
		return stored, nil
	}
	for seq := info.State.FirstSeq; ; {
		msg, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return stored, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s from sequence %d: %w", subject, seq, err)
		}
		if t, err := DecodeTask(msg.Data); err == nil && t.Publication >= stored[t.PromptID] {
			stored[t.PromptID] = t.Publication
		}
		seq = msg.Sequence + 1
	}
}

// Publisher publishes a run's tasks with their message ids,
// asynchronously with a bounded window, and waits for every
// acknowledgement in Flush.
type Publisher struct {
	js         jetstream.JetStream
	q          Queue
	acks       []jetstream.PubAckFuture
	duplicates int
}

// NewPublisher publishes on the run's subjects.
func NewPublisher(js jetstream.JetStream, q Queue) *Publisher {
	return &Publisher{js: js, q: q}
}

// Publish queues one task; call Flush to wait for the server's acks.
func (p *Publisher) Publish(ctx context.Context, t Task) error {
	f, err := p.js.PublishAsync(p.q.Subject(t.Kind, t.IterationID), t.Encode(), jetstream.WithMsgID(t.MsgID()))
	if err != nil {
		return fmt.Errorf("publish task %s: %w", t.MsgID(), err)
	}
	p.acks = append(p.acks, f)
	if len(p.acks) >= 2000 {
		return p.Flush(ctx)
	}
	return nil
}

// Duplicates is how many publications the server dropped as duplicates of
// a message id still in its window, since the publisher was made.
func (p *Publisher) Duplicates() int { return p.duplicates }

// Flush waits until every queued publication is acknowledged and returns
// the first error.
func (p *Publisher) Flush(ctx context.Context) error {
	var errs []error
	for _, f := range p.acks {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				p.duplicates++
			}
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

// ExhaustedSubject is where the server announces that a message of the
// run's consumer ran out of deliveries.
func ExhaustedSubject(q Queue) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + q.Stream + "." + q.Consumer()
}

// Exhausted is the part of the server's max-deliveries advisory we use
// (nats-server server/jetstream_events.go, JSConsumerDeliveryExceededAdvisory).
type Exhausted struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}
