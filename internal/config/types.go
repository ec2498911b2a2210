package config

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Endpoints is a list of ZeroMQ endpoints; in YAML a single string or a list,
// as fedmsg's relay_inbound may be either.
type Endpoints []string

// UnmarshalYAML accepts a scalar string or a sequence of strings.
func (e *Endpoints) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*e = Endpoints{s}
		return nil
	case yaml.SequenceNode:
		var list []string
		if err := n.Decode(&list); err != nil {
			return err
		}
		*e = list
		return nil
	}
	return fmt.Errorf("want an endpoint string or a list of them")
}

// FileMode is a permission mode written in YAML as an octal string ("0770") or number.
type FileMode os.FileMode

// UnmarshalYAML parses octal modes; YAML 1.1's 0770 and 1.2's 0o770 both work.
func (m *FileMode) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimPrefix(strings.TrimPrefix(n.Value, "0o"), "0")
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("want an octal file mode such as \"0770\", got %q", n.Value)
	}
	*m = FileMode(v)
	return nil
}

// yamlFields maps the yaml tag names of a struct's fields to their indexes.
func yamlFields(t reflect.Type) map[string]int {
	fields := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			fields[name] = i
		}
	}
	return fields
}

// isSection reports whether values of t are nested sections, decoded key by
// key: structs that do not decode themselves.
func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != reflect.TypeOf(time.Time{}) &&
		!reflect.PointerTo(t).Implements(reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem())
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// yamlErrorLine extracts the line number yaml.v3 puts in its messages.
func yamlErrorLine(err error) int {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// cleanYAMLError drops yaml.v3's "yaml: unmarshal errors:\n  line N: " framing,
// since Problem already carries the line.
func cleanYAMLError(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
	msg = strings.TrimSpace(msg)
	if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "line ") {
		msg = msg[i+2:]
	}
	return msg
}
