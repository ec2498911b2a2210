// Package wire checks fedmsg messages as they arrive: two ZeroMQ frames,
// [topic, JSON body]. It decides forward or drop without decoding the body
// into Go values: one pass of a JSON syntax scanner that also notes the
// top-level "topic" member, so the relay can forward the original bytes.
package wire

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/fedora-infra/fedmsg-relay/internal/pyjson"
)

// Reason says why a message is dropped. The zero value means "forward".
type Reason uint8

// Drop reasons. Their String values are metric labels and confirm replies:
// keep them stable.
const (
	OK Reason = iota
	Frames
	EmptyTopic
	TopicNotUTF8
	BodyNotJSON
	BodyNotObject
	TopicMismatch
	TopicNotAllowed
	Oversize
	Signature
	SignFailed
	// NumReasons counts the reasons, OK included.
	NumReasons
)

var reasonNames = [NumReasons]string{
	OK:              "ok",
	Frames:          "frames",
	EmptyTopic:      "empty_topic",
	TopicNotUTF8:    "topic_not_utf8",
	BodyNotJSON:     "body_not_json",
	BodyNotObject:   "body_not_object",
	TopicMismatch:   "topic_mismatch",
	TopicNotAllowed: "topic_not_allowed",
	Oversize:        "oversize",
	Signature:       "signature",
	SignFailed:      "sign_failed",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons lists every drop reason (not OK), for registering metrics up front.
func Reasons() []Reason {
	rs := make([]Reason, 0, NumReasons-1)
	for r := Frames; r < NumReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

// MaxDepth bounds JSON nesting: pyjson's limit, so that whatever passes
// Validate can be verified and signed. Python's json module recurses once
// per level and fails near 1000 levels; anything deeper would crash
// consumers, not us.
const MaxDepth = pyjson.MaxDepth

// Policy is what Validate enforces beyond well-formedness.
type Policy struct {
	// MaxBytes bounds the sum of all frames (libzmq bounds each frame).
	MaxBytes int
	// AllowedPrefixes, when not empty, lists the dotted topic prefixes accepted.
	AllowedPrefixes [][]byte
	// PassTopicMismatch forwards bodies whose "topic" differs from frame 1.
	PassTopicMismatch bool
}

// Validate decides whether a message of the given frame count, total size,
// topic frame and body frame may be forwarded. It does not allocate.
func (p *Policy) Validate(frames, size int, topic, body []byte) Reason {
	if frames != 2 {
		return Frames
	}
	if p.MaxBytes > 0 && size > p.MaxBytes {
		return Oversize
	}
	if len(topic) == 0 {
		return EmptyTopic
	}
	if !utf8.Valid(topic) {
		return TopicNotUTF8
	}
	if len(p.AllowedPrefixes) > 0 && !p.topicAllowed(topic) {
		return TopicNotAllowed
	}
	bodyTopic, found, r := scanObject(body)
	if r != OK {
		return r
	}
	if !p.PassTopicMismatch && (!found || !bodyTopicEquals(bodyTopic, topic)) {
		return TopicMismatch
	}
	return OK
}

func (p *Policy) topicAllowed(topic []byte) bool {
	for _, prefix := range p.AllowedPrefixes {
		// A prefix matches whole dotted words: org.fedoraproject matches
		// org.fedoraproject.prod.x but not org.fedoraprojectx.
		if bytes.HasPrefix(topic, prefix) && (len(topic) == len(prefix) || topic[len(prefix)] == '.') {
			return true
		}
	}
	return false
}

// bodyTopicEquals compares the raw JSON string contents of the body's topic
// (without quotes, possibly with escapes) with the topic frame.
func bodyTopicEquals(raw, topic []byte) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return bytes.Equal(raw, topic)
	}
	// Escaped topics are rare: decode them the slow way.
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	var s string
	if json.Unmarshal(quoted, &s) != nil {
		return false
	}
	return s == string(topic)
}
