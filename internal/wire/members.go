package wire

import (
	"bytes"
	"encoding/json"
)

// Members calls fn with the key and raw value of each top-level member of the
// JSON object body, in order, until fn returns false. It is for bodies that
// passed Validate: it walks them without decoding, so the AMQP bridge can pick
// the few members it needs from every relayed message cheaply. It reports
// false if body is not a well-formed object. Keys written with escapes are
// decoded; values are raw JSON.
func Members(body []byte, fn func(key string, value []byte) bool) bool {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return skipSpace(body, i+1) == len(body)
	}
	for {
		if i >= len(body) || body[i] != '"' {
			return false
		}
		end, ok := scanString(body, i)
		if !ok {
			return false
		}
		key, ok := StringValue(body[i:end])
		if !ok {
			return false
		}
		i = skipSpace(body, end)
		if i >= len(body) || body[i] != ':' {
			return false
		}
		start := skipSpace(body, i+1)
		if i, ok = skipValue(body, start); !ok {
			return false
		}
		if !fn(key, body[start:i]) {
			return true
		}
		i = skipSpace(body, i)
		if i >= len(body) {
			return false
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case '}':
			return skipSpace(body, i+1) == len(body)
		default:
			return false
		}
	}
}

// StringValue decodes a raw JSON string value, quotes included. Strings
// without escapes, nearly all of them, cost no decoding.
func StringValue(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// skipValue returns the index just past the value starting at i. Containers
// are skipped by counting brackets outside strings: the body is valid JSON.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		return scanString(b, i)
	case '{', '[':
	default:
		return scanLiteral(b, i)
	}
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			var ok bool
			if i, ok = scanString(b, i); !ok {
				return i, false
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1, true
			}
		}
		i++
	}
	return i, false
}
