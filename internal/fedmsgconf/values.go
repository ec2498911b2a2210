package fedmsgconf

import (
	"fmt"
	"strings"
)

// Bool returns the boolean at key, or def when the key is absent or None.
// Strings are read as fedmsg's config validator reads them ("True", "yes",
// "off", ...); anything else is an error, as it is for fedmsg.
func (c Config) Bool(key string, def bool) (bool, error) {
	switch v := c[key].(type) {
	case nil:
		return def, nil
	case bool:
		return v, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "t", "true", "y", "yes", "on", "1":
			return true, nil
		case "f", "false", "n", "no", "off", "0":
			return false, nil
		}
		return false, fmt.Errorf("config %s: %q is not a boolean", key, v)
	default:
		return false, fmt.Errorf("config %s: want a bool, found %s", key, typeName(v))
	}
}

// StringMap returns the dict at key with string values (certnames), or nil
// when the key is absent or None.
func (c Config) StringMap(key string) (map[string]string, error) {
	d, err := c.dict(key)
	if err != nil || d == nil {
		return nil, err
	}
	out := make(map[string]string, len(d))
	for k, v := range d {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("config %s[%q]: want a string, found %s", key, k, typeName(v))
		}
		out[k] = s
	}
	return out, nil
}

// ListMap returns the dict at key with lists of strings as values
// (routing_policy), or nil when the key is absent or None.
func (c Config) ListMap(key string) (map[string][]string, error) {
	d, err := c.dict(key)
	if err != nil || d == nil {
		return nil, err
	}
	out := make(map[string][]string, len(d))
	for k, v := range d {
		// fedmsg tests membership with `in`: a list or tuple of names.
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("config %s[%q]: want a list, found %s", key, k, typeName(v))
		}
		names := make([]string, 0, len(list))
		for _, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("config %s[%q]: want strings, found %s", key, k, typeName(e))
			}
			names = append(names, s)
		}
		out[k] = names
	}
	return out, nil
}

func (c Config) dict(key string) (map[string]any, error) {
	switch v := c[key].(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return v, nil
	default:
		return nil, fmt.Errorf("config %s: want a dict, found %s", key, typeName(v))
	}
}
