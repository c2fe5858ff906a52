package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// legacyConsumer is the one consumer all workers of every database shared
// before deployments had their own: its filter overlaps every deployment's,
// which a work-queue stream refuses.
const legacyConsumer = "workers"

// ConsumerName is the durable pull consumer of one deployment's workers.
func ConsumerName(deployment string) string { return "workers-" + deployment }

// DuplicateWindow is how long JetStream remembers message ids. It only has
// to cover a publish retried after a lost acknowledgement or an
// orchestrator that crashed between publishing tasks and recording it:
// tasks already recorded as published are never published again under the
// same id, and every id the window holds costs server memory.
const DuplicateWindow = 2 * time.Minute

// Subject is the subject of the tasks of one kind of one iteration of a
// deployment: "<stream>.tasks.<deployment>.<kind>.<iteration id>".
func Subject(stream, deployment, kind string, iterationID int64) string {
	return DeploymentSubjects(stream, deployment) + kind + "." + strconv.FormatInt(iterationID, 10)
}

// streamSubjects are the subjects of the named stream's tasks.
func streamSubjects(stream string) string { return strings.ToLower(stream) + ".tasks.>" }

// DeploymentSubjects is the prefix of every subject of a deployment; its
// consumer filters on it followed by ">".
func DeploymentSubjects(stream, deployment string) string {
	return strings.ToLower(stream) + ".tasks." + deployment + "."
}

// StreamOptions configures the work queue and a deployment's consumer.
type StreamOptions struct {
	Name       string // stream name, e.g. SELFPLAY
	Deployment string // the database's deployment token (store.DeploymentToken)
	AckWait    time.Duration
	MaxDeliver int
	// MaxAckPending bounds messages in flight across all workers; default 10000.
	MaxAckPending int
	// Replicas of the stream on a JetStream cluster; default 1.
	Replicas int
}

// consumerConfig is the deployment's consumer as the orchestrator writes it.
func (o StreamOptions) consumerConfig() jetstream.ConsumerConfig {
	if o.MaxAckPending == 0 {
		o.MaxAckPending = 10000
	}
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName(o.Deployment),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    o.MaxDeliver,
		MaxAckPending: o.MaxAckPending,
		FilterSubject: DeploymentSubjects(o.Name, o.Deployment) + ">",
	}
}

// EnsureStream creates or updates the work-queue stream (shared by every
// deployment that names it) and the deployment's own durable consumer with
// the options' settings. The orchestrator owns the consumer and calls this
// at start; workers bind to it with BindConsumer and take its settings.
func EnsureStream(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.Consumer, error) {
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
	if err := dropLegacyConsumer(ctx, stream); err != nil {
		return nil, err
	}
	if err := checkConsumerIdleOrSame(ctx, stream, o); err != nil {
		return nil, err
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, o.consumerConfig())
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on stream %s: %w", ConsumerName(o.Deployment), o.Name, err)
	}
	return cons, nil
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

// ErrConsumerBusy means the deployment's consumer has tasks queued or in
// flight under other ack_wait or max_deliver settings than this schedule's.
var ErrConsumerBusy = errors.New("the consumer has work under other settings")

// checkConsumerIdleOrSame refuses to rewrite the deployment's consumer with
// other ack_wait or max_deliver while it has messages queued or in flight:
// every run of the database shares it, so a run started with ack_wait 2s
// would have the server redeliver another run's healthy tasks, whose
// workers beat every third of the old value, until they were failed as
// lost. An idle consumer is rewritten freely.
func checkConsumerIdleOrSame(ctx context.Context, stream jetstream.Stream, o StreamOptions) error {
	cons, err := stream.Consumer(ctx, ConsumerName(o.Deployment))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read consumer %s on stream %s: %w", ConsumerName(o.Deployment), o.Name, err)
	}
	info := cons.CachedInfo()
	c := info.Config
	if c.AckWait == o.AckWait && c.MaxDeliver == o.MaxDeliver {
		return nil
	}
	if info.NumPending == 0 && info.NumAckPending == 0 {
		return nil
	}
	return fmt.Errorf("%w: consumer %s has worker.ack_wait %s and worker.max_deliver %d, this schedule %s and %d, "+
		"and %d tasks are queued and %d in flight under them (another run of this database, or this run before the change): "+
		"use the consumer's values, or change them once it is idle", ErrConsumerBusy, ConsumerName(o.Deployment),
		c.AckWait, c.MaxDeliver, o.AckWait, o.MaxDeliver, info.NumPending, info.NumAckPending)
}

// dropLegacyConsumer deletes the shared consumer of older versions when
// nothing is queued or in flight on it; while it has work it is left to
// its workers, and the error says so.
func dropLegacyConsumer(ctx context.Context, stream jetstream.Stream) error {
	old, err := stream.Consumer(ctx, legacyConsumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look for the consumer %q of older versions: %w", legacyConsumer, err)
	}
	info := old.CachedInfo()
	if info.NumPending > 0 || info.NumAckPending > 0 {
		return fmt.Errorf("stream %s still has the consumer %q of an older selfplay version, with %d tasks queued and %d in flight: "+
			"let its workers finish, then delete it (`nats consumer rm %s %s`)",
			info.Stream, legacyConsumer, info.NumPending, info.NumAckPending, info.Stream, legacyConsumer)
	}
	if err := stream.DeleteConsumer(ctx, legacyConsumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("delete the idle consumer %q of an older version: %w", legacyConsumer, err)
	}
	return nil
}

// ErrNoConsumer means the deployment's consumer does not exist yet: no
// orchestrator of this database has started since the stream was made.
var ErrNoConsumer = errors.New("no consumer for this deployment yet")

// BindConsumer returns the deployment's consumer as its orchestrator made
// it, never creating or changing it; ErrNoConsumer when there is none yet.
func BindConsumer(ctx context.Context, js jetstream.JetStream, stream, deployment string) (jetstream.Consumer, error) {
	cons, err := js.Consumer(ctx, stream, ConsumerName(deployment))
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: consumer %s on stream %s: start `selfplay run` for this database first: %w",
			ErrNoConsumer, ConsumerName(deployment), stream, err)
	}
	if err != nil {
		return nil, fmt.Errorf("bind consumer %s on stream %s: %w", ConsumerName(deployment), stream, err)
	}
	return cons, nil
}

// PurgeTasks removes every message of one kind of one iteration from the
// stream. The orchestrator calls it only when the deployment's consumer
// has nothing queued or in flight, so what it removes are messages that
// ran out of deliveries (a work queue keeps those) before they are
// published again.
func PurgeTasks(ctx context.Context, js jetstream.JetStream, stream, deployment, kind string, iterationID int64) (uint64, error) {
	subject := Subject(stream, deployment, kind, iterationID)
	s, info, err := subjectInfo(ctx, js, stream, subject)
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
func StoredTasks(ctx context.Context, js jetstream.JetStream, stream, deployment, kind string, iterationID int64) (map[int64]int, error) {
	subject := Subject(stream, deployment, kind, iterationID)
	s, info, err := subjectInfo(ctx, js, stream, subject)
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

// Publisher publishes a deployment's tasks with their message ids,
// asynchronously with a bounded window, and waits for every
// acknowledgement in Flush.
type Publisher struct {
	js         jetstream.JetStream
	stream     string
	deployment string
	acks       []jetstream.PubAckFuture
	duplicates int
}

// NewPublisher publishes to the named stream on the deployment's subjects.
func NewPublisher(js jetstream.JetStream, stream, deployment string) *Publisher {
	return &Publisher{js: js, stream: stream, deployment: deployment}
}

// Publish queues one task; call Flush to wait for the server's acks.
func (p *Publisher) Publish(ctx context.Context, t Task) error {
	f, err := p.js.PublishAsync(Subject(p.stream, p.deployment, t.Kind, t.IterationID), t.Encode(), jetstream.WithMsgID(t.MsgID()))
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
// deployment's consumer ran out of deliveries.
func ExhaustedSubject(stream, deployment string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream + "." + ConsumerName(deployment)
}

// Exhausted is the part of the server's max-deliveries advisory we use
// (nats-server server/jetstream_events.go, JSConsumerDeliveryExceededAdvisory).
type Exhausted struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}
