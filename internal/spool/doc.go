// Package spool is the AMQP bridge's bounded on-disk queue: messages wait in
// it until the broker confirmed them, across broker outages and relay
// restarts. Append copies a batch into memory and returns; a writer
// goroutine appends it to a segment file (and syncs it, as the SyncPolicy
// says), then completes the batch's Completion for whoever waits on it;
// readers read the segments back in order, skipping
// damaged records. format.go holds the file format and recovery, writer.go
// the write side and the sync policy, reader.go the read side.
package spool
