package fedmsgconf

import (
	"testing"

	"github.com/fedora-infra/fedmsg-relay/internal/client/clienttest"
	"github.com/hashicorp/go-hclog"
)

// BenchmarkLoadFrom is what a tool pays to read its config: a directory of
// literals (no Python) against Fedora's shapes (one python3 run).
func BenchmarkLoadFrom(b *testing.B) {
	cases := []struct{ name, dir string }{
		{"literal", "testdata/literal.d"},
		{"python", "testdata/fedora.d"},
	}
	clienttest.Require(b, clienttest.Python)
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := LoadFrom(tc.dir, "", hclog.NewNullLogger()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
