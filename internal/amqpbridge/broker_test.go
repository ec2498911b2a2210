package amqpbridge

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/amqpbridge/amqptest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// The package's tests share one real RabbitMQ node (amqptest). It also
// listens with TLS on a vhost where the bridge's certificate user may not
// configure anything, as on Fedora's broker (tls_test.go).
func TestMain(m *testing.M) {
	os.Exit(amqptest.Main(m, amqptest.Options{
		Plugins: []string{"rabbitmq_auth_mechanism_ssl"},
		Prepare: prepareTLSBroker,
	}))
}

// prepareTLSBroker writes the test PKI and the boot definitions (users,
// vhosts, permissions, the pre-declared exchange) into the broker's dir.
func prepareTLSBroker(b *amqptest.Broker) (string, error) {
	if err := writeTestPKI(b.Dir()); err != nil {
		return "", fmt.Errorf("test certificates: %w", err)
	}
	definitions, err := brokerDefinitions()
	if err != nil {
		return "", fmt.Errorf("broker definitions: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.Dir(), "definitions.json"), definitions, 0o640); err != nil {
		return "", fmt.Errorf("broker definitions: %w", err)
	}
	return fmt.Sprintf(`listeners.ssl.default = 127.0.0.1:%d
load_definitions = %[2]s/definitions.json
ssl_options.cacertfile = %[2]s/ca.crt
ssl_options.certfile = %[2]s/server.crt
ssl_options.keyfile = %[2]s/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
ssl_cert_login_from = common_name
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = EXTERNAL
`, b.TLSPort(), b.Dir()), nil
}

// testBroker names the shared broker's parts as this package's tests use them.
type testBroker struct {
	*amqptest.Broker
	dir               string
	amqpPort, tlsPort int
}

// requireBroker skips the test when RabbitMQ is not available, except under
// CI=true, where a missing broker is a failure.
func requireBroker(t testing.TB) *testBroker {
	t.Helper()
	b := amqptest.Require(t)
	return &testBroker{Broker: b, dir: b.Dir(), amqpPort: b.AMQPPort(), tlsPort: b.TLSPort()}
}

func (b *testBroker) url() string { return b.URL() }

func (b *testBroker) restart(t testing.TB, downtime time.Duration) { b.Restart(t, downtime) }

func (b *testBroker) ctl(t testing.TB, args ...string) { b.Ctl(t, args...) }

func (b *testBroker) freeze(t testing.TB, stop bool) { b.Freeze(t, stop) }

var (
	deadURL = amqptest.DeadURL
	waitFor = testutil.WaitFor
)
