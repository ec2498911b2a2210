package inbound

import "testing"

// Buffers come in the smallest class that holds them, and go back to the
// pool they came from; larger ones are not pooled.
func TestBufferClasses(t *testing.T) {
	for _, tt := range []struct{ n, size int }{
		{0, 512}, {1, 512}, {512, 512}, {513, 1024}, {1100, 2048}, {32 << 10, 32 << 10}, {32<<10 + 1, 32<<10 + 1},
	} {
		buf, pb := getBuffer(tt.n)
		if len(buf) != tt.n || cap(buf) != tt.size || (pb == nil) != (tt.n > maxPooledBuffer) {
			t.Errorf("getBuffer(%d): len %d cap %d pooled %v; want cap %d", tt.n, len(buf), cap(buf), pb != nil, tt.size)
		}
		putBuffer(pb)
		if pool, _ := bufferClass(tt.n); pool != nil {
			if again, _ := getBuffer(tt.n); cap(again) != tt.size {
				t.Errorf("getBuffer(%d) after a put: cap %d, want %d", tt.n, cap(again), tt.size)
			}
		}
	}
}
