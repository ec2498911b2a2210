// Command fedmsg-logger publishes messages to the fedmsg bus through a relay,
// with fedmsg-logger's command line. Unlike the original it does not sleep
// and hope: it sends once the relay is listening, never hangs when the relay
// is down, and with --confirm exits 0 only when the relay acknowledged
// every message.
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
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/client"
	"github.com/fedora-infra/fedmsg-relay/internal/envelope"
	"github.com/fedora-infra/fedmsg-relay/internal/fedmsgconf"
	"github.com/fedora-infra/fedmsg-relay/internal/version"
)

const usage = `Usage: fedmsg-logger [flags]

Emit log messages to the fedmsg bus through fedmsg-relay.

Without --message, every line of standard input is one message {"log": LINE}
(surrounding whitespace stripped, as fedmsg-logger did). With --json-input,
standard input is JSON: one document is one message (one per line works too).

  echo "Hai there." | fedmsg-logger --modname=git --topic=repo.update
  echo '{"a": 1}' | fedmsg-logger --json-input
  fedmsg-logger --message='{"a": 1}' --json-input --confirm

Addresses come from the flags, else FEDMSG_RELAY_INBOUND (or
FEDMSG_RELAY_INBOUND_CONFIRM), else relay_inbound (relay_inbound_confirm) in
the fedmsg config: the *.py files of FEDMSG_CONFIG, else /etc/fedmsg.d.

With sign_messages in the config every message is signed as fedmsg signs
it: with <ssldir>/<certname>.key and .crt, where certname is
certnames["<cert prefix>.<short hostname>"]. If that key cannot be loaded,
nothing is sent.

Exit status: 0 sent (confirmed with --confirm), 1 failed, 2 usage error.

Flags:
`

// listFlag collects a repeatable flag; values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// durationFlag accepts a Go duration ("5s", "250ms") or seconds as fedmsg's
// --timeout did ("2", "0.5").
type durationFlag time.Duration

func (d *durationFlag) String() string { return time.Duration(*d).String() }
func (d *durationFlag) Set(v string) error {
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		*d = durationFlag(secs * float64(time.Second))
		return nil
	}
	parsed, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("want a duration such as 5s or a number of seconds")
	}
	*d = durationFlag(parsed)
	return nil
}

type options struct {
	message, topic, modname, certPrefix, topicPrefix string
	configDir, configFile                            string
	jsonInput, confirm, verbose, version             bool
	relays, confirmRelays                            listFlag
	timeout                                          durationFlag
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{timeout: durationFlag(5 * time.Second)}
	fs := flag.NewFlagSet("fedmsg-logger", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	fs.StringVar(&o.message, "message", "", "the message to send (instead of standard input)")
	fs.BoolVar(&o.jsonInput, "json-input", false, "the input is JSON, not log lines")
	fs.StringVar(&o.topic, "topic", "log", "topic: think org.fedoraproject.ENV.MODNAME.TOPIC")
	fs.StringVar(&o.modname, "modname", "logger", "module name: think org.fedoraproject.ENV.MODNAME.TOPIC")
	fs.StringVar(&o.certPrefix, "cert-prefix", "", "with sign_messages, sign with the key of certnames[\"PREFIX.<short hostname>\"] (default: cert_prefix from the config, else shell)")
	fs.StringVar(&o.topicPrefix, "topic-prefix", "", "topic prefix (default: topic_prefix from the config, else org.fedoraproject)")
	fs.Var(&o.relays, "relay", "relay_inbound address (repeatable or comma-separated)")
	fs.Var(&o.confirmRelays, "relay-confirm", "relay_inbound_confirm address for --confirm (repeatable or comma-separated)")
	fs.BoolVar(&o.confirm, "confirm", false, "use the relay's confirmed inbound endpoint; exit 0 only if it acknowledged every message")
	fs.Var(&o.timeout, "timeout", "give up when no relay answers (or confirms) within this time")
	fs.StringVar(&o.configDir, "config-dir", "", "directory of fedmsg *.py config files (default: FEDMSG_CONFIG, else /etc/fedmsg.d)")
	fs.StringVar(&o.configFile, "config-filename", "", "a single fedmsg config file to read instead")
	fs.BoolVar(&o.verbose, "verbose", false, "log debug details to standard error")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.timeout <= 0 {
		return nil, errors.New("--timeout must be positive")
	}
	return o, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "fedmsg-logger:", err)
		return 2
	}
	if o.version {
		fmt.Fprintln(stdout, "fedmsg-logger", version.Version)
		return 0
	}
	level := hclog.Warn
	if o.verbose {
		level = hclog.Debug
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "fedmsg-logger", Level: level, Output: stderr})
	if err := emit(o, stdin, log); err != nil {
		fmt.Fprintln(stderr, "fedmsg-logger:", err)
		return 1
	}
	return 0
}

// emit reads the messages and sends them; the relay is dialled at the first
// message, so empty input needs no relay.
func emit(o *options, stdin io.Reader, log hclog.Logger) error {
	cfg, err := fedmsgconf.LoadFrom(o.configDir, o.configFile, log)
	if err != nil {
		return err
	}
	b := &envelope.Builder{Username: envelope.Username()}
	if b.TopicPrefix, err = cfg.String("topic_prefix", fedmsgconf.DefaultTopicPrefix); err != nil {
		return err
	}
	if o.topicPrefix != "" {
		b.TopicPrefix = o.topicPrefix
	}
	if b.Environment, err = cfg.String("environment", fedmsgconf.DefaultEnvironment); err != nil {
		return err
	}
	var addrs []string
	if o.confirm {
		addrs, err = fedmsgconf.Pick(o.confirmRelays, "FEDMSG_RELAY_INBOUND_CONFIRM",
			func() ([]string, error) { return cfg.Addresses("relay_inbound_confirm") })
		if err == nil && len(addrs) == 0 {
			err = errors.New("--confirm needs a relay_inbound_confirm address (config, FEDMSG_RELAY_INBOUND_CONFIRM or --relay-confirm)")
		}
	} else {
		addrs, err = fedmsgconf.Pick(o.relays, "FEDMSG_RELAY_INBOUND",
			func() ([]string, error) { return cfg.Addresses("relay_inbound") }, fedmsgconf.DefaultRelayInbound)
	}
	if err != nil {
		return err
	}

	signer, err := loadSigner(cfg, o.certPrefix)
	if err != nil {
		return err
	}
	if signer != nil {
		log.Debug("signing", "certificate", signer.Subject())
	}

	next := messages(o, stdin)
	topic := b.Topic(o.modname, o.topic)
	timeout := time.Duration(o.timeout)
	var conn *client.Conn
	refused := 0
	for {
		msg, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return closeWith(conn, err)
		}
		if conn == nil {
			if o.confirm {
				conn, err = client.DialConfirmer(addrs, timeout, log)
			} else {
				conn, err = client.DialPublisher(addrs, topic, timeout, log)
			}
			if err != nil {
				return err
			}
		}
		full, body, err := b.Build(o.modname, o.topic, msg)
		if err == nil && signer != nil {
			body, err = signer.Sign(body)
		}
		if err != nil {
			return closeWith(conn, err)
		}
		var refusal *client.RefusedError
		switch err := conn.Send(full, body); {
		case errors.As(err, &refusal):
			refused++
			log.Error("message refused", "reason", refusal.Reason, "topic", full)
		case err != nil:
			return closeWith(conn, err)
		}
	}
	if err := closeWith(conn, nil); err != nil {
		return err
	}
	if refused > 0 {
		return fmt.Errorf("the relay refused %d message(s)", refused)
	}
	return nil
}

func closeWith(conn *client.Conn, err error) error {
	if conn == nil {
		return err
	}
	return errors.Join(err, conn.Close())
}

// messages returns an iterator over the JSON payloads to send, ending with
// io.EOF.
func messages(o *options, stdin io.Reader) func() (json.RawMessage, error) {
	if o.message != "" {
		sent := false
		return func() (json.RawMessage, error) {
			if sent {
				return nil, io.EOF
			}
			sent = true
			if o.jsonInput {
				return jsonDocument(o.message)
			}
			return logPayload(o.message)
		}
	}
	if o.jsonInput {
		dec := json.NewDecoder(stdin)
		return func() (json.RawMessage, error) {
			var doc json.RawMessage
			if err := dec.Decode(&doc); err != nil {
				if err == io.EOF {
					return nil, err
				}
				return nil, fmt.Errorf("--json-input: invalid JSON on standard input: %w", err)
			}
			return doc, nil
		}
	}
	r := bufio.NewReader(stdin)
	return func() (json.RawMessage, error) {
		line, err := r.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return nil, err
		}
		return logPayload(line)
	}
}

func jsonDocument(s string) (json.RawMessage, error) {
	if !json.Valid([]byte(s)) {
		return nil, errors.New("--json-input: --message is not valid JSON")
	}
	return json.RawMessage(s), nil
}

// logPayload is fedmsg-logger's {"log": line.strip()}.
func logPayload(line string) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]string{"log": strings.TrimSpace(line)}); err != nil {
		return nil, fmt.Errorf("encode log line: %w", err)
	}
	return buf.Bytes(), nil
}
