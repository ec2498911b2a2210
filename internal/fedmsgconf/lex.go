package fedmsgconf

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// tokenKind classifies the tokens of the Python subset that config files use.
type tokenKind int

const (
	tokEOF tokenKind = iota
	tokNewline
	tokName
	tokNumber
	tokString
	tokOp
)

type token struct {
	kind tokenKind
	text string // name, number literal, operator, or the decoded string value
	line int
	col  int
}

// SyntaxError is a construct outside the supported subset, or invalid Python.
type SyntaxError struct {
	Line, Col int
	Msg       string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg) }

// lexer turns source into tokens, dropping comments, blank lines and newlines
// inside brackets as Python does.
type lexer struct {
	src       string
	pos       int
	line, col int
	depth     int  // bracket nesting
	lineStart bool // at the start of a logical line
}

func newLexer(src string) *lexer {
	return &lexer{src: src, line: 1, col: 1, lineStart: true}
}

func (l *lexer) errorf(line, col int, format string, args ...any) error {
	return &SyntaxError{Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

func (l *lexer) peekByte(off int) byte {
	if l.pos+off < len(l.src) {
		return l.src[l.pos+off]
	}
	return 0
}

func (l *lexer) advance(n int) {
	for i := 0; i < n && l.pos < len(l.src); i++ {
		if l.src[l.pos] == '\n' {
			l.line++
			l.col = 1
		} else {
			l.col++
		}
		l.pos++
	}
}

// next returns the next token.
func (l *lexer) next() (token, error) {
	for {
		if l.pos >= len(l.src) {
			if !l.lineStart {
				l.lineStart = true
				return token{kind: tokNewline, line: l.line, col: l.col}, nil
			}
			return token{kind: tokEOF, line: l.line, col: l.col}, nil
		}
		c := l.src[l.pos]
		switch {
		case c == '#':
			for l.pos < len(l.src) && l.src[l.pos] != '\n' {
				l.advance(1)
			}
		case c == '\n':
			l.advance(1)
			if l.depth == 0 && !l.lineStart {
				l.lineStart = true
				return token{kind: tokNewline, line: l.line - 1, col: 1}, nil
			}
		case c == ' ' || c == '\t' || c == '\r' || c == '\f':
			if l.lineStart && l.depth == 0 && l.col == 1 && !l.blankRest() {
				return token{}, l.errorf(l.line, l.col, "indented statement (only top-level assignments are supported)")
			}
			l.advance(1)
		case c == '\\' && (l.peekByte(1) == '\n' || (l.peekByte(1) == '\r' && l.peekByte(2) == '\n')):
			l.advance(2)
			if l.src[l.pos-1] == '\r' {
				l.advance(1)
			}
		default:
			l.lineStart = false
			return l.token()
		}
	}
}

// blankRest reports whether the rest of the current line holds only
// whitespace or a comment (an indented comment is not an indented statement).
func (l *lexer) blankRest() bool {
	for i := l.pos; i < len(l.src); i++ {
		switch l.src[i] {
		case ' ', '\t', '\r', '\f':
		case '\n', '#':
			return true
		default:
			return false
		}
	}
	return true
}

func (l *lexer) token() (token, error) {
	line, col := l.line, l.col
	c := l.src[l.pos]
	switch {
	case isNameStart(c):
		end := l.pos
		for end < len(l.src) && isNameChar(l.src[end]) {
			end++
		}
		word := l.src[l.pos:end]
		if end < len(l.src) && (l.src[end] == '\'' || l.src[end] == '"') && len(word) <= 2 {
			return l.stringToken(word, end-l.pos, line, col)
		}
		l.advance(end - l.pos)
		return token{kind: tokName, text: word, line: line, col: col}, nil
	case c >= '0' && c <= '9' || c == '.' && l.peekByte(1) >= '0' && l.peekByte(1) <= '9':
		end := l.pos
		for end < len(l.src) && (isNameChar(l.src[end]) || l.src[end] == '.' ||
			(l.src[end] == '+' || l.src[end] == '-') && (l.src[end-1] == 'e' || l.src[end-1] == 'E') && !isHexLiteral(l.src[l.pos:end])) {
			end++
		}
		text := l.src[l.pos:end]
		l.advance(end - l.pos)
		return token{kind: tokNumber, text: text, line: line, col: col}, nil
	case c == '\'' || c == '"':
		return l.stringToken("", 0, line, col)
	case strings.IndexByte("()[]{},:=.+-", c) >= 0:
		switch c {
		case '(', '[', '{':
			l.depth++
		case ')', ']', '}':
			if l.depth > 0 {
				l.depth--
			}
		}
		l.advance(1)
		return token{kind: tokOp, text: string(c), line: line, col: col}, nil
	default:
		r, _ := utf8.DecodeRuneInString(l.src[l.pos:])
		return token{}, l.errorf(line, col, "unsupported character %q", r)
	}
}

func isHexLiteral(s string) bool {
	return len(s) > 1 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')
}

func isNameStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isNameChar(c byte) bool { return isNameStart(c) || c >= '0' && c <= '9' }

// stringToken reads a string literal whose prefix (r, u, combinations) is
// prefixLen bytes long.
func (l *lexer) stringToken(prefix string, prefixLen, line, col int) (token, error) {
	raw := false
	for _, p := range strings.ToLower(prefix) {
		switch p {
		case 'r':
			raw = true
		case 'u':
		default:
			return token{}, l.errorf(line, col, "unsupported string prefix %q (only r and u are supported)", prefix)
		}
	}
	l.advance(prefixLen)
	quote := l.src[l.pos]
	triple := l.peekByte(1) == quote && l.peekByte(2) == quote
	if triple {
		l.advance(3)
	} else {
		l.advance(1)
	}
	var b strings.Builder
	for {
		if l.pos >= len(l.src) {
			return token{}, l.errorf(line, col, "unterminated string")
		}
		c := l.src[l.pos]
		switch {
		case c == quote && (!triple || l.peekByte(1) == quote && l.peekByte(2) == quote):
			if triple {
				l.advance(3)
			} else {
				l.advance(1)
			}
			return token{kind: tokString, text: b.String(), line: line, col: col}, nil
		case c == '\n' && !triple:
			return token{}, l.errorf(line, col, "unterminated string")
		case c == '\\':
			if l.pos+1 >= len(l.src) {
				return token{}, l.errorf(line, col, "unterminated string")
			}
			if raw {
				// A raw string keeps the backslash, which still protects a quote.
				b.WriteString(l.src[l.pos : l.pos+2])
				l.advance(2)
				continue
			}
			if err := l.escape(&b); err != nil {
				return token{}, err
			}
		default:
			b.WriteByte(c)
			l.advance(1)
		}
	}
}

var simpleEscapes = map[byte]string{
	'\n': "", '\\': "\\", '\'': "'", '"': "\"", 'a': "\a", 'b': "\b",
	'f': "\f", 'n': "\n", 'r': "\r", 't': "\t", 'v': "\v",
}

// escape decodes one backslash escape at l.pos, as Python 3 does in a str.
func (l *lexer) escape(b *strings.Builder) error {
	line, col := l.line, l.col
	c := l.peekByte(1)
	if s, ok := simpleEscapes[c]; ok {
		b.WriteString(s)
		l.advance(2)
		return nil
	}
	digits, base := 0, 16
	switch {
	case c >= '0' && c <= '7':
		base = 8
		n := 1
		for n < 3 && l.peekByte(1+n) >= '0' && l.peekByte(1+n) <= '7' {
			n++
		}
		digits = n
		l.advance(1)
	case c == 'x':
		digits = 2
		l.advance(2)
	case c == 'u':
		digits = 4
		l.advance(2)
	case c == 'U':
		digits = 8
		l.advance(2)
	case c == 'N':
		return l.errorf(line, col, `unsupported escape \N{...}`)
	default:
		// Unknown escapes keep their backslash in Python.
		b.WriteByte('\\')
		l.advance(1)
		return nil
	}
	var r rune
	for i := 0; i < digits; i++ {
		d := hexValue(l.peekByte(0))
		if d < 0 || d >= base {
			return l.errorf(line, col, "truncated escape")
		}
		r = r*rune(base) + rune(d)
		l.advance(1)
	}
	if r > utf8.MaxRune {
		return l.errorf(line, col, "escape out of range")
	}
	b.WriteRune(r)
	return nil
}

func hexValue(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
