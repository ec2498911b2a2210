// Package pyjson reads and writes JSON exactly as Python's json module does,
// for fedmsg's signatures: what fedmsg signs and validators recompute is
// json.dumps(json.loads(body), sort_keys=True, separators=(',', ':')) with
// ensure_ascii. Canonical reproduces it byte for byte without a Python data
// model: integer literals keep their digits, float literals are printed by
// Python's repr rules, strings keep lone surrogates (valid \u escapes in JSON)
// as Python does, and keys sort by code point. MaxDepth is also the limit of
// the relay's inbound scanner (package wire), so a message that passes the
// relay's checks can always be verified and signed.
package pyjson

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

const (
	// MaxDepth bounds nesting (arrays and objects, the outermost counted):
	// CPython's decoder raises RecursionError a little under 1000 levels, so
	// anything much deeper could not be validated anyway.
	MaxDepth = 512
	// MaxIntDigits is CPython's default int_max_str_digits (3.11+): json.loads
	// raises ValueError for longer integer literals.
	MaxIntDigits = 4300
)

// Sentinel errors returned (wrapped with detail) by Parse and Canonical.
var (
	// ErrInvalidJSON: the body is not a JSON document (syntax, invalid UTF-8, BOM).
	ErrInvalidJSON = errors.New("invalid JSON")
	// ErrNotReproducible: Python would read the body but not write it back as
	// valid JSON, or would refuse it (NaN/Infinity, float overflow, integers over
	// MaxIntDigits, nesting deeper than MaxDepth).
	ErrNotReproducible = errors.New("body cannot be reproduced by Python's json.dumps")
	// ErrNotObject: the body is valid JSON but not an object (for callers that
	// need one).
	ErrNotObject = errors.New("body is not a JSON object")
)

// Canonical returns Python's json.dumps(obj, sort_keys=True,
// separators=(',', ':')) (ensure_ascii=True) of the JSON document in body, or
// an error wrapping ErrInvalidJSON or ErrNotReproducible when Python would
// reject the body or write something other than valid JSON (NaN, Infinity).
func Canonical(body []byte) ([]byte, error) {
	v, err := Parse(body)
	if err != nil {
		return nil, err
	}
	return v.AppendTo(make([]byte, 0, len(body))), nil
}

// Kind is the type of a JSON value.
type Kind uint8

const (
	KindNull Kind = iota
	KindTrue
	KindFalse
	KindNumber
	KindString
	KindArray
	KindObject
	// KindNonFinite is NaN, Infinity, -Infinity or a float literal out of
	// range: Python reads it but would write it back as non-JSON. It is only an
	// error if it survives into the document (a duplicate key may drop it).
	KindNonFinite
)

// Value is a decoded JSON value. For numbers, Text is the Python rendering; for
// strings it is the decoded text in WTF-8 (UTF-8 that also encodes lone
// surrogates), whose byte order is code point order, as Python sorts keys.
type Value struct {
	Kind    Kind
	Text    string
	elems   []Value  // KindArray
	members []member // KindObject: sorted by key, keys unique
}

type member struct {
	key string
	val Value
}

// Get returns the member named key of an object.
func (v *Value) Get(key string) (*Value, bool) {
	i, ok := slices.BinarySearchFunc(v.members, key, compareKey)
	if !ok {
		return nil, false
	}
	return &v.members[i].val, true
}

// Set adds or replaces the member named key of an object, keeping the order.
func (v *Value) Set(key string, val Value) {
	i, ok := slices.BinarySearchFunc(v.members, key, compareKey)
	if ok {
		v.members[i].val = val
		return
	}
	v.members = slices.Insert(v.members, i, member{key: key, val: val})
}

// Without returns a copy of object v without the named members.
func (v *Value) Without(keys ...string) Value {
	out := *v
	out.members = slices.DeleteFunc(slices.Clone(v.members), func(m member) bool {
		return slices.Contains(keys, m.key)
	})
	return out
}

func compareKey(m member, key string) int { return strings.Compare(m.key, key) }

// StringValue is the JSON string s.
func StringValue(s string) Value { return Value{Kind: KindString, Text: s} }

// Parse decodes body as Python's json.loads would, or returns an error
// wrapping ErrInvalidJSON or ErrNotReproducible.
func Parse(body []byte) (Value, error) {
	p := parser{data: body}
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return Value{}, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return Value{}, p.errorf("extra data after the document")
	}
	if p.nonFinite {
		if lit, found := v.findNonFinite(); found {
			return Value{}, fmt.Errorf("%w: %.40q is not finite", ErrNotReproducible, lit)
		}
	}
	return v, nil
}

// findNonFinite returns the first non-finite number left in v.
func (v *Value) findNonFinite() (string, bool) {
	switch v.Kind {
	case KindNonFinite:
		return v.Text, true
	case KindArray:
		for i := range v.elems {
			if lit, found := v.elems[i].findNonFinite(); found {
				return lit, true
			}
		}
	case KindObject:
		for i := range v.members {
			if lit, found := v.members[i].val.findNonFinite(); found {
				return lit, true
			}
		}
	}
	return "", false
}

type parser struct {
	data      []byte
	pos       int
	buf       []byte // scratch space for strings with escapes
	nonFinite bool   // a kindNonFinite value was read
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: offset %d: %s", ErrInvalidJSON, p.pos, fmt.Sprintf(format, args...))
}

func (p *parser) unreproducible(format string, args ...any) error {
	return fmt.Errorf("%w: offset %d: %s", ErrNotReproducible, p.pos, fmt.Sprintf(format, args...))
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) literal(word string) bool {
	if bytes.HasPrefix(p.data[p.pos:], []byte(word)) {
		p.pos += len(word)
		return true
	}
	return false
}

func (p *parser) value(depth int) (Value, error) {
	if p.pos >= len(p.data) {
		return Value{}, p.errorf("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		s, err := p.string()
		return StringValue(s), err
	case c == '-' || c >= '0' && c <= '9':
		if p.literal("-Infinity") {
			return p.nonFiniteValue("-Infinity"), nil
		}
		return p.number()
	case p.literal("null"):
		return Value{Kind: KindNull}, nil
	case p.literal("true"):
		return Value{Kind: KindTrue}, nil
	case p.literal("false"):
		return Value{Kind: KindFalse}, nil
	case p.literal("NaN"):
		return p.nonFiniteValue("NaN"), nil
	case p.literal("Infinity"):
		return p.nonFiniteValue("Infinity"), nil
	}
	return Value{}, p.errorf("unexpected character %q", p.data[p.pos])
}

func (p *parser) object(depth int) (Value, error) {
	if depth > MaxDepth {
		return Value{}, p.unreproducible("nesting deeper than %d", MaxDepth)
	}
	p.pos++ // '{'
	v := Value{Kind: KindObject}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return v, nil
	}
	for {
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return Value{}, p.errorf("expecting a property name")
		}
		key, err := p.string()
		if err != nil {
			return Value{}, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return Value{}, p.errorf("expecting ':'")
		}
		p.pos++
		p.skipSpace()
		val, err := p.value(depth)
		if err != nil {
			return Value{}, err
		}
		v.members = append(v.members, member{key: key, val: val})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return Value{}, p.errorf("unterminated object")
		}
		c := p.data[p.pos]
		p.pos++
		if c == '}' {
			break
		}
		if c != ',' {
			p.pos--
			return Value{}, p.errorf("expecting ',' or '}'")
		}
		p.skipSpace()
	}
	v.members = sortMembers(v.members)
	return v, nil
}

// sortMembers sorts by key and keeps only the last of duplicate keys, as a
// Python dict built from the pairs in order does.
func sortMembers(members []member) []member {
	slices.SortStableFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
	out := members[:0]
	for i, m := range members {
		if i+1 < len(members) && members[i+1].key == m.key {
			continue
		}
		out = append(out, m)
	}
	return out
}

func (p *parser) array(depth int) (Value, error) {
	if depth > MaxDepth {
		return Value{}, p.unreproducible("nesting deeper than %d", MaxDepth)
	}
	p.pos++ // '['
	v := Value{Kind: KindArray}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return v, nil
	}
	for {
		elem, err := p.value(depth)
		if err != nil {
			return Value{}, err
		}
		v.elems = append(v.elems, elem)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return Value{}, p.errorf("unterminated array")
		}
		c := p.data[p.pos]
		p.pos++
		if c == ']' {
			return v, nil
		}
		if c != ',' {
			p.pos--
			return Value{}, p.errorf("expecting ',' or ']'")
		}
		p.skipSpace()
	}
}

// number reads a JSON number. Integers keep their digits (Python ints are
// exact); anything with a fraction or exponent is a Python float.
func (p *parser) number() (Value, error) {
	start := p.pos
	if p.data[p.pos] == '-' {
		p.pos++
	}
	intStart := p.pos
	switch {
	case p.pos < len(p.data) && p.data[p.pos] == '0':
		p.pos++
	case p.pos < len(p.data) && p.data[p.pos] >= '1' && p.data[p.pos] <= '9':
		p.skipDigits()
	default:
		return Value{}, p.errorf("invalid number")
	}
	intDigits := p.pos - intStart
	isFloat := false
	if p.pos+1 < len(p.data) && p.data[p.pos] == '.' && isDigit(p.data[p.pos+1]) {
		p.pos++
		p.skipDigits()
		isFloat = true
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		q := p.pos + 1
		if q < len(p.data) && (p.data[q] == '+' || p.data[q] == '-') {
			q++
		}
		if q < len(p.data) && isDigit(p.data[q]) {
			p.pos = q
			p.skipDigits()
			isFloat = true
		}
	}
	lit := string(p.data[start:p.pos])
	if !isFloat {
		if intDigits > MaxIntDigits {
			return Value{}, p.unreproducible("integer of %d digits exceeds Python's limit of %d", intDigits, MaxIntDigits)
		}
		if lit == "-0" {
			lit = "0"
		}
		return Value{Kind: KindNumber, Text: lit}, nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) {
		return p.nonFiniteValue(lit), nil
	}
	return Value{Kind: KindNumber, Text: string(appendPyFloat(nil, f))}, nil
}

func (p *parser) nonFiniteValue(lit string) Value {
	p.nonFinite = true
	return Value{Kind: KindNonFinite, Text: lit}
}

func (p *parser) skipDigits() {
	for p.pos < len(p.data) && isDigit(p.data[p.pos]) {
		p.pos++
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// string reads a JSON string and returns its decoded text in WTF-8.
func (p *parser) string() (string, error) {
	p.pos++ // opening quote
	start := p.pos
	// Fast path: no escapes, only printable ASCII.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			p.pos++
			return string(p.data[start : p.pos-1]), nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		p.pos++
	}
	buf := append(p.buf[:0], p.data[start:p.pos]...)
	for {
		if p.pos >= len(p.data) {
			return "", p.errorf("unterminated string")
		}
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			p.buf = buf
			return string(buf), nil
		case c < 0x20:
			return "", p.errorf("invalid control character in string")
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size <= 1 {
				return "", p.errorf("invalid UTF-8")
			}
			buf = append(buf, p.data[p.pos:p.pos+size]...)
			p.pos += size
		case c == '\\':
			var err error
			if buf, err = p.escape(buf); err != nil {
				return "", err
			}
		default:
			buf = append(buf, c)
			p.pos++
		}
	}
}

var shortEscapes = [256]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// escape decodes the escape sequence at p.pos and appends it to buf. Like
// CPython, \uD8xx\uDCxx pairs combine and any other surrogate stays alone.
func (p *parser) escape(buf []byte) ([]byte, error) {
	if p.pos+1 >= len(p.data) {
		return nil, p.errorf("unterminated escape")
	}
	c := p.data[p.pos+1]
	if c != 'u' {
		if shortEscapes[c] == 0 {
			return nil, p.errorf("invalid escape \\%c", c)
		}
		p.pos += 2
		return append(buf, shortEscapes[c]), nil
	}
	unit, ok := hex4(p.data[p.pos+2:])
	if !ok {
		return nil, p.errorf("invalid \\u escape")
	}
	p.pos += 6
	if unit >= 0xD800 && unit < 0xDC00 && p.pos+1 < len(p.data) && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
		if low, ok := hex4(p.data[p.pos+2:]); ok && low >= 0xDC00 && low < 0xE000 {
			p.pos += 6
			return utf8.AppendRune(buf, 0x10000+(unit-0xD800)<<10+(low-0xDC00)), nil
		}
	}
	return appendWTF8(buf, unit), nil
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

// appendWTF8 appends a BMP code point, including a lone surrogate, which
// utf8.AppendRune would replace with U+FFFD.
func appendWTF8(buf []byte, r rune) []byte {
	if r < 0xD800 || r >= 0xE000 {
		return utf8.AppendRune(buf, r)
	}
	return append(buf, 0xE0|byte(r>>12), 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
}

// AppendTo writes v as Python's compact, sorted, ASCII-only json.dumps does.
func (v *Value) AppendTo(dst []byte) []byte {
	switch v.Kind {
	case KindNull:
		return append(dst, "null"...)
	case KindTrue:
		return append(dst, "true"...)
	case KindFalse:
		return append(dst, "false"...)
	case KindNumber:
		return append(dst, v.Text...)
	case KindString:
		return appendPyString(dst, v.Text)
	case KindArray:
		dst = append(dst, '[')
		for i := range v.elems {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = v.elems[i].AppendTo(dst)
		}
		return append(dst, ']')
	default:
		dst = append(dst, '{')
		for i := range v.members {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendPyString(dst, v.members[i].key)
			dst = append(dst, ':')
			dst = v.members[i].val.AppendTo(dst)
		}
		return append(dst, '}')
	}
}

const hexDigits = "0123456789abcdef"

// appendPyString writes s (WTF-8) as CPython's ensure_ascii encoder does:
// printable ASCII as is except '"' and '\\', short escapes for \b \f \n \r \t,
// \u00XX for other control characters and DEL, \uXXXX (lower case) for the
// BMP and surrogate pairs above it. '/' is not escaped.
func appendPyString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\b':
				dst = append(dst, '\\', 'b')
			case c == '\f':
				dst = append(dst, '\\', 'f')
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == 0x7F:
				dst = appendUnit(dst, rune(c))
			default:
				dst = append(dst, c)
			}
			continue
		}
		// The text was validated (or built) by the parser, so the lead byte
		// gives the length; 3-byte sequences may be lone surrogates.
		var r rune
		switch {
		case c >= 0xF0:
			r = rune(c&0x07)<<18 | rune(s[i+1]&0x3F)<<12 | rune(s[i+2]&0x3F)<<6 | rune(s[i+3]&0x3F)
			i += 4
		case c >= 0xE0:
			r = rune(c&0x0F)<<12 | rune(s[i+1]&0x3F)<<6 | rune(s[i+2]&0x3F)
			i += 3
		default:
			r = rune(c&0x1F)<<6 | rune(s[i+1]&0x3F)
			i += 2
		}
		if r >= 0x10000 {
			r -= 0x10000
			dst = appendUnit(dst, 0xD800+r>>10)
			dst = appendUnit(dst, 0xDC00+r&0x3FF)
			continue
		}
		dst = appendUnit(dst, r)
	}
	return append(dst, '"')
}

func appendUnit(dst []byte, u rune) []byte {
	return append(dst, '\\', 'u', hexDigits[u>>12&0xF], hexDigits[u>>8&0xF], hexDigits[u>>4&0xF], hexDigits[u&0xF])
}

// appendPyFloat writes f as Python's repr(float) does: the shortest digits
// that round-trip, in exponent form when the decimal exponent is below -4 or
// at least 16 (1e-05, 1e+16, 1.5e+300), otherwise positional with at least
// one digit after the point (0.0001, 1.0, 1000000000000000.0, -0.0).
func appendPyFloat(dst []byte, f float64) []byte {
	var scratch [32]byte
	sci := strconv.AppendFloat(scratch[:0], f, 'e', -1, 64) // [-]d[.ddd]e±XX
	mark := bytes.IndexByte(sci, 'e')
	exp, _ := strconv.Atoi(string(sci[mark+1:]))
	if exp < -4 || exp >= 16 {
		// Go's shortest exponent form already matches Python's repr here.
		return append(dst, sci...)
	}
	mantissa := sci[:mark]
	if mantissa[0] == '-' {
		dst = append(dst, '-')
		mantissa = mantissa[1:]
	}
	digits := make([]byte, 0, 17)
	for _, c := range mantissa {
		if c != '.' {
			digits = append(digits, c)
		}
	}
	point := exp + 1 // digits before the decimal point
	switch {
	case point <= 0:
		dst = append(dst, "0."...)
		dst = append(dst, strings.Repeat("0", -point)...)
		return append(dst, digits...)
	case point >= len(digits):
		dst = append(dst, digits...)
		dst = append(dst, strings.Repeat("0", point-len(digits))...)
		return append(dst, ".0"...)
	default:
		dst = append(dst, digits[:point]...)
		dst = append(dst, '.')
		return append(dst, digits[point:]...)
	}
}
