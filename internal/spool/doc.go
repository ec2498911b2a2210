// Package spool is the AMQP bridge's bounded on-disk queue: messages wait in
// it until the broker confirmed them, across broker outages and relay
// restarts. Append copies a batch into memory and returns at once; a writer
// goroutine appends it to segment files; readers read the segments back in
// order. format.go holds the file format and recovery, writer.go the write
// side, reader.go the read side.
package spool
