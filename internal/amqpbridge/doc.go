// Package amqpbridge copies every message the relay publishes onto a RabbitMQ
// exchange in the format fedora-messaging consumers read, and optionally
// injects messages from a RabbitMQ queue into the ZeroMQ bus.
//
// The relay's hot path only calls Bridge.Enqueue, once per batch, which
// copies the messages into an in-memory buffer (charged to the relay's byte
// budget) and returns, with a Completion the relay awaits before it answers
// a confirming client "ok"; a writer
// goroutine appends that buffer to an on-disk spool and the publisher
// goroutine reads the spool and publishes with pipelined publisher confirms.
// A message leaves the spool only once the broker confirmed it, so a broker
// outage or a relay restart loses nothing.
package amqpbridge
