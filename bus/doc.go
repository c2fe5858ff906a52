// Package bus carries task messages over NATS JetStream: connecting with the
// configured credentials, the work-queue stream and the durable pull
// consumer that all workers share, and the task message itself. Messages
// carry ids, never data the database holds; the database is the truth.
package bus
