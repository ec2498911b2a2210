package amqpbridge

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/fedora-infra/fedmsg-relay/internal/wire"
)

// The fedora-messaging wire format (fedora_messaging/message.py, base Message):
// JSON body, these properties and headers. Severity 20 is fedora-messaging's INFO.
const (
	BridgeUsername  = "amqp-bridge" // username of envelopes injected from AMQP; never bridged back
	schemaHeader    = "fedora_messaging_schema"
	severityHeader  = "fedora_messaging_severity"
	sentAtHeader    = "sent-at"
	priorityHeader  = "priority"
	baseSchema      = "base.message"
	severityInfo    = int32(20)
	contentType     = "application/json"
	contentEncoding = "utf-8"
	// sentAtLayout is Python's datetime.isoformat() of an aware UTC datetime
	// without microseconds, as fedora-messaging writes it.
	sentAtLayout = "2006-01-02T15:04:05+00:00"
	// maxShortString is AMQP's limit for routing keys, message ids and
	// header names.
	maxShortString = 255
	// maxEnvelopeHeaderBytes bounds an envelope's "headers" JSON: encoded
	// for AMQP it grows (at worst about 4.5x, a list of one-digit numbers)
	// and must still fit one frame (RabbitMQ's frame_max is 128 KiB).
	maxEnvelopeHeaderBytes = 16 << 10
)

var (
	// errInvalid marks a message that can never be published (and so is dropped).
	errInvalid = errors.New("invalid message")
	// errLoop marks a message an AMQP bridge injected into the bus: bridging
	// it back would loop.
	errLoop = errors.New("message injected by an AMQP bridge")
)

// envelopeFields are the members of a fedmsg body the bridge reads.
type envelopeFields struct {
	msg      []byte // raw JSON
	headers  []byte // raw JSON, nil when absent
	msgID    string
	username string
}

// readEnvelope picks the members the bridge needs from a fedmsg body without
// decoding the rest: it runs for every relayed message.
func readEnvelope(body []byte) (envelopeFields, error) {
	var env envelopeFields
	bad := ""
	ok := wire.Members(body, func(key string, value []byte) bool {
		var isString bool
		switch key {
		case "msg":
			env.msg = value
		case "headers":
			env.headers = value
			return true
		case "msg_id":
			env.msgID, isString = wire.StringValue(value)
		case "username":
			env.username, isString = wire.StringValue(value)
		default:
			return true
		}
		if key != "msg" && !isString && string(value) != "null" {
			bad = key
		}
		return true
	})
	switch {
	case !ok:
		return env, fmt.Errorf("%w: body is not a JSON object", errInvalid)
	case bad != "":
		return env, fmt.Errorf("%w: %q is not a string", errInvalid, bad)
	}
	return env, nil
}

// headerCache holds the fedora-messaging headers of the current second:
// they differ only in sent-at, so messages received in one second share one
// table instead of building and formatting it per message. Sharing is safe on
// one goroutine: the AMQP library encodes the table during Publish.
type headerCache struct {
	second int64
	table  amqp.Table
}

func (c *headerCache) headers(received time.Time) amqp.Table {
	if second := received.Unix(); c.table == nil || second != c.second {
		c.second = second
		c.table = amqp.Table{
			schemaHeader:   baseSchema,
			severityHeader: severityInfo,
			sentAtHeader:   received.UTC().Format(sentAtLayout),
			priorityHeader: int32(0),
		}
	}
	return c.table
}

// toPublishing converts a fedmsg message to its fedora-messaging form, with
// headers from hc. It returns errLoop for messages injected by an AMQP bridge
// and errInvalid for those fedora-messaging cannot carry.
func toPublishing(topic, body []byte, received time.Time, hc *headerCache) (amqp.Publishing, error) {
	if len(topic) == 0 || len(topic) > maxShortString || !utf8.Valid(topic) {
		return amqp.Publishing{}, fmt.Errorf("%w: topic must be 1..%d bytes of UTF-8", errInvalid, maxShortString)
	}
	env, err := readEnvelope(body)
	if err != nil {
		return amqp.Publishing{}, err
	}
	if env.username == BridgeUsername {
		return amqp.Publishing{}, errLoop
	}
	msg := env.msg
	if len(msg) == 0 || msg[0] != '{' {
		// fedora-messaging's base schema requires the body to be a JSON object.
		return amqp.Publishing{}, fmt.Errorf("%w: \"msg\" is not a JSON object", errInvalid)
	}
	msgID := env.msgID
	if msgID == "" {
		msgID = newMsgID(received)
	}
	if len(msgID) > maxShortString {
		return amqp.Publishing{}, fmt.Errorf("%w: msg_id longer than %d bytes", errInvalid, maxShortString)
	}
	headers := hc.headers(received)
	if extra, err := envelopeHeaders(env.headers); err != nil {
		return amqp.Publishing{}, err
	} else if len(extra) > 0 {
		// fedora-messaging sets its own headers over those it is given.
		maps.Copy(extra, headers)
		headers = extra
	}
	return amqp.Publishing{
		Headers:         headers,
		ContentType:     contentType,
		ContentEncoding: contentEncoding,
		DeliveryMode:    amqp.Persistent,
		MessageId:       msgID,
		Body:            msg,
	}, nil
}

// envelopeHeaders decodes a fedmsg envelope's "headers" object into an AMQP
// table, as Fedora's ZeroMQ to AMQP bridge carried it (fedmsg-migration-tools
// passed it to fedora-messaging's Message(headers=...)). Absent or null
// gives nil. Values keep their JSON types: integers become int64, other
// numbers decimals (float64 when no decimal holds them), objects tables.
func envelopeHeaders(raw []byte) (amqp.Table, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if len(raw) > maxEnvelopeHeaderBytes {
		return nil, fmt.Errorf("%w: \"headers\" longer than %d bytes", errInvalid, maxEnvelopeHeaderBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: \"headers\" is not a JSON object", errInvalid)
	}
	v, err := tableValue(obj)
	if err != nil {
		return nil, err
	}
	return v.(amqp.Table), nil
}

// tableValue converts a decoded JSON value to its AMQP field value. A name
// AMQP cannot carry makes the whole message invalid: were it published, the
// library would fail the write and the bridge would resend it forever.
func tableValue(v any) (any, error) {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		if d, ok := decimalValue(string(v)); ok {
			return d, nil
		}
		f, err := v.Float64()
		if err != nil {
			return nil, fmt.Errorf("%w: header number %s out of range", errInvalid, v)
		}
		return f, nil
	case map[string]any:
		t := make(amqp.Table, len(v))
		for k, x := range v {
			if len(k) > maxShortString {
				return nil, fmt.Errorf("%w: header name longer than %d bytes", errInvalid, maxShortString)
			}
			var err error
			if t[k], err = tableValue(x); err != nil {
				return nil, err
			}
		}
		return t, nil
	case []any:
		for i, x := range v {
			var err error
			if v[i], err = tableValue(x); err != nil {
				return nil, err
			}
		}
		return v, nil
	}
	return v, nil // string, bool or nil
}

// decimalValue returns a JSON number with a fraction or an exponent as an
// AMQP decimal, when it fits one exactly. Python's AMQP client (pika, under
// fedora-messaging) reads decimals exactly but truncates doubles to integers.
func decimalValue(num string) (amqp.Decimal, bool) {
	mant, exp := num, 0
	if i := strings.IndexAny(num, "eE"); i >= 0 {
		e, err := strconv.Atoi(num[i+1:])
		if err != nil {
			return amqp.Decimal{}, false
		}
		mant, exp = num[:i], e
	}
	whole, frac, _ := strings.Cut(mant, ".")
	digits, scale := whole+frac, len(frac)-exp
	for scale > 0 && strings.HasSuffix(digits, "0") {
		digits, scale = digits[:len(digits)-1], scale-1
	}
	if scale < 0 {
		if -scale > 10 {
			return amqp.Decimal{}, false
		}
		digits, scale = digits+strings.Repeat("0", -scale), 0
	}
	v, err := strconv.ParseInt(digits, 10, 32)
	if err != nil || scale > 255 {
		return amqp.Decimal{}, false
	}
	return amqp.Decimal{Scale: uint8(scale), Value: int32(v)}, true
}

// injectedEnvelope is the fedmsg body built for a message consumed from AMQP.
type injectedEnvelope struct {
	Topic     string          `json:"topic"`
	Msg       json.RawMessage `json:"msg"`
	MsgID     string          `json:"msg_id"`
	I         uint64          `json:"i"`
	Timestamp int64           `json:"timestamp"`
	Username  string          `json:"username"`
}

// toEnvelope converts a delivery to a fedmsg message [topic, body]; i is the
// envelope's counter, now the time used when the delivery carries none.
func toEnvelope(d amqp.Delivery, i uint64, now time.Time) (topic, body []byte, err error) {
	if d.RoutingKey == "" || !utf8.ValidString(d.RoutingKey) {
		return nil, nil, fmt.Errorf("%w: routing key %q", errInvalid, d.RoutingKey)
	}
	if !json.Valid(d.Body) {
		return nil, nil, fmt.Errorf("%w: body is not JSON", errInvalid)
	}
	sent := now
	if s, ok := d.Headers[sentAtHeader].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			sent = t
		}
	} else if !d.Timestamp.IsZero() {
		sent = d.Timestamp
	}
	msgID := d.MessageId
	switch {
	case msgID == "":
		msgID = newMsgID(sent)
	case !hasYearPrefix(msgID):
		msgID = strconv.Itoa(sent.UTC().Year()) + "-" + msgID
	}
	body, err = json.Marshal(injectedEnvelope{
		Topic:     d.RoutingKey,
		Msg:       d.Body,
		MsgID:     msgID,
		I:         i,
		Timestamp: sent.Unix(),
		Username:  BridgeUsername,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("encode envelope: %w", err)
	}
	return []byte(d.RoutingKey), body, nil
}

// hasYearPrefix reports whether id starts like fedmsg's "<year>-<uuid4>".
func hasYearPrefix(id string) bool {
	if len(id) < 5 || id[4] != '-' {
		return false
	}
	for _, c := range id[:4] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// newMsgID returns a fedmsg message id, "<year>-<uuid4>".
func newMsgID(t time.Time) string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails on Linux
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%d-%x-%x-%x-%x-%x", t.UTC().Year(), u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
