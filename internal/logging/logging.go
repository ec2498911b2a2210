// Package logging builds the relay's hclog logger. There is one Setup; parts
// of the program take sub-loggers by the names below, so log lines say where
// they come from.
package logging

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// Sub-logger names, used with Logger.Named.
const (
	NameRelay      = "relay"
	NameMetrics    = "metrics"
	NameMonitoring = "monitoring"
	NameAMQP       = "amqp"
	NameSpool      = "spool"
	NameCRL        = "crl"
)

// Options says where and how to log.
type Options struct {
	Name   string
	Level  string
	JSON   bool
	File   string    // empty: Stderr
	Stderr io.Writer // default os.Stderr (journald under systemd)
}

// Output is the log destination; for a file it can be reopened after logrotate
// has moved it away (SIGHUP), so no copytruncate is needed.
type Output struct {
	mu   sync.Mutex
	path string
	w    io.Writer
	f    *os.File
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.w.Write(p)
}

// Reopen opens the log file anew and closes the old one. It does nothing when
// logging to stderr.
func (o *Output) Reopen() error {
	if o.path == "" {
		return nil
	}
	f, err := openLog(o.path)
	if err != nil {
		return err
	}
	o.mu.Lock()
	old := o.f
	o.f, o.w = f, f
	o.mu.Unlock()
	return old.Close()
}

// Close closes the log file, if any.
func (o *Output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return nil
	}
	o.w = io.Discard
	return o.f.Close()
}

func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// Setup builds the root logger and its output.
func Setup(opts Options) (hclog.Logger, *Output, error) {
	out := &Output{w: opts.Stderr}
	if out.w == nil {
		out.w = os.Stderr
	}
	if opts.File != "" {
		f, err := openLog(opts.File)
		if err != nil {
			return nil, nil, err
		}
		out.path, out.f, out.w = opts.File, f, f
	}
	level := hclog.LevelFromString(opts.Level)
	if level == hclog.NoLevel {
		return nil, nil, fmt.Errorf("unknown log level %q", opts.Level)
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       opts.Name,
		Level:      level,
		Output:     out,
		JSONFormat: opts.JSON,
		// Timestamps with milliseconds: drops and reconnects come in bursts.
		TimeFormat: "2006-01-02T15:04:05.000Z0700",
	})
	return logger, out, nil
}
