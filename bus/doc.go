// Package bus carries task messages over NATS JetStream: connecting with the
// configured credentials, the work-queue stream and the durable pull
// consumer of each deployment's workers (one per database, on its own
// subjects of a stream deployments may share), and the task message itself. Messages
// carry ids, never data the database holds; the database is the truth.
package bus
