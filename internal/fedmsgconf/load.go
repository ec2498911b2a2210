// Package fedmsgconf reads fedmsg's Python configuration files (the
// /etc/fedmsg.d/*.py every Fedora host carries) without running Python.
package fedmsgconf

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// DefaultDir is where fedmsg looks when FEDMSG_CONFIG is not set.
const DefaultDir = "/etc/fedmsg.d"

// Defaults fedmsg's own command-line tools used (fedmsg.config.defaults and
// the relay.py it ships).
const (
	DefaultTopicPrefix   = "org.fedoraproject"
	DefaultEnvironment   = "dev"
	DefaultRelayInbound  = "tcp://127.0.0.1:2003"
	DefaultRelayOutbound = "tcp://127.0.0.1:4001"
)

// Location returns the file or directory fedmsg would read: the one named by
// FEDMSG_CONFIG, else DefaultDir.
func Location() string {
	if loc := os.Getenv("FEDMSG_CONFIG"); loc != "" {
		return loc
	}
	return DefaultDir
}

// Files lists the config files at location: the location itself when it is a
// file, else its *.py files in lexicographic order (later ones override
// earlier ones). A missing location yields no files and no error.
func Files(location string) ([]string, error) {
	info, err := os.Stat(location)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config location: %w", err)
	}
	if !info.IsDir() {
		return []string{location}, nil
	}
	matches, err := filepath.Glob(filepath.Join(location, "*.py"))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", location, err)
	}
	files := matches[:0]
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && st.Mode().IsRegular() {
			files = append(files, m)
		}
	}
	sort.Strings(files)
	return files, nil
}

// Config is the merged `config` dicts of the files read.
type Config map[string]any

// Load parses each file and merges its `config` dict into the result the way
// fedmsg's load_config does (dicts merged recursively, later files win).
// A file that cannot be read or that uses Python beyond the literal subset
// is skipped with a warning naming file:line:col; Load never fails.
func Load(files []string, log hclog.Logger) Config {
	merged := map[string]any{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			log.Warn("skipping fedmsg config file", "file", f, "error", err)
			continue
		}
		cfg, err := Parse(string(src))
		if err != nil {
			log.Warn("skipping fedmsg config file: only literal Python is supported",
				"file", f, "error", fmt.Sprintf("%s:%v", f, err))
			continue
		}
		mergeInto(merged, cfg)
	}
	return merged
}

// mergeInto is fedmsg's _recursive_update.
func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		sub, srcIsDict := v.(map[string]any)
		if cur, ok := dst[k].(map[string]any); ok && srcIsDict {
			mergeInto(cur, sub)
			continue
		}
		dst[k] = v
	}
}

// String returns the string at key, or def when the key is absent or None.
func (c Config) String(key, def string) (string, error) {
	switch v := c[key].(type) {
	case nil:
		return def, nil
	case string:
		return v, nil
	default:
		return "", fmt.Errorf("config %s: want a string, found %s", key, typeName(v))
	}
}

// Addresses returns the value at key as a list of endpoints (fedmsg accepts
// a string or a list of strings), or nil when absent.
func (c Config) Addresses(key string) ([]string, error) {
	return addresses(key, c[key])
}

// Endpoint returns endpoints[name] as a list of addresses, or nil.
func (c Config) Endpoint(name string) ([]string, error) {
	eps, ok := c["endpoints"].(map[string]any)
	if !ok {
		if c["endpoints"] != nil {
			return nil, fmt.Errorf("config endpoints: want a dict, found %s", typeName(c["endpoints"]))
		}
		return nil, nil
	}
	return addresses("endpoints."+name, eps[name])
}

func addresses(key string, v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("config %s: want strings, found %s", key, typeName(e))
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("config %s: want a string or a list, found %s", key, typeName(v))
}

// SplitAddresses turns flag or environment values ("a,b", repeated) into a
// list, dropping empty items.
func SplitAddresses(values ...string) []string {
	var out []string
	for _, v := range values {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				out = append(out, a)
			}
		}
	}
	return out
}

// LoadFrom loads the config the tools' flags name: the single file, else the
// directory of *.py files, else Location().
func LoadFrom(dir, file string, log hclog.Logger) (Config, error) {
	location := dir
	if file != "" {
		location = file
	}
	if location == "" {
		location = Location()
	}
	files, err := Files(location)
	if err != nil {
		return nil, err
	}
	log.Debug("fedmsg config", "location", location, "files", files)
	return Load(files, log), nil
}

// Pick chooses addresses by precedence: flag values, then the environment
// variable env, then the config (fromConfig), then def.
func Pick(flagValues []string, env string, fromConfig func() ([]string, error), def ...string) ([]string, error) {
	if addrs := SplitAddresses(flagValues...); len(addrs) > 0 {
		return addrs, nil
	}
	if addrs := SplitAddresses(os.Getenv(env)); len(addrs) > 0 {
		return addrs, nil
	}
	addrs, err := fromConfig()
	if err != nil || len(addrs) > 0 {
		return addrs, err
	}
	return def, nil
}
