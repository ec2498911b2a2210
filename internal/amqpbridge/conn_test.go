package amqpbridge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// Writes arrive complete and in order, more than the queue bound of them
// while the reader is slow, and Close sends what is still queued.
func TestBatchingConnOrderAndClose(t *testing.T) {
	client, server := tcpPair(t)
	conn := newBatchingConn(client, 10*time.Second)
	var want bytes.Buffer
	received := make(chan []byte)
	go func() {
		time.Sleep(200 * time.Millisecond) // let the queue fill and push back
		all, _ := io.ReadAll(server)
		received <- all
	}()
	for i := 0; i < 20000; i++ {
		p := bytes.Repeat([]byte{byte(i)}, 1+i%300)
		want.Write(p)
		if n, err := conn.Write(p); n != len(p) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if got := <-received; !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("received %d bytes, differing from the %d written", len(got), want.Len())
	}
	if _, err := conn.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

// A failed write is reported by the next Writes, and Close does not hang.
func TestBatchingConnWriteError(t *testing.T) {
	client, server := tcpPair(t)
	conn := newBatchingConn(client, 10*time.Second)
	server.(*net.TCPConn).SetLinger(0)
	server.Close() // the peer resets the connection
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = conn.Write(make([]byte, 4096))
		time.Sleep(time.Millisecond)
	}
	if err == nil || errors.Is(err, net.ErrClosed) {
		t.Fatalf("writes to a reset connection: %v", err)
	}
	closed := make(chan struct{})
	go func() { conn.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung after a write error")
	}
}

// A peer that stops reading fails the writes after the write timeout instead
// of holding the writer forever.
func TestBatchingConnStalledPeer(t *testing.T) {
	client, _ := tcpPair(t) // the server end never reads
	conn := newBatchingConn(client, 300*time.Millisecond)
	defer conn.Close()
	failed := make(chan error, 1)
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := conn.Write(chunk); err != nil {
				failed <- err
				return
			}
		}
	}()
	select {
	case err := <-failed:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("write to a stalled peer: %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writes to a peer that stopped reading never failed")
	}
}
