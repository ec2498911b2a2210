package amqpbridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/fedora-infra/fedmsg-relay/internal/logging"
	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
	"github.com/fedora-infra/fedmsg-relay/internal/spool"
)

const (
	dialTimeout  = 10 * time.Second
	closeTimeout = 2 * time.Second
)

// Bridge copies relayed messages to RabbitMQ and, when configured, consumed
// RabbitMQ messages into the bus. Enqueue is safe for concurrent use.
type Bridge struct {
	opts    Options
	log     hclog.Logger
	tls     *tls.Config // nil for amqp://
	spool   *spool.Spool
	metrics *bridgeMetrics

	injectedSeq atomic.Uint64 // the "i" of injected envelopes
	closeOnce   sync.Once
	closeErr    error
}

// New opens (or recovers) the spool and prepares the bridge; nothing connects
// until Run.
func New(opts Options, log hclog.Logger, reg *metrics.Registry) (*Bridge, error) {
	tlsConfig, err := loadTLS(opts)
	if err != nil {
		return nil, err
	}
	b := &Bridge{opts: opts, log: log, tls: tlsConfig, metrics: newBridgeMetrics(reg)}
	b.spool, err = spool.Open(spool.Options{
		Dir: opts.SpoolDir, MaxBytes: opts.SpoolMaxBytes, Log: log.Named(logging.NameSpool),
		Sync: opts.SpoolSync, SyncInterval: opts.SpoolSyncInterval, Budget: opts.Budget,
		Events: spool.Events{
			Appended: func(n int) { b.metrics.spooled.Add(uint64(n)) },
			Dropped:  b.metrics.drop,
		},
	})
	if err != nil {
		return nil, err
	}
	b.metrics.watchSpool(reg, b.spool)
	return b, nil
}

func loadTLS(cfg Options) (*tls.Config, error) {
	if cfg.CACert == "" && cfg.ClientCert == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CACert != "" {
		pem, err := os.ReadFile(cfg.CACert)
		if err != nil {
			return nil, fmt.Errorf("amqp.ca_cert: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("amqp.ca_cert: %s: no PEM certificate found", cfg.CACert)
		}
	}
	if cfg.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ClientCert, cfg.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("amqp.client_cert/client_key: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Enqueue hands a batch of relayed messages to the bridge: it copies them
// into the spool's buffer, reading the clock once, charged to the relay's
// byte budget, and returns without waiting for the disk (spool.Append).
// With confirm (a confirming client will be told "ok" for one of them) it
// keeps the batch whole or not at all and returns its Completion: the relay
// answers "ok" only once that completes without failure, so a killed relay
// (or, under spool_sync: always, a crashed host) loses nothing it answered
// "ok" for. Without confirm it returns nil. It never waits for the broker
// and does not parse the bodies. Messages other relays' AMQP bridges
// injected (username "amqp-bridge") are skipped by the publisher, off this
// path, so they do not loop.
func (b *Bridge) Enqueue(topics, bodies [][]byte, confirm bool) *spool.Completion {
	_, written := b.spool.Append(topics, bodies, time.Now(), confirm)
	return written
}

// Run publishes spooled messages, and consumes the configured queue into
// inject, until ctx is done; broker failures are retried, never returned, so
// it returns nil. A delivery is acknowledged only after inject's answer said
// the relay published it.
func (b *Bridge) Run(ctx context.Context, inject Inject) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.keepConnected(ctx, directionPublish, b.publishSession)
	}()
	if b.opts.Consume.Queue != "" && inject == nil {
		b.log.Warn("amqp.consume.queue is set but no inject function was given; not consuming")
	}
	if b.opts.Consume.Queue != "" && inject != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.keepConnected(ctx, directionConsume, func(ctx context.Context, conn *amqp.Connection) (bool, error) {
				return b.consumeSession(ctx, conn, inject)
			})
		}()
	}
	wg.Wait()
	return nil
}

// Close writes pending messages and the confirmation cursor to the spool.
// Call it after Run returned; later Enqueue calls drop their messages.
func (b *Bridge) Close() error {
	b.closeOnce.Do(func() { b.closeErr = b.spool.Close() })
	return b.closeErr
}

// session runs on one connection until it fails or ctx is done. progressed
// tells whether it got anything done, which resets the reconnect backoff.
type session func(ctx context.Context, conn *amqp.Connection) (progressed bool, err error)

// keepConnected runs sessions one after another, with exponential backoff
// and jitter between failed ones, until ctx is done.
func (b *Bridge) keepConnected(ctx context.Context, direction string, run session) {
	log := b.log.With("direction", direction, "url", redactURL(b.opts.URL))
	delay := b.opts.ReconnectMin
	for {
		connected, progressed, err := b.runSession(ctx, direction, log, run)
		if ctx.Err() != nil {
			log.Info("stopped")
			return
		}
		if progressed {
			delay = b.opts.ReconnectMin
		}
		// Jitter over the upper half of the delay spreads reconnecting relays apart.
		wait := delay/2 + rand.N(delay/2+1)
		what := "broker connection lost, reconnecting"
		if !connected {
			what = "cannot connect to broker, retrying"
		}
		log.Warn(what, "error", err, "delay", wait.Round(time.Millisecond))
		b.metrics.reconnects[direction].Inc()
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		delay = min(delay*2, b.opts.ReconnectMax)
	}
}

// runSession connects and runs one session; connected tells whether the
// connection was established at all.
func (b *Bridge) runSession(ctx context.Context, direction string, log hclog.Logger, run session) (connected, progressed bool, err error) {
	conn, err := b.dial(direction)
	if err != nil {
		return false, false, err
	}
	// A bounded close: a frozen or partitioned broker never answers close-ok.
	defer func() { conn.CloseDeadline(time.Now().Add(closeTimeout)) }()
	log.Info("connected to broker", "server", conn.RemoteAddr().String())
	b.metrics.connected[direction].Set(1)
	defer b.metrics.connected[direction].Set(0)
	defer b.metrics.blocked[direction].Set(0)

	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 1))
	sessionDone := make(chan struct{})
	defer close(sessionDone)
	go func() {
		for {
			select {
			case bl, ok := <-blocked:
				if !ok {
					return
				}
				if bl.Active {
					b.metrics.blocked[direction].Set(1)
					log.Warn("broker blocked the connection (resource alarm); messages wait in the spool", "reason", bl.Reason)
				} else {
					b.metrics.blocked[direction].Set(0)
					log.Info("broker unblocked the connection")
				}
			case <-ctx.Done():
				// Give the session time to collect its last confirms, then close the
				// connection, which also unblocks a publish stuck on a blocked broker.
				select {
				case <-sessionDone:
				case <-time.After(shutdownConfirmWait + time.Second):
					conn.CloseDeadline(time.Now().Add(closeTimeout))
				}
				return
			case <-sessionDone:
				return
			}
		}
	}()
	progressed, err = run(ctx, conn)
	return true, progressed, err
}

// guardSetup bounds a session's set-up calls (channel open, confirm mode,
// declarations), which wait for the broker's answer with no deadline of
// their own: a broker that stops answering between the connection and the
// channel would otherwise hold the session until the heartbeat gives up.
// Past confirm_timeout the connection is closed, which fails the waiting
// call; the returned func ends the guard once the set-up is done.
func (b *Bridge) guardSetup(conn *amqp.Connection) (done func()) {
	t := time.AfterFunc(b.opts.ConfirmTimeout, func() {
		b.log.Warn("broker did not answer the session set-up; reconnecting", "within", b.opts.ConfirmTimeout)
		conn.CloseDeadline(time.Now().Add(closeTimeout))
	})
	return func() { t.Stop() }
}

func (b *Bridge) dial(direction string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("fedmsg-relay amqp bridge (" + direction + ")")
	cfg := amqp.Config{
		Heartbeat:       b.opts.Heartbeat,
		TLSClientConfig: b.tls,
		Properties:      props,
		Dial: func(network, addr string) (net.Conn, error) {
			conn, err := amqp.DefaultDial(dialTimeout)(network, addr)
			if err != nil {
				return nil, err
			}
			return newBatchingConn(conn, b.opts.ConfirmTimeout), nil
		},
	}
	if b.tls != nil && len(b.tls.Certificates) > 0 {
		cfg.SASL = []amqp.Authentication{&amqp.ExternalAuth{}}
	}
	conn, err := amqp.DialConfig(b.opts.URL, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", redactURL(b.opts.URL), err)
	}
	return conn, nil
}
