package fedmsgconf

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 100

// Parse evaluates the literal subset of Python that fedmsg config files use
// and returns the value bound to `config`, which must be a dict.
//
// Supported: top-level assignments `NAME = expr`, where expr is a string
// (any quoting, r/u prefixes, escapes, implicit concatenation), int, float,
// True/False/None, list, tuple, dict display, dict(key=value, ...), a name
// assigned above, and `import socket` with socket.gethostname() followed by
// .split(...) and [index] (the `hostname = ...` idiom of fedmsg's endpoints.py).
// Anything else is a *SyntaxError naming line and column (Python may still
// read it); source without a `config` dict is a *ConfigError.
func Parse(src string) (map[string]any, error) {
	p := &parser{lex: newLexer(src), vars: map[string]any{}, imports: map[string]bool{}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	for p.tok.kind != tokEOF {
		if err := p.statement(); err != nil {
			return nil, err
		}
	}
	v, ok := p.vars["config"]
	if !ok {
		return nil, &ConfigError{Msg: "no `config` defined"}
	}
	cfg, ok := v.(map[string]any)
	if !ok {
		return nil, &ConfigError{Line: p.configLine, Msg: fmt.Sprintf("`config` is a %s, not a dict", typeName(v))}
	}
	return cfg, nil
}

// ConfigError is valid source whose `config` fedmsg cannot use; Python
// would find the same, so it is final.
type ConfigError struct {
	Line int // of the last assignment to config; 0 when there is none
	Msg  string
}

func (e *ConfigError) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("%d: %s", e.Line, e.Msg)
}

type parser struct {
	lex     *lexer
	tok     token
	vars    map[string]any
	imports map[string]bool
	depth   int
	// configLine is the line of the last `config = ...`.
	configLine int
}

func (p *parser) advance() error {
	t, err := p.lex.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) errorf(t token, format string, args ...any) error {
	return &SyntaxError{Line: t.line, Col: t.col, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) isOp(s string) bool { return p.tok.kind == tokOp && p.tok.text == s }

func (p *parser) expectOp(s string) error {
	if !p.isOp(s) {
		return p.errorf(p.tok, "expected %q, found %s", s, describe(p.tok))
	}
	return p.advance()
}

func describe(t token) string {
	switch t.kind {
	case tokEOF:
		return "end of file"
	case tokNewline:
		return "end of line"
	case tokString:
		return "a string"
	}
	return fmt.Sprintf("%q", t.text)
}

func (p *parser) statement() error {
	start := p.tok
	if start.kind != tokName {
		return p.errorf(start, "unsupported statement starting with %s", describe(start))
	}
	if err := p.advance(); err != nil {
		return err
	}
	if start.text == "import" {
		return p.importStatement()
	}
	if !p.isOp("=") {
		return p.errorf(start, "unsupported statement starting with %q (only NAME = value)", start.text)
	}
	if err := p.advance(); err != nil {
		return err
	}
	v, err := p.expr()
	if err != nil {
		return err
	}
	if p.tok.kind != tokNewline {
		return p.errorf(p.tok, "unsupported %s after the value of %s", describe(p.tok), start.text)
	}
	p.vars[start.text] = v
	if start.text == "config" {
		p.configLine = start.line
	}
	return p.advance()
}

func (p *parser) importStatement() error {
	for {
		if p.tok.kind != tokName || p.tok.text != "socket" {
			return p.errorf(p.tok, "unsupported import of %s (only `import socket`)", describe(p.tok))
		}
		p.imports["socket"] = true
		if err := p.advance(); err != nil {
			return err
		}
		if p.tok.kind == tokNewline {
			return p.advance()
		}
		if err := p.expectOp(","); err != nil {
			return err
		}
	}
}

// expr parses a value followed by any .split(...) calls and [index] subscripts.
func (p *parser) expr() (any, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return nil, p.errorf(p.tok, "nesting deeper than %d", maxDepth)
	}
	v, err := p.atom()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.isOp("."):
			v, err = p.methodCall(v)
		case p.isOp("["):
			v, err = p.subscript(v)
		default:
			return v, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func (p *parser) atom() (any, error) {
	t := p.tok
	switch {
	case t.kind == tokString:
		var b strings.Builder
		for p.tok.kind == tokString {
			b.WriteString(p.tok.text)
			if err := p.advance(); err != nil {
				return nil, err
			}
		}
		return b.String(), nil
	case t.kind == tokNumber:
		if err := p.advance(); err != nil {
			return nil, err
		}
		return parseNumber(t, false)
	case p.isOp("-") || p.isOp("+"):
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tokNumber {
			return nil, p.errorf(t, "unary %s is only supported before a number", t.text)
		}
		num := p.tok
		if err := p.advance(); err != nil {
			return nil, err
		}
		return parseNumber(num, t.text == "-")
	case p.isOp("["):
		items, _, err := p.sequence("]")
		return items, err
	case p.isOp("("):
		// (x) is x itself; (x,) and (x, y) are tuples, kept as lists.
		items, comma, err := p.sequence(")")
		if err == nil && len(items) == 1 && !comma {
			return items[0], nil
		}
		return items, err
	case p.isOp("{"):
		return p.dictDisplay()
	case t.kind == tokName:
		return p.name()
	}
	return nil, p.errorf(t, "unsupported %s", describe(t))
}

func (p *parser) name() (any, error) {
	t := p.tok
	if err := p.advance(); err != nil {
		return nil, err
	}
	switch t.text {
	case "True":
		return true, nil
	case "False":
		return false, nil
	case "None":
		return nil, nil
	case "dict":
		if p.isOp("(") {
			return p.dictCall()
		}
	case "socket":
		if p.imports["socket"] {
			return p.gethostname(t)
		}
	}
	if v, ok := p.vars[t.text]; ok {
		return v, nil
	}
	return nil, p.errorf(t, "unsupported name %q (only literals and names assigned above)", t.text)
}

// gethostname evaluates `socket.gethostname()`.
func (p *parser) gethostname(t token) (any, error) {
	if err := p.expectOp("."); err != nil {
		return nil, err
	}
	if p.tok.kind != tokName || p.tok.text != "gethostname" {
		return nil, p.errorf(p.tok, "unsupported socket.%s (only socket.gethostname())", p.tok.text)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if err := p.expectOp("("); err != nil {
		return nil, err
	}
	if err := p.expectOp(")"); err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, p.errorf(t, "gethostname: %v", err)
	}
	return host, nil
}

// methodCall supports str.split(sep[, maxsplit]), the only method the
// hostname idiom needs.
func (p *parser) methodCall(recv any) (any, error) {
	dot := p.tok
	if err := p.advance(); err != nil {
		return nil, err
	}
	s, isStr := recv.(string)
	if p.tok.kind != tokName || p.tok.text != "split" || !isStr {
		return nil, p.errorf(dot, "unsupported method call (only str.split)")
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	list, _, err := p.sequence(")")
	if err != nil {
		return nil, err
	}
	if len(list) < 1 || len(list) > 2 {
		return nil, p.errorf(dot, "split takes a separator and an optional maxsplit")
	}
	sep, ok := list[0].(string)
	if !ok || sep == "" {
		return nil, p.errorf(dot, "split separator must be a non-empty string")
	}
	n := -1
	if len(list) == 2 {
		max, ok := list[1].(int64)
		if !ok {
			return nil, p.errorf(dot, "split maxsplit must be an int")
		}
		if max >= 0 && max < math.MaxInt32 {
			n = int(max) + 1
		}
	}
	parts := strings.SplitN(s, sep, n)
	out := make([]any, len(parts))
	for i, part := range parts {
		out[i] = part
	}
	return out, nil
}

func (p *parser) subscript(v any) (any, error) {
	open := p.tok
	if err := p.advance(); err != nil {
		return nil, err
	}
	idx, err := p.expr()
	if err != nil {
		return nil, err
	}
	if err := p.expectOp("]"); err != nil {
		return nil, err
	}
	switch c := v.(type) {
	case []any:
		i, ok := idx.(int64)
		if !ok {
			return nil, p.errorf(open, "list index must be an int")
		}
		if i < 0 {
			i += int64(len(c))
		}
		if i < 0 || i >= int64(len(c)) {
			return nil, p.errorf(open, "list index out of range")
		}
		return c[i], nil
	case map[string]any:
		k, ok := idx.(string)
		if !ok {
			return nil, p.errorf(open, "dict key must be a string")
		}
		if e, ok := c[k]; ok {
			return e, nil
		}
		return nil, p.errorf(open, "key %q not found", k)
	}
	return nil, p.errorf(open, "cannot subscript a %s", typeName(v))
}

// sequence parses the items of a list, tuple or call up to close, allowing
// a trailing comma, and reports whether any comma was seen. The opening
// bracket is the current token.
func (p *parser) sequence(close string) (items []any, comma bool, err error) {
	if err := p.advance(); err != nil {
		return nil, false, err
	}
	items = []any{}
	for !p.isOp(close) {
		v, err := p.expr()
		if err != nil {
			return nil, false, err
		}
		items = append(items, v)
		if p.isOp(close) {
			break
		}
		if err := p.expectOp(","); err != nil {
			return nil, false, err
		}
		comma = true
	}
	return items, comma, p.advance()
}

func (p *parser) dictDisplay() (any, error) {
	if err := p.advance(); err != nil {
		return nil, err
	}
	d := map[string]any{}
	for !p.isOp("}") {
		kt := p.tok
		k, err := p.expr()
		if err != nil {
			return nil, err
		}
		key, ok := k.(string)
		if !ok {
			return nil, p.errorf(kt, "unsupported dict key of type %s (only strings)", typeName(k))
		}
		if err := p.expectOp(":"); err != nil {
			return nil, err
		}
		if d[key], err = p.expr(); err != nil {
			return nil, err
		}
		if p.isOp("}") {
			break
		}
		if err := p.expectOp(","); err != nil {
			return nil, err
		}
	}
	return d, p.advance()
}

// dictCall parses dict(key=value, ...); the current token is "(".
func (p *parser) dictCall() (any, error) {
	if err := p.advance(); err != nil {
		return nil, err
	}
	d := map[string]any{}
	for !p.isOp(")") {
		if p.tok.kind != tokName {
			return nil, p.errorf(p.tok, "unsupported dict() argument %s (only key=value)", describe(p.tok))
		}
		key := p.tok.text
		// Python refuses this at compile time; taking the last value would
		// resolve a file fedmsg cannot load.
		if _, repeated := d[key]; repeated {
			return nil, p.errorf(p.tok, "keyword argument repeated: %s", key)
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		if err := p.expectOp("="); err != nil {
			return nil, err
		}
		v, err := p.expr()
		if err != nil {
			return nil, err
		}
		d[key] = v
		if p.isOp(")") {
			break
		}
		if err := p.expectOp(","); err != nil {
			return nil, err
		}
	}
	return d, p.advance()
}

func parseNumber(t token, negative bool) (any, error) {
	text := strings.ReplaceAll(t.text, "_", "")
	if negative {
		text = "-" + text
	}
	lower := strings.ToLower(t.text)
	isInt := !strings.ContainsAny(lower, ".ej") || strings.HasPrefix(lower, "0x")
	if isInt {
		// Python 3 forbids leading zeros in decimal ints (except 0 itself).
		if len(lower) > 1 && lower[0] == '0' && lower[1] >= '0' && lower[1] <= '9' && strings.Trim(lower, "0_") != "" {
			return nil, &SyntaxError{Line: t.line, Col: t.col, Msg: fmt.Sprintf("invalid number %q", t.text)}
		}
		n, err := strconv.ParseInt(text, 0, 64)
		if err != nil {
			return nil, &SyntaxError{Line: t.line, Col: t.col, Msg: fmt.Sprintf("unsupported number %q", t.text)}
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || strings.ContainsAny(lower, "jx") || strings.HasPrefix(lower, "0x") {
		return nil, &SyntaxError{Line: t.line, Col: t.col, Msg: fmt.Sprintf("unsupported number %q", t.text)}
	}
	return f, nil
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "None"
	case string:
		return "str"
	case int64:
		return "int"
	case float64:
		return "float"
	case bool:
		return "bool"
	case []any:
		return "list"
	case map[string]any:
		return "dict"
	}
	return fmt.Sprintf("%T", v)
}
