// Package envelope builds fedmsg message envelopes: the topic frame and the
// JSON body fedmsg.core.publish produces.
package envelope

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"
)

// Body is the envelope, with fields in fedmsg's order. Msg is kept as raw
// JSON so numbers and strings pass through exactly as the producer wrote them.
type Body struct {
	Topic     string          `json:"topic"`
	Msg       json.RawMessage `json:"msg"`
	Timestamp int64           `json:"timestamp"`
	MsgID     string          `json:"msg_id"`
	I         int             `json:"i"`
	Username  string          `json:"username"`
}

// Builder numbers the messages of one process, like fedmsg's context.
type Builder struct {
	TopicPrefix string
	Environment string
	Username    string
	Now         func() time.Time // time.Now when nil
	Rand        io.Reader        // crypto/rand when nil

	sent int
}

// Topic is fedmsg's topic rule: modname.topic, prefixed with
// "<topic_prefix>.<environment>." unless it already starts with the prefix.
func (b *Builder) Topic(modname, topic string) string {
	if topic == "" {
		topic = "unspecified"
	}
	full := modname + "." + topic
	if !strings.HasPrefix(full, b.TopicPrefix) {
		full = b.TopicPrefix + "." + b.Environment + "." + full
	}
	return full
}

// Build returns the topic frame and the JSON body for msg, a JSON document.
func (b *Builder) Build(modname, topic string, msg json.RawMessage) (string, []byte, error) {
	if !json.Valid(msg) {
		return "", nil, fmt.Errorf("message is not valid JSON")
	}
	now := time.Now
	if b.Now != nil {
		now = b.Now
	}
	rnd := b.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	id, err := uuid4(rnd)
	if err != nil {
		return "", nil, err
	}
	t := now()
	b.sent++
	full := b.Topic(modname, topic)
	var compact bytes.Buffer
	// Python consumers decode the body as UTF-8: replace invalid bytes (they
	// can only sit inside JSON strings) as Go's and Python's decoders would.
	if err := json.Compact(&compact, bytes.ToValidUTF8(msg, []byte("\uFFFD"))); err != nil {
		return "", nil, fmt.Errorf("compact message: %w", err)
	}
	body := Body{
		Topic:     full,
		Msg:       compact.Bytes(),
		Timestamp: t.Unix(),
		MsgID:     fmt.Sprintf("%d-%s", t.Year(), id),
		I:         b.sent,
		Username:  b.Username,
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(body); err != nil {
		return "", nil, fmt.Errorf("encode envelope: %w", err)
	}
	return full, bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// uuid4 is a random (version 4, RFC 4122 variant) UUID in canonical form.
func uuid4(r io.Reader) (string, error) {
	var u [16]byte
	if _, err := io.ReadFull(r, u[:]); err != nil {
		return "", fmt.Errorf("read random bytes for msg_id: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}

// Username is Python's getpass.getuser(), which fedmsg puts in every
// envelope: the first of LOGNAME, USER, LNAME, USERNAME that is set, else
// the name of the process's user id.
func Username() string {
	for _, v := range []string{"LOGNAME", "USER", "LNAME", "USERNAME"} {
		if name := os.Getenv(v); name != "" {
			return name
		}
	}
	if u, err := user.LookupId(fmt.Sprint(os.Getuid())); err == nil {
		return u.Username
	}
	return fmt.Sprint(os.Getuid())
}
