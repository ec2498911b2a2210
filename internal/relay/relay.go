// Package relay is the fedmsg relay: it takes messages from the inbound
// sockets, checks them, and republishes the accepted ones unchanged on the
// outbound PUB socket. One goroutine runs the forwarding loop; everything
// else (metrics, monitoring, connection events) happens beside it.
package relay

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/inbound"
	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
	"github.com/fedora-infra/fedmsg-relay/internal/outbound"
	"github.com/fedora-infra/fedmsg-relay/internal/transport"
	"github.com/fedora-infra/fedmsg-relay/internal/wire"
)

// pollInterval bounds how long the loop waits for input before it looks at
// its context again; it also sets the watchdog's view of liveness.
const pollInterval = 100 * time.Millisecond

// Signer turns an accepted body into the body to publish (fedmsg X.509).
type Signer interface {
	Sign(body []byte) ([]byte, error)
}

// Verifier checks an inbound message's signature and routing policy.
type Verifier interface {
	Verify(topic string, body []byte) error
}

// Crypto is the key material in use; swapped as a whole on reload.
type Crypto struct {
	Signer   Signer   // nil: publish bodies as received
	Verifier Verifier // nil: no signature validation
}

// Options configure a relay.
type Options struct {
	// The endpoints and socket limits; Linger is taken from DrainTimeout.
	// Inject opens the injection socket (NewInjector).
	transport.Options
	// Resume holds publishing at start until the listeners are back.
	Resume ResumeOptions
	// DrainTimeout bounds the drain on shutdown and the linger on Close.
	DrainTimeout time.Duration

	// AllowedTopicPrefixes restricts accepted topics; empty accepts all.
	AllowedTopicPrefixes []string
	// PassTopicMismatch publishes bodies whose "topic" differs from frame 1.
	PassTopicMismatch bool
	// DropLogInterval bounds how often each drop reason is logged.
	DropLogInterval time.Duration

	Monitoring MonitoringOptions
}

// Relay forwards fedmsg messages from its inbound sockets to its outbound one.
type Relay struct {
	opts    Options
	log     hclog.Logger
	sockets *transport.Sockets
	policy  wire.Policy
	stats   *stats
	resume  *resumeStats
	drops   *dropLogger
	crypto  atomic.Pointer[Crypto]
	tap     Tap
	inject  *Injector // nil unless NewInjector was called
	reg     *metrics.Registry

	// With a tap: the replies for what it failed to keep, and, with the Go
	// engine's confirm endpoints, the replies that wait for durability.
	refusals *tapRefusals
	held     *heldReplies // nil: Flush answers confirming clients itself

	batch batchState // owned by the forwarding loop

	lastLoop atomic.Int64 // unix nanoseconds of the loop's last turn
	backlog  atomic.Int64 // size of the last batch: how much was waiting
	running  atomic.Bool

	finalSubscriptions atomic.Int64 // at the end of Run
	// stopBy is when the drain must end; Close lingers only until then, so
	// stopping takes drain_timeout in all, not twice that.
	stopBy time.Time
}

// New binds every socket of opts. The relay serves nothing until Run.
func New(opts Options, log hclog.Logger, reg *metrics.Registry) (*Relay, error) {
	st := newStats(reg)
	sockOpts := opts.Options
	sockOpts.Linger = opts.DrainTimeout
	disconnects := newDisconnectLogger(log, opts.DropLogInterval)
	sockOpts.InboundEvent = func(ev inbound.Event) {
		st.inboundEvent(ev)
		disconnects.note(ev)
	}
	sockOpts.OutboundEvent = func(ev outbound.Event) {
		st.outboundEvent(ev)
		disconnects.noteOutbound(ev)
	}
	sockets, err := transport.Open(sockOpts)
	if err != nil {
		return nil, err
	}
	r := &Relay{
		opts:    opts,
		log:     log,
		sockets: sockets,
		policy:  newPolicy(opts),
		stats:   st,
		resume:  newResumeStats(reg),
		drops:   newDropLogger(log, opts.DropLogInterval),
		reg:     reg,
	}
	r.crypto.Store(&Crypto{})
	for _, reason := range wire.Reasons() {
		sockets.SetReason(int(reason), "refused:"+reason.String())
	}
	sockets.SetReason(shuttingDown, "refused:shutting_down")
	if err := sockets.Monitor(r.stats.connEvent); err != nil {
		sockets.Close()
		return nil, err
	}
	if out := sockets.Outbound(); out != nil {
		registerSubscribers(reg, out)
	}
	reg.GaugeFunc("fedmsg_relay_backlog", "Messages that were waiting in the last receive batch.",
		func() float64 { return float64(r.backlog.Load()) })
	return r, nil
}

func newPolicy(opts Options) wire.Policy {
	p := wire.Policy{
		MaxBytes:          int(opts.MaxMessageBytes),
		PassTopicMismatch: opts.PassTopicMismatch,
	}
	for _, prefix := range opts.AllowedTopicPrefixes {
		p.AllowedPrefixes = append(p.AllowedPrefixes, []byte(prefix))
	}
	return p
}

// SetCrypto installs (or, on reload, replaces) the signer and verifier.
func (r *Relay) SetCrypto(c *Crypto) { r.crypto.Store(c) }

// Tap sees the messages of one batch the relay publishes, as parallel
// slices, and must not block. It must copy what it keeps: the slices are
// reused and the bytes freed once it returns. confirmed says a confirming
// client waits to be told "ok" for one of them: the tap then returns the
// batch's Durability (nil otherwise), and the relay answers "ok" only once
// it is done without failure. A batch whose Durability failed before the
// tap returned is not kept at all: its confirming clients' messages are
// refused and not published. One that fails later was published: its
// clients are refused all the same (the Go engine), or (libzmq) the loop
// waits for it before it publishes.
type Tap func(topics, bodies [][]byte, confirmed bool) Durability

// SetTap registers fn to see, once per batch, every message published except
// those sent through the relay's Injector (the AMQP bridge's own). failures
// are the reasons its Durability may fail with; each becomes a reply
// "refused:spool_<reason>" and a counter. Call before Run.
func (r *Relay) SetTap(fn Tap, failures []string) {
	r.tap = fn
	r.refusals = newTapRefusals(r.sockets, r.reg, r.log, r.opts.DropLogInterval, failures, shuttingDown+1)
	if r.opts.InboundEngine == transport.EngineGo && len(r.opts.Confirm) > 0 {
		r.held = newHeldReplies(r.sockets, r.refusals)
	}
}

// Alive reports whether the forwarding loop turned recently: the systemd
// watchdog pings only while it does.
func (r *Relay) Alive(within time.Duration) bool {
	return r.running.Load() && time.Since(time.Unix(0, r.lastLoop.Load())) < within
}

// Run forwards until ctx is cancelled, then drains: it stops accepting
// inbound messages, publishes what was already received and returns. Close
// afterwards lets the outbound socket linger to deliver it.
func (r *Relay) Run(ctx context.Context) error {
	r.running.Store(true)
	defer r.running.Store(false)
	// What the loop (and its drain) did not decide on by its end, it never will.
	defer r.inject.finish()
	r.log.Info("relaying", "inbound", strings.Join(r.opts.Inbound, ","),
		"outbound", strings.Join(r.opts.Outbound, ","),
		"confirm", strings.Join(r.opts.Confirm, ","), "inherited_sockets", len(r.opts.Inherited),
		"inbound_engine", r.opts.InboundEngine, "outbound_engine", r.opts.OutboundEngine)
	r.holdForListeners(ctx)
	for ctx.Err() == nil {
		r.lastLoop.Store(time.Now().UnixNano())
		if _, err := r.forwardBatch(pollInterval); err != nil {
			return err
		}
	}
	err := r.drain()
	if r.held != nil {
		if left := r.held.stop(r.stopBy); left > 0 {
			r.log.Warn("draining: confirm replies still wait for the spool; they are not sent", "batches", left)
		}
	}
	r.finalSubscriptions.Store(int64(r.sockets.Subscriptions(0)))
	return err
}

// shuttingDown is the drop code, after wire's reasons, of what the drain
// could not publish in time: confirming clients get "refused:shutting_down".
const shuttingDown = int(wire.NumReasons)

// drain stops the inbound side and forwards whatever libzmq had queued, for
// at most DrainTimeout.
func (r *Relay) drain() error {
	r.stopBy = time.Now().Add(r.opts.DrainTimeout)
	if len(r.opts.Inherited) > 0 {
		return r.handOver()
	}
	r.log.Info("draining: inbound closed, publishing what was received", "drain_timeout", r.opts.DrainTimeout)
	if err := r.sockets.StopInbound(); err != nil {
		r.log.Error("draining: some inbound endpoints still accept producers", "error", err)
	}
	return r.forwardUntil(r.stopBy, 0, 0)
}

// handOver is the drain when the listening sockets outlive the relay:
// producers close their connections themselves after their last message,
// and confirming clients after their reply, so nothing in flight is cut
// off; they reconnect to the next relay.
func (r *Relay) handOver() error {
	r.log.Info("draining: handing producers over to the next relay, publishing what they sent", "drain_timeout", r.opts.DrainTimeout)
	r.sockets.HandOver()
	deadline := time.Now().Add(r.opts.DrainTimeout)
	total := 0
	for time.Now().Before(deadline) && r.sockets.PeersLeft() > 0 {
		n, err := r.forwardBatch(10 * time.Millisecond)
		if err != nil {
			return err
		}
		total += n
	}
	if err := r.sockets.FinishHandOver(); err != nil {
		r.log.Error("draining: some inbound endpoints still accept producers", "error", err)
	}
	return r.forwardUntil(deadline, total, r.sockets.PeersLeft())
}

// forwardUntil publishes what is queued until nothing is left or the
// deadline passes; published and connected (peers cut off by the
// deadline) are what came before, for the log.
func (r *Relay) forwardUntil(deadline time.Time, published, connected int) error {
	for time.Now().Before(deadline) {
		n, err := r.forwardBatch(0)
		if err != nil {
			return err
		}
		if n == 0 {
			r.log.Info("drained", "messages", published, "peers_cut_off", connected)
			return nil
		}
		published += n
	}
	return r.abandon(published)
}

// abandon refuses what is still queued once the drain ran out of time (the
// inbound side is closed, so that is bounded) and logs how much it was.
func (r *Relay) abandon(published int) error {
	s, left := r.sockets, 0
	for {
		n, err := s.Recv(0)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		for i := range n {
			s.SetVerdict(i, transport.Drop+shuttingDown)
		}
		r.flush(nil, true)
		left += n
	}
	r.log.Warn("drain_timeout passed: messages still queued were not published",
		"published", published, "not_published", left, "drain_timeout", r.opts.DrainTimeout)
	return nil
}

// batchState is the forwarding loop's per-message scratch space.
type batchState struct {
	reasons [transport.MaxBatch]wire.Reason
	errs    [transport.MaxBatch]error  // why verification or signing failed
	signed  [transport.MaxBatch][]byte // signed bodies, until swapped in
	// What the tap sees: accepted messages, those injected left out.
	tapTopics, tapBodies [transport.MaxBatch][]byte
	// The verdicts on injected messages, in order, for their Sends.
	injected [transport.MaxBatch]wire.Reason
}

// forwardBatch is the hot path: one receive, one verdict per message, one
// send. Counters are summed locally and published once per batch.
func (r *Relay) forwardBatch(wait time.Duration) (int, error) {
	s := r.sockets
	n, err := s.Recv(wait)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	r.backlog.Store(int64(n))
	var b batchCounts
	reasons, errs := r.batch.reasons[:n], r.batch.errs[:n]
	for i := range n {
		m := s.Message(i)
		b.received[m.Source]++
		b.receivedBytes += uint64(m.Size)
		reasons[i], errs[i] = r.policy.Validate(m.Frames, m.Size, m.Topic, m.Body), nil
	}
	if crypto := r.crypto.Load(); crypto.Verifier != nil || crypto.Signer != nil {
		r.applyCrypto(crypto, n)
	}
	tapped, injected, confirmed := 0, 0, false
	for i := range n {
		m := s.Message(i) // a signed body has replaced the received one
		if m.Source == transport.FromInject {
			r.batch.injected[injected] = reasons[i]
			injected++
		}
		if reason := reasons[i]; reason != wire.OK {
			s.SetVerdict(i, transport.Drop+int(reason))
			b.dropped[reason]++
			r.drops.note(reason, m, errs[i])
			continue
		}
		b.relayedBytes += uint64(m.Size)
		if r.tap != nil && m.Source != transport.FromInject {
			r.batch.tapTopics[tapped], r.batch.tapBodies[tapped] = m.Topic, m.Body
			tapped++
			confirmed = confirmed || m.Source == transport.FromRouter
		}
	}
	var durable Durability
	if tapped > 0 {
		if d := r.tap(r.batch.tapTopics[:tapped], r.batch.tapBodies[:tapped], confirmed); d != nil {
			durable = r.awaitTap(d, n, &b)
		}
	}
	sent, failed := r.flush(durable, b.received[transport.FromRouter] > 0)
	if injected > 0 {
		r.inject.decide(r.batch.injected[:injected])
	}
	b.relayed = uint64(sent)
	b.sendErrors = uint64(failed)
	r.stats.add(&b)
	return n, nil
}

// awaitTap returns what the batch's confirm replies must still wait for.
// With libzmq, which answers confirming clients as it sends, it waits for
// the tap first, however long the disk takes. A batch the tap failed to
// keep has its confirming clients' messages refused before the send.
func (r *Relay) awaitTap(d Durability, n int, b *batchCounts) Durability {
	if r.held == nil {
		<-d.Done()
	}
	select {
	case <-d.Done():
	default:
		return d
	}
	if failure := d.Failed(); failure != "" {
		r.refuseUnspooled(failure, n, b)
	}
	return nil
}

// flush sends the batch. With held replies, its confirm replies (if it has
// confirming clients' messages) go out once durable is done and the
// batches before were answered.
func (r *Relay) flush(durable Durability, confirms bool) (sent, failed int) {
	if r.held == nil || !confirms {
		return r.sockets.Flush()
	}
	hb := r.held.batch()
	sent, failed, hb.replies = r.sockets.FlushHoldingReplies(hb.replies)
	r.held.hold(hb, durable)
	return sent, failed
}

// applyCrypto verifies and signs the batch's valid messages. RSA costs about
// a millisecond per signature, so the messages are spread over the machine's
// cores; the signed bodies are then swapped in, in order, on this goroutine.
func (r *Relay) applyCrypto(c *Crypto, n int) {
	s, st := r.sockets, &r.batch
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if st.reasons[i] == wire.OK {
					st.signed[i], st.reasons[i], st.errs[i] = cryptoOne(c, s.Message(i))
				}
			}
		}()
	}
	wg.Wait()
	for i := range n {
		if st.signed[i] == nil {
			continue
		}
		if err := s.ReplaceBody(i, st.signed[i]); err != nil {
			st.reasons[i], st.errs[i] = wire.SignFailed, err
		}
		st.signed[i] = nil
	}
}

// cryptoOne verifies m's signature and signs its body, as configured; it is
// safe to run for several messages at once.
func cryptoOne(c *Crypto, m transport.Message) (signed []byte, r wire.Reason, err error) {
	// Injected messages come from the authenticated broker, in envelopes the
	// bridge built unsigned.
	if c.Verifier != nil && m.Source != transport.FromInject {
		if err := c.Verifier.Verify(string(m.Topic), m.Body); err != nil {
			return nil, wire.Signature, err
		}
	}
	if c.Signer != nil {
		if signed, err = c.Signer.Sign(m.Body); err != nil {
			return nil, wire.SignFailed, err
		}
	}
	return signed, wire.OK, nil
}

// closeGrace is the least Close lingers after a drain.
const closeGrace = 100 * time.Millisecond

// Close releases the sockets, letting queued output linger for what is left
// of the drain timeout (all of it if Run did not drain). Call it after Run
// returned and the injector's users stopped.
func (r *Relay) Close() {
	if r.inject != nil {
		r.inject.close()
	}
	if !r.stopBy.IsZero() {
		// A moment even past the deadline, so that the shutting_down replies
		// abandon just sent still leave.
		if err := r.sockets.SetLinger(max(time.Until(r.stopBy), closeGrace)); err != nil {
			r.log.Warn("set linger for the rest of drain_timeout", "error", err)
		}
	}
	r.sockets.Close()
}

// describe renders a message for a log line without flooding it.
func describe(m transport.Message) []any {
	const max = 80
	topic := m.Topic
	if len(topic) > max {
		topic = topic[:max]
	}
	// Topics may be hostile: no invalid UTF-8 or control bytes in our log.
	return []any{"frames", m.Frames, "bytes", m.Size, "topic", strconv.QuoteToGraphic(string(topic)), "source", sourceName(m.Source)}
}
