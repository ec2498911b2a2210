// Command fedmsg-tail prints the messages a fedmsg relay publishes on
// relay_outbound. With --count and --timeout it is also a check that the bus
// works: it exits 0 once it has seen N messages and 1 if the time runs out.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	zmq "github.com/pebbe/zmq4"

	"github.com/fedora-infra/fedmsg-relay/internal/fedmsgconf"
	"github.com/fedora-infra/fedmsg-relay/internal/signing"
	"github.com/fedora-infra/fedmsg-relay/internal/version"
)

const usage = `Usage: fedmsg-tail [flags]

Print the messages published on the relay's outbound endpoint, one line each:
"TOPIC BODY" or, with --json, the JSON body alone. Control characters are
printed escaped (\u001b), never raw.

--validate checks every message as a validating fedmsg consumer does: the
certificate issued by the CA at ca_cert_location, not in the CRL at
crl_location, the signature, and routing_policy (with routing_nitpicky). A
message that fails is printed as "!! invalid REASON (DETAIL): TOPIC BODY"
(with --json, the body alone, and the mark on standard error);
--drop-invalid leaves it out, with a line on standard error. When the config
sets validate_signatures, invalid messages are left out that way unless a
flag says otherwise, as fedmsg's own tail does; --no-validate prints every
message unchecked. For an https:// location the copy fedmsg cached
(ca_cert_cache, crl_cache) is read; nothing is downloaded.

Addresses come from --relay-outbound, else FEDMSG_RELAY_OUTBOUND, else
endpoints["relay_outbound"] in the fedmsg config: the *.py files of
FEDMSG_CONFIG, else /etc/fedmsg.d.

Exit status: 0 after --count messages (or when interrupted), 1 on timeout or
error, 2 usage error.

Flags:
`

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	relays                listFlag
	topic                 string
	jsonOut, version      bool
	validate, drop        bool
	noValidate            bool
	count                 int
	timeout               time.Duration
	configDir, configFile string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o := &options{}
	fs := flag.NewFlagSet("fedmsg-tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	fs.Var(&o.relays, "relay-outbound", "relay_outbound address (repeatable or comma-separated)")
	fs.StringVar(&o.topic, "topic", "", "print only topics starting with this prefix")
	fs.BoolVar(&o.jsonOut, "json", false, "print each body as one line of JSON")
	fs.IntVar(&o.count, "count", 0, "exit 0 after this many messages (0: no limit)")
	fs.DurationVar(&o.timeout, "timeout", 0, "exit 1 if --count messages have not arrived by then (0: wait forever)")
	fs.StringVar(&o.configDir, "config-dir", "", "directory of fedmsg *.py config files (default: FEDMSG_CONFIG, else /etc/fedmsg.d)")
	fs.StringVar(&o.configFile, "config-filename", "", "a single fedmsg config file to read instead")
	fs.BoolVar(&o.validate, "validate", false, "check signatures, certificates and the routing policy; mark messages that fail")
	fs.BoolVar(&o.drop, "drop-invalid", false, "with --validate (implied), leave out messages that fail instead of marking them")
	fs.BoolVar(&o.noValidate, "no-validate", false, "print every message unchecked, even where the config sets validate_signatures")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || o.count < 0 || o.timeout < 0 {
		fmt.Fprintln(stderr, "fedmsg-tail: unexpected arguments, or negative --count/--timeout")
		return 2
	}
	if o.noValidate && (o.validate || o.drop) {
		fmt.Fprintln(stderr, "fedmsg-tail: --no-validate contradicts --validate and --drop-invalid")
		return 2
	}
	if o.version {
		fmt.Fprintln(stdout, "fedmsg-tail", version.Version)
		return 0
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "fedmsg-tail", Level: hclog.Warn, Output: stderr})
	if err := tail(o, stdout, stderr, log); err != nil {
		fmt.Fprintln(stderr, "fedmsg-tail:", err)
		return 1
	}
	return 0
}

func tail(o *options, stdout, stderr io.Writer, log hclog.Logger) error {
	cfg, err := fedmsgconf.LoadFrom(o.configDir, o.configFile, log)
	if err != nil {
		return err
	}
	if !o.validate && !o.drop && !o.noValidate {
		// fedmsg's tail_messages drops what fails validation when the
		// config asks for it; a consumer's view of the bus, not a raw one.
		if o.drop, err = cfg.Bool("validate_signatures", false); err != nil {
			return err
		}
	}
	var verifier *signing.Verifier
	if o.validate || o.drop {
		if verifier, err = loadVerifier(cfg); err != nil {
			return err
		}
	}
	addrs, err := fedmsgconf.Pick(o.relays, "FEDMSG_RELAY_OUTBOUND",
		func() ([]string, error) { return cfg.Endpoint("relay_outbound") }, fedmsgconf.DefaultRelayOutbound)
	if err != nil {
		return err
	}
	ctx, err := zmq.NewContext()
	if err != nil {
		return fmt.Errorf("zmq context: %w", err)
	}
	defer ctx.Term()
	sub, err := ctx.NewSocket(zmq.SUB)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer sub.Close()
	if err := errors.Join(sub.SetLinger(0), sub.SetSubscribe(o.topic)); err != nil {
		return fmt.Errorf("socket options: %w", err)
	}
	for _, addr := range addrs {
		if err := sub.Connect(addr); err != nil {
			return fmt.Errorf("connect %s: %w", addr, err)
		}
	}
	out := bufio.NewWriter(stdout)
	poller := zmq.NewPoller()
	poller.Add(sub, zmq.POLLIN)
	var deadline time.Time
	if o.timeout > 0 {
		deadline = time.Now().Add(o.timeout)
	}
	for seen := 0; o.count == 0 || seen < o.count; {
		wait := time.Duration(-1)
		if !deadline.IsZero() {
			if wait = time.Until(deadline); wait <= 0 {
				return fmt.Errorf("timeout after %s: %d message(s) seen on %s", o.timeout, seen, strings.Join(addrs, ", "))
			}
		}
		polled, err := poller.Poll(wait)
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if len(polled) == 0 {
			continue
		}
		frames, err := sub.RecvMessageBytes(0)
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		topic, body := []byte(nil), frames[len(frames)-1]
		if len(frames) > 1 {
			topic = frames[0]
		}
		var invalid error
		if verifier != nil {
			invalid = verifier.Verify(string(topic), body)
		}
		if invalid != nil && (o.drop || o.jsonOut) {
			what := "message"
			if o.drop {
				what = "message left out"
			}
			fmt.Fprintf(stderr, "fedmsg-tail: !! invalid %s on %s: %s\n", what,
				appendPrintable(nil, topic, false), appendPrintable(nil, []byte(invalid.Error()), false))
		}
		if invalid != nil && o.drop {
			continue
		}
		if err := printMessage(out, topic, body, o.jsonOut, invalid); err != nil {
			return err
		}
		seen++
	}
	return nil
}

// printMessage writes one line: the body alone (--json) or "TOPIC BODY",
// after "!! invalid REASON (DETAIL): " when invalid is not nil. Bodies are
// compacted so that each message stays on one line.
func printMessage(out *bufio.Writer, topic, body []byte, jsonOnly bool, invalid error) error {
	var compact bytes.Buffer
	isJSON := json.Compact(&compact, body) == nil
	if isJSON {
		body = compact.Bytes()
	} else if jsonOnly {
		// Not JSON: quote it so the line is still one JSON value.
		body, _ = json.Marshal(string(body))
		isJSON = true
	}
	line := make([]byte, 0, len(topic)+len(body)+2)
	if invalid != nil && !jsonOnly {
		line = fmt.Appendf(line, "!! invalid %s (", signing.Reason(invalid))
		line = append(appendPrintable(line, []byte(invalid.Error()), false), "): "...)
	}
	if !jsonOnly && topic != nil {
		line = append(appendPrintable(line, topic, false), ' ')
	}
	line = append(appendPrintable(line, body, isJSON), '\n')
	out.Write(line)
	if err := out.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
