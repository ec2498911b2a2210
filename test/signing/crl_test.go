package signing

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/fedora-infra/fedmsg-relay/internal/signing/signingtest"
	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

// crlUntil is the test CA's next CRL, revoking names, valid until nextUpdate.
func crlUntil(t *testing.T, nextUpdate time.Time, revoke ...string) []byte {
	t.Helper()
	crl, err := pki.CRLUntil(nextUpdate, revoke...)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// startCRLRelay runs the relay validating signatures against the CRL that
// site publishes, downloaded into a cache of its own.
func startCRLRelay(t *testing.T, plain, ssldir string, site *signingtest.CRLServer, stale string) *relay {
	return startRelay(t, plain, nil,
		"validate_signatures: true",
		"ca_cert: "+filepath.Join(ssldir, signingtest.CAFile),
		"crl_location: "+site.URL+"/fedmsg/crl.pem",
		"crl_cache: "+filepath.Join(t.TempDir(), "crl.pem"),
		"crl_tls_ca: "+site.CAFile,
		"crl_stale: "+stale,
	)
}

// The CRL served over https expires and the CA publishes a new one revoking
// a producer: the relay downloads it without a SIGHUP and refuses that
// producer's messages from then on. (crl_stale: accept, so that a slow first
// exchange that ends after the first CRL's nextUpdate still gets through.)
func TestCRLRefreshedWithoutSIGHUP(t *testing.T) {
	plain, _ := relayBinary(t)
	ssldir := sslDir(t)
	signed := signBodies(t, ssldir,
		toSign{certProducer, fedmsgBody(t, openTopic, 1, map[string]any{"n": 1})},
		toSign{certProducer, fedmsgBody(t, openTopic, 2, map[string]any{"n": 2})},
	)
	site := signingtest.NewCRLServer(t, crlUntil(t, time.Now().Add(6*time.Second), certRevoked))
	r := startCRLRelay(t, plain, ssldir, site, "accept")
	send := func(body []byte) int {
		return len(exchange(t, r, ssldir, certRotated, 1, [][][]byte{{[]byte(openTopic), body}})[0])
	}
	if n := send(signed[0]); n != 1 {
		t.Fatalf("before the refresh: %d relayed, want 1", n)
	}
	next := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	site.Publish(crlUntil(t, next, certRevoked, certProducer))
	// A minute: a refresher in back-off retries after 10 s, then 20 s.
	testutil.WaitFor(t, time.Minute, "the second CRL in use", func() bool {
		return r.metric(t, "fedmsg_relay_crl_next_update_seconds") == float64(next.Unix())
	})
	if n := send(signed[1]); n != 0 {
		t.Errorf("after the refresh: %d relayed, want 0 (certificate revoked)", n)
	}
	if v := r.metric(t, "fedmsg_relay_crl_stale"); v != 0 {
		t.Errorf("fedmsg_relay_crl_stale = %v after the refresh", v)
	}
	if !strings.Contains(r.Output(), "CRL refreshed") {
		t.Errorf("refresh not logged:\n%s", r.Output())
	}
}

// The CRL site goes down and the CRL in use passes its nextUpdate: the relay
// says so loudly and in a metric, keeps the old CRL, and then does what
// crl_stale says. accept: the bus keeps running, and what the old CRL
// revoked stays refused. refuse: every message is dropped, as with fedmsg.
func TestStaleCRL(t *testing.T) {
	plain, _ := relayBinary(t)
	ssldir := sslDir(t)
	signed := signBodies(t, ssldir,
		toSign{certProducer, fedmsgBody(t, openTopic, 1, map[string]any{"n": 1})},
		toSign{certRevoked, fedmsgBody(t, openTopic, 2, map[string]any{"n": 2})},
	)
	for _, stale := range []string{"accept", "refuse"} {
		t.Run(stale, func(t *testing.T) {
			next := time.Now().Add(3 * time.Second).Truncate(time.Second)
			site := signingtest.NewCRLServer(t, crlUntil(t, next, certRevoked))
			r := startCRLRelay(t, plain, ssldir, site, stale)
			site.Publish(nil)
			testutil.WaitFor(t, time.Minute, "fedmsg_relay_crl_stale 1", func() bool {
				return r.metric(t, "fedmsg_relay_crl_stale") == 1
			})
			// A first attempt may still have found the site up, serving the
			// expired CRL; the next one, 10 s later, meets the outage.
			r.WaitOutput(t, "503 Service Unavailable", time.Minute)
			if !strings.Contains(r.Output(), "CRL is past its nextUpdate and cannot be refreshed") {
				t.Errorf("the stale CRL is not logged as an error:\n%s", r.Output())
			}
			if v := r.metric(t, "fedmsg_relay_crl_next_update_seconds"); v != float64(next.Unix()) {
				t.Errorf("after the failed refresh the CRL in use ends at %v, want the old one's %d", v, next.Unix())
			}
			if stale == "accept" {
				got := exchange(t, r, ssldir, certRotated, 1, [][][]byte{
					{[]byte(openTopic), signed[0]}, {[]byte(openTopic), signed[1]},
				})[0]
				if len(got) != 1 || string(got[0][1]) != string(signed[0]) {
					t.Errorf("with a stale CRL accepted: relayed %q, want only the good producer's message", bodies(got))
				}
				return
			}
			// Nothing gets through, not even the exchange's probes: publish
			// until the relay has dropped a good message as stale.
			before := r.metric(t, dropped("signature"))
			publishUntil(t, r, [][]byte{[]byte(openTopic), signed[0]}, func() bool {
				return r.metric(t, dropped("signature")) > before && strings.Contains(r.Output(), "CRL expired or not yet valid")
			})
		})
	}
}

// publishUntil sends frames to the relay's inbound socket every 100 ms until
// done, for at most 30 s.
func publishUntil(t *testing.T, r *relay, frames [][]byte, done func() bool) {
	t.Helper()
	pub, err := zmq.NewSocket(zmq.PUB)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if err := pub.Connect(r.inbound); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("relay did not drop the message in 30 s:\n%s", r.Output())
		}
		if _, err := pub.SendMessage(frames); err != nil {
			t.Fatalf("publish: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
