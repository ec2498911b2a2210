package wire

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/fedora-infra/fedmsg-relay/internal/pyjson"
)

// scanObject checks that body is one JSON object, as Python's json.loads
// would accept it (NaN, Infinity and -Infinity included, since Python
// producers emit them), and returns the raw contents of its top-level
// "topic" string member, if any. It is an iterative scanner with an explicit
// nesting stack, so hostile input cannot grow the Go stack, and it does not
// allocate.
func scanObject(body []byte) (topic []byte, found bool, r Reason) {
	if !utf8.Valid(body) {
		return nil, false, BodyNotJSON
	}
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		if json.Valid(body) {
			return nil, false, BodyNotObject
		}
		return nil, false, BodyNotJSON
	}
	s := scanner{b: body}
	if !s.run(i) {
		return nil, false, BodyNotJSON
	}
	return s.topic, s.found, OK
}

// stack of container kinds, one bit per level: 1 object, 0 array.
type scanner struct {
	b     []byte
	stack [MaxDepth / 64]uint64
	depth int
	topic []byte
	found bool
}

func (s *scanner) push(isObject bool) bool {
	if s.depth >= MaxDepth {
		return false
	}
	word, bit := s.depth/64, uint(s.depth%64)
	if isObject {
		s.stack[word] |= 1 << bit
	} else {
		s.stack[word] &^= 1 << bit
	}
	s.depth++
	return true
}

func (s *scanner) inObject() bool {
	d := s.depth - 1
	return s.stack[d/64]&(1<<uint(d%64)) != 0
}

// run scans from the opening brace at i to the end of the input.
func (s *scanner) run(i int) bool {
	b := s.b
	s.push(true)
	i++
	// After an opening brace/bracket: a member/element or the closing one.
	i = skipSpace(b, i)
	if i < len(b) && b[i] == '}' {
		s.depth--
		return skipSpace(b, i+1) == len(b)
	}
	for {
		// At the start of a member (in objects) or an element (in arrays).
		var ok bool
		if s.inObject() {
			isTopKey := false
			var keyStart, keyEnd int
			i = skipSpace(b, i)
			if i >= len(b) || b[i] != '"' {
				return false
			}
			keyStart = i + 1
			if i, ok = scanString(b, i); !ok {
				return false
			}
			keyEnd = i - 1
			if s.depth == 1 {
				isTopKey = isTopicKey(b[keyStart:keyEnd])
			}
			i = skipSpace(b, i)
			if i >= len(b) || b[i] != ':' {
				return false
			}
			i = skipSpace(b, i+1)
			if isTopKey {
				// Duplicate keys: the last one wins, as in Python's dict.
				s.topic, s.found = nil, false
				if i < len(b) && b[i] == '"' {
					start := i + 1
					if i, ok = scanString(b, i); !ok {
						return false
					}
					s.topic, s.found = b[start:i-1], true
					goto afterValue
				}
			}
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
		}
		switch c := b[i]; c {
		case '{', '[':
			if !s.push(c == '{') {
				return false
			}
			i = skipSpace(b, i+1)
			if i < len(b) && (b[i] == '}' || b[i] == ']') {
				if (b[i] == '}') != s.inObject() {
					return false
				}
				s.depth--
				i++
				goto afterValue
			}
			continue
		case '"':
			if i, ok = scanString(b, i); !ok {
				return false
			}
		default:
			if i, ok = scanLiteral(b, i); !ok {
				return false
			}
		}
	afterValue:
		// After a value: a comma, or the closing of one or more containers.
		for {
			i = skipSpace(b, i)
			if i >= len(b) {
				return false
			}
			switch b[i] {
			case ',':
				i++
			case '}', ']':
				if (b[i] == '}') != s.inObject() {
					return false
				}
				s.depth--
				i++
				if s.depth == 0 {
					return skipSpace(b, i) == len(b)
				}
				continue
			default:
				return false
			}
			break
		}
	}
}

// isTopicKey reports whether a raw key (without quotes) spells "topic".
func isTopicKey(raw []byte) bool {
	if string(raw) == "topic" {
		return true
	}
	if len(raw) == len("topic") || len(raw) > 40 {
		return false
	}
	// A key written with escapes, such as "\u0074opic".
	for _, c := range raw {
		if c == '\\' {
			return bodyTopicEquals(raw, []byte("topic"))
		}
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// stringSafe marks bytes that need no attention inside a JSON string.
var stringSafe = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString scans the string whose opening quote is at i and returns the
// index just past its closing quote. UTF-8 was checked for the whole body.
func scanString(b []byte, i int) (int, bool) {
	i++
	for i < len(b) {
		c := b[i]
		if stringSafe[c] {
			i++
			continue
		}
		switch c {
		case '"':
			return i + 1, true
		case '\\':
			if i+1 >= len(b) {
				return i, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return i, false
				}
				i += 6
			default:
				return i, false
			}
		default: // control character
			return i, false
		}
	}
	return i, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// scanLiteral scans a number, true, false, null, or Python's NaN, Infinity
// and -Infinity, starting at i.
func scanLiteral(b []byte, i int) (int, bool) {
	for _, word := range [...]string{"true", "false", "null", "NaN", "Infinity", "-Infinity"} {
		if len(b)-i >= len(word) && string(b[i:i+len(word)]) == word {
			return i + len(word), true
		}
	}
	return scanNumber(b, i)
}

// scanNumber follows RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// An integer may have at most pyjson.MaxIntDigits digits: Python's json.loads
// refuses longer ones, so consumers could not read the message.
func scanNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	intStart, isFloat := i, false
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return i, false
	}
	intDigits := i - intStart
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return i, false
		}
		i, isFloat = j, true
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		isFloat = true
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return i, false
		}
		i = j
	}
	return i, isFloat || intDigits <= pyjson.MaxIntDigits
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}
