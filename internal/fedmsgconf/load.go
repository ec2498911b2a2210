// Package fedmsgconf reads fedmsg's Python configuration files (the
// /etc/fedmsg.d/*.py every Fedora host carries) as fedmsg does: each file's
// `config` dict, merged in sorted order. Files of literals (the shipped
// ones) are read by a small parser without starting Python; a directory
// with any other Python is evaluated by the host's python3, exactly as
// fedmsg.config executes it.
package fedmsgconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

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
// earlier ones), skipping what is not a regular file as fedmsg's isfile
// check does. A missing location yields no files and no error; a directory
// that cannot be listed is an error.
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
	entries, err := os.ReadDir(location)
	if err != nil {
		return nil, fmt.Errorf("config location: %w", err)
	}
	var files []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".py") {
			continue
		}
		f := filepath.Join(location, e.Name())
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() {
			files = append(files, f)
		}
	}
	sort.Strings(files)
	return files, nil
}

// Config is the merged `config` dicts of the files read.
type Config map[string]any

// loader reads config files: the literal parser while every file is plain,
// else Python for the whole set, so that one program does the whole merge.
type loader struct {
	// python finds the interpreter; called only when a file needs it.
	python  func() (string, error)
	timeout time.Duration
	log     hclog.Logger
}

// load merges files the way fedmsg's load_config does. Every failure is one
// error naming the file (and line, where there is one).
func (l loader) load(location string, files []string) (Config, error) {
	sources := make([]string, len(files))
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("fedmsg config: %w", err)
		}
		sources[i] = string(b)
	}
	merged := map[string]any{}
	for i, f := range files {
		cfg, err := Parse(sources[i])
		var ce *ConfigError
		if errors.As(err, &ce) {
			return nil, fileError(f, ce.Line, ce.Msg)
		}
		if err != nil {
			return l.evaluate(location, files, f, err)
		}
		if tooLarge(cfg) {
			return nil, fileError(f, 0, fmt.Sprintf("`config` holds more than %d values", maxValues))
		}
		mergeInto(merged, cfg)
	}
	if tooLarge(merged) {
		return nil, fileError(location, 0, fmt.Sprintf("the merged config holds more than %d values", maxValues))
	}
	return merged, nil
}

// fileError is the one form of every error about a config file's content:
// FILE:LINE: MESSAGE, or FILE: MESSAGE when no line applies.
func fileError(file string, line int, msg string) error {
	if line > 0 {
		return fmt.Errorf("%s:%d: %s", file, line, msg)
	}
	return fmt.Errorf("%s: %s", file, msg)
}

// evaluate runs the files through Python because file could not be read
// as literals (why).
func (l loader) evaluate(location string, files []string, file string, why error) (Config, error) {
	l.log.Debug("fedmsg config needs Python", "file", file, "reason", why)
	python, err := l.python()
	if err != nil {
		return nil, fmt.Errorf("%s:%v; reading it needs Python: %w", file, why, err)
	}
	return evaluator{python: python, timeout: l.timeout}.eval(location, files)
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
// directory of *.py files, else Location(). A missing location is an empty
// config; anything that keeps fedmsg from reading it is an error.
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
	return loader{python: findPython, timeout: pythonTimeout, log: log}.load(location, files)
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
