package store

// ScramVerifierWithSalt exposes the verifier computation to the tests,
// which check it against PostgreSQL's own.
var ScramVerifierWithSalt = scramVerifierWithSalt
