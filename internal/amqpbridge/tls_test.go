package amqpbridge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The broker also listens with TLS, like Fedora's: vhost /pubsub, the
// zmq.topic exchange declared by the operator, and a user named after the
// client certificate's CN that may write and read but not configure.
const (
	tlsVhost     = "/pubsub"
	tlsUser      = "fedmsg-relay-test"
	tlsQueue     = "tls-check"
	tlsExchange  = "zmq.topic"
	guestAccount = "guest"
)

// writeTestPKI creates a CA, a server certificate for 127.0.0.1 and a client
// certificate with CN tlsUser in dir.
func writeTestPKI(dir string) error {
	caKey, caCert, err := newCert(nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "amqpbridge test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	})
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "ca.crt"), "CERTIFICATE", caCert.Raw); err != nil {
		return err
	}
	for name, tmpl := range map[string]*x509.Certificate{
		"server": {Subject: pkix.Name{CommonName: "localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			DNSNames: []string{"localhost"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		"client": {Subject: pkix.Name{CommonName: tlsUser}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	} {
		key, cert, err := newCert(caKey, caCert, tmpl)
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", cert.Raw); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, name+".key"), "PRIVATE KEY", der); err != nil {
			return err
		}
	}
	return nil
}

// newCert signs tmpl with the parent (self-signed when parent is nil).
func newCert(parentKey *ecdsa.PrivateKey, parent, tmpl *x509.Certificate) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate %s: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, err
}

func writePEM(path, blockType string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o640)
}

// brokerDefinitions is loaded at boot: users, vhosts, permissions and the
// pre-declared exchange and queue.
func brokerDefinitions() ([]byte, error) {
	salt := make([]byte, 4)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	// rabbit_password_hashing_sha256: base64(salt ++ sha256(salt ++ password)).
	sum := sha256.Sum256(append(append([]byte(nil), salt...), guestAccount...))
	guestHash := base64.StdEncoding.EncodeToString(append(salt, sum[:]...))
	type m = map[string]any
	all := m{"configure": ".*", "write": ".*", "read": ".*"}
	perm := func(user, vhost string, p m) m {
		out := m{"user": user, "vhost": vhost}
		for k, v := range p {
			out[k] = v
		}
		return out
	}
	return json.Marshal(m{
		"users": []m{
			{"name": guestAccount, "password_hash": guestHash, "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []string{"administrator"}},
			// No password: this user can only log in with its certificate.
			{"name": tlsUser, "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []string{}},
		},
		"vhosts": []m{{"name": "/"}, {"name": tlsVhost}},
		"permissions": []m{
			perm(guestAccount, "/", all),
			// Guest (the default login) may only read here: a message published to
			// zmq.topic proves the login with the certificate.
			perm(guestAccount, tlsVhost, m{"configure": "", "write": "", "read": ".*"}),
			perm(tlsUser, tlsVhost, m{"configure": "", "write": ".*", "read": ".*"}),
		},
		"exchanges": []m{{"name": tlsExchange, "vhost": tlsVhost, "type": "topic", "durable": true, "auto_delete": false, "internal": false, "arguments": m{}}},
		"queues":    []m{{"name": tlsQueue, "vhost": tlsVhost, "durable": true, "auto_delete": false, "arguments": m{}}},
		"bindings": []m{{"source": tlsExchange, "vhost": tlsVhost, "destination": tlsQueue, "destination_type": "queue",
			"routing_key": "#", "arguments": m{}}},
	})
}

// TestTLSExternal connects over TLS with a client certificate and SASL
// EXTERNAL to a vhost where the bridge's user may not configure anything, as
// on Fedora's broker, and checks the message arrives.
func TestTLSExternal(t *testing.T) {
	b := requireBroker(t)
	cfg := testConfig(t, fmt.Sprintf("amqps://127.0.0.1:%d/%s", b.tlsPort, url.PathEscape(tlsVhost)), tlsExchange)
	cfg.CACert = filepath.Join(b.dir, "ca.crt")
	cfg.ClientCert = filepath.Join(b.dir, "client.crt")
	cfg.ClientKey = filepath.Join(b.dir, "client.key")
	guestURL := fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/%s", b.amqpPort, url.PathEscape(tlsVhost))
	withChannel(t, guestURL, func(ch *amqp.Channel) error { _, err := ch.QueuePurge(tlsQueue, false); return err })
	got := startCollector(t, guestURL, tlsQueue)
	bridge := startBridge(t, cfg, nil)
	bridge.publish([]byte("org.fedoraproject.prod.tls"), fedmsgBody("org.fedoraproject.prod.tls", "2026-tls", `{"over": "tls"}`))
	waitFor(t, 15*time.Second, "the message sent over TLS", func() bool {
		unique, _ := got.counts()
		return unique == 1
	})
	if d := got.snapshot()[0]; d.MessageId != "2026-tls" || string(d.Body) != `{"over": "tls"}` {
		t.Fatalf("got message %s %s", d.MessageId, d.Body)
	}
}
