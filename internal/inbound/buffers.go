package inbound

import (
	"math/bits"
	"sync"
)

// Message buffers (a topic and its body together) of up to maxPooledBuffer
// bytes are recycled by power-of-two size class: the forwarding loop's
// Release gives them back once their bytes are copied out, so a steady
// stream allocates, and the GC collects, almost nothing. A pooled buffer
// is charged to the budget whole, so the waste of its class is bounded
// with the rest; what the pools keep between uses the GC frees.
const (
	minPooledShift  = 9  // 512 bytes
	maxPooledShift  = 15 // 32 KiB
	maxPooledBuffer = 1 << maxPooledShift
)

var bufferPools [maxPooledShift - minPooledShift + 1]sync.Pool

// bufferClass returns the pool and capacity for a buffer of n bytes, or
// nil when n is too large to pool.
func bufferClass(n int) (*sync.Pool, int) {
	if n > maxPooledBuffer {
		return nil, n
	}
	shift := max(minPooledShift, bits.Len(uint(max(n, 1)-1))) // n <= 1<<shift
	return &bufferPools[shift-minPooledShift], 1 << shift
}

// getBuffer returns a buffer of n bytes, pooled if n is small enough
// (then *pb holds it, to give back with putBuffer).
func getBuffer(n int) (buf []byte, pb *[]byte) {
	pool, size := bufferClass(n)
	if pool == nil {
		return make([]byte, n), nil
	}
	if pb, _ = pool.Get().(*[]byte); pb == nil {
		b := make([]byte, size)
		pb = &b
	}
	return (*pb)[:n], pb
}

// putBuffer gives back a buffer getBuffer pooled; nil is ignored.
func putBuffer(pb *[]byte) {
	if pb == nil {
		return
	}
	pool, _ := bufferClass(cap(*pb))
	pool.Put(pb)
}
