// Package spool is the AMQP bridge's bounded on-disk queue: messages wait in
// it until the broker confirmed them, across broker outages and relay
// restarts. Append copies a batch into memory and returns once a writer
// goroutine appended it to a segment file (it stops waiting for a writer
// stalled by the disk); readers read the segments back in order, skipping
// damaged records. format.go holds the file format and recovery, writer.go
// the write side and the sync policy, reader.go the read side.
package spool
