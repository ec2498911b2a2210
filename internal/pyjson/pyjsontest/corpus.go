// Package pyjsontest generates JSON bodies for tests of Python-exact JSON:
// the spellings producers use, and some bodies Python refuses.
package pyjsontest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"unicode/utf8"
)

// corpusGen writes random JSON text, choosing among the spellings a producer
// may use for the same value (escapes, hex case, number forms, whitespace),
// so that Canonical has to normalise them as Python does.
type corpusGen struct {
	r *rand.Rand
	b []byte
}

// Corpus returns n random bodies, mostly fedmsg-like objects; about
// one in twenty is broken or not reproducible on purpose.
func Corpus(seed uint64, n int) [][]byte {
	g := &corpusGen{r: rand.New(rand.NewPCG(seed, 0x5eed))}
	corpus := make([][]byte, n)
	for i := range corpus {
		g.b = g.b[:0]
		g.space()
		if g.r.IntN(10) < 8 {
			g.object(0)
		} else {
			g.value(0)
		}
		g.space()
		if g.r.IntN(20) == 0 {
			g.breakBody()
		}
		corpus[i] = append([]byte(nil), g.b...)
	}
	return corpus
}

func (g *corpusGen) pick(options ...string) string { return options[g.r.IntN(len(options))] }

func (g *corpusGen) space() {
	if g.r.IntN(3) == 0 {
		g.b = append(g.b, g.pick(" ", "\n", "\t", "\r\n  ", "  ")...)
	}
}

func (g *corpusGen) value(depth int) {
	n := 10
	if depth >= 4 {
		n = 7 // scalars only
	}
	switch g.r.IntN(n) {
	case 0:
		g.b = append(g.b, g.pick("null", "true", "false")...)
	case 1, 2, 3:
		g.string(false)
	case 4, 5:
		g.integer()
	case 6:
		g.float()
	case 7, 8:
		g.object(depth + 1)
	default:
		g.array(depth + 1)
	}
}

func (g *corpusGen) object(depth int) {
	g.b = append(g.b, '{')
	for i, n := 0, g.r.IntN(8); i < n; i++ {
		if i > 0 {
			g.b = append(g.b, ',')
		}
		g.space()
		g.string(true)
		g.space()
		g.b = append(g.b, ':')
		g.space()
		g.value(depth)
		g.space()
	}
	g.b = append(g.b, '}')
}

func (g *corpusGen) array(depth int) {
	g.b = append(g.b, '[')
	for i, n := 0, g.r.IntN(6); i < n; i++ {
		if i > 0 {
			g.b = append(g.b, ',')
		}
		g.space()
		g.value(depth)
		g.space()
	}
	g.b = append(g.b, ']')
}

// Keys are often drawn from a small set so objects get duplicates, and the
// set straddles the orders that differ between UTF-16 and code points.
var corpusKeys = []string{
	"topic", "msg", "i", "timestamp", "msg_id", "username", "crypto", "a", "A", "aa", "",
	`\u0061`, "é", `\u00e9`, "\uE000", `\uffff`, "😀", `\uD83D\uDE00`, `\ud800`, "𐀀", "~", "/",
}

func (g *corpusGen) string(key bool) {
	if key && g.r.IntN(2) == 0 {
		g.b = append(g.b, '"')
		g.b = append(g.b, g.pick(corpusKeys...)...)
		g.b = append(g.b, '"')
		return
	}
	g.b = append(g.b, '"')
	for i, n := 0, g.r.IntN(12); i < n; i++ {
		g.char()
	}
	g.b = append(g.b, '"')
}

// char appends one character in one of its possible spellings.
func (g *corpusGen) char() {
	switch g.r.IntN(14) {
	case 0, 1, 2, 3:
		g.b = append(g.b, byte(' '+g.r.IntN(95))) // printable ASCII...
		if g.b[len(g.b)-1] == '"' || g.b[len(g.b)-1] == '\\' {
			g.b = g.b[:len(g.b)-1] // ...that needs no escape
		}
	case 4:
		g.b = append(g.b, g.pick(`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, "\x7f", "/")...)
	case 5: // any code unit as an escape, either hex case
		g.unitEscape(rune(g.r.IntN(0x10000)))
	case 6: // control characters escaped
		g.unitEscape(rune(g.r.IntN(0x20)))
	case 7: // literal BMP, avoiding surrogates
		r := rune(0x80 + g.r.IntN(0xFFFF-0x80))
		if r >= 0xD800 && r < 0xE000 {
			r += 0x800
		}
		g.b = utf8.AppendRune(g.b, r)
	case 8: // literal astral
		g.b = utf8.AppendRune(g.b, rune(0x10000+g.r.IntN(0x100000)))
	case 9: // escaped surrogate pair
		r := rune(0x10000+g.r.IntN(0x100000)) - 0x10000
		g.unitEscape(0xD800 + r>>10)
		g.unitEscape(0xDC00 + r&0x3FF)
	case 10: // lone or reversed surrogates
		g.unitEscape(rune(0xD800 + g.r.IntN(0x800)))
	case 11: // private use area vs astral ordering
		g.b = utf8.AppendRune(g.b, rune(0xE000+g.r.IntN(0x2000)))
	default:
		g.b = append(g.b, g.pick("ž", "ß", "中", "€", "ﬃ", "א")...)
	}
}

func (g *corpusGen) unitEscape(u rune) {
	s := fmt.Sprintf(`\u%04x`, u)
	if g.r.IntN(2) == 0 {
		s = `\u` + strings.ToUpper(s[2:])
	}
	g.b = append(g.b, s...)
}

func (g *corpusGen) integer() {
	switch g.r.IntN(6) {
	case 0:
		g.b = append(g.b, g.pick("0", "-0", "1", "-1")...)
	case 1, 2:
		g.b = strconv.AppendInt(g.b, g.r.Int64N(1<<40)-1<<39, 10)
	case 3:
		g.b = strconv.AppendUint(g.b, g.r.Uint64(), 10)
	default: // beyond 64 bits
		if g.r.IntN(2) == 0 {
			g.b = append(g.b, '-')
		}
		g.b = append(g.b, byte('1'+g.r.IntN(9)))
		for i, n := 0, 10+g.r.IntN(80); i < n; i++ {
			g.b = append(g.b, byte('0'+g.r.IntN(10)))
		}
	}
}

func (g *corpusGen) float() {
	switch g.r.IntN(4) {
	case 0: // any finite double, in any Go spelling
		f := math.Float64frombits(g.r.Uint64())
		for math.IsNaN(f) || math.IsInf(f, 0) {
			f = math.Float64frombits(g.r.Uint64())
		}
		prec := -1
		if g.r.IntN(2) == 0 {
			prec = g.r.IntN(25)
		}
		s := strconv.FormatFloat(f, g.pick("e", "E", "g")[0], prec, 64)
		if !strings.ContainsAny(s, ".eE") {
			s += ".0"
		}
		g.b = append(g.b, s...)
	case 1: // doubles of ordinary size, positional
		f := (g.r.Float64() - 0.5) * math.Pow(10, float64(g.r.IntN(40)-20))
		s := strconv.FormatFloat(f, 'f', g.r.IntN(30)-1, 64)
		if !strings.ContainsAny(s, ".") {
			s += ".0"
		}
		g.b = append(g.b, s...)
	case 2: // random decimal digits with an explicit exponent (rounding, both range edges)
		if g.r.IntN(2) == 0 {
			g.b = append(g.b, '-')
		}
		g.b = append(g.b, byte('0'+g.r.IntN(10)))
		if g.r.IntN(2) == 0 {
			g.b = append(g.b, '.')
			for i, n := 0, 1+g.r.IntN(25); i < n; i++ {
				g.b = append(g.b, byte('0'+g.r.IntN(10)))
			}
		}
		g.b = append(g.b, g.pick("e", "E", "e+", "E-", "e-", "e0")...)
		g.b = strconv.AppendInt(g.b, int64(g.r.IntN(420)), 10)
	default: // the boundaries of repr's positional range
		g.b = append(g.b, g.pick("1e15", "1e16", "9999999999999998.0", "1e-4", "1e-5", "0.0001", "0.00009999",
			"-0.0", "0.0", "1.0", "100.0", "123456789012345678.0", "5e-324", "2.5e-324", "1.7976931348623157e308")...)
	}
}

// breakBody damages the body in a way Python and Go must both refuse.
func (g *corpusGen) breakBody() {
	switch g.r.IntN(10) {
	case 0:
		if len(g.b) > 1 {
			g.b = g.b[:g.r.IntN(len(g.b))]
		}
	case 1:
		g.b = append(g.b, g.pick(",", "}", "]", " x", "{}")...)
	case 2:
		g.b = append([]byte(`[`), append(g.b, `,NaN]`...)...)
	case 3:
		g.b = append([]byte(`{"v":`+g.pick("Infinity", "-Infinity", "1e400", "-1E309", "01", "1.", ".5", "+1", "0x10")+`,"x":`), append(g.b, '}')...)
	case 4:
		g.b = append([]byte("[\"\xff\xfe\","), append(g.b, ']')...)
	case 5:
		g.b = append([]byte("[\"a\x01b\","), append(g.b, ']')...)
	case 6:
		g.b = append([]byte("\xef\xbb\xbf"), g.b...)
	case 7:
		g.b = append([]byte(`["\u12G4",`), append(g.b, ']')...)
	case 8:
		g.b = append([]byte(`{'a':1,"b":`), append(g.b, '}')...)
	default:
		g.b = append([]byte(`["\q",`), append(g.b, ']')...)
	}
}
