package fedmsgconf

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

//go:embed evaluate.py
var evaluateScript string

const (
	// pythonTimeout bounds a config that loops, blocks or sleeps.
	pythonTimeout = 10 * time.Second
	// maxResultBytes bounds the JSON the evaluator may write.
	maxResultBytes = 32 << 20
)

// findPython returns the host's interpreter: /usr/bin/python3, else
// python3 on PATH.
func findPython() (string, error) {
	const system = "/usr/bin/python3"
	if st, err := os.Stat(system); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return system, nil
	}
	path, err := exec.LookPath("python3")
	if err != nil {
		return "", errors.New("no python3 found (/usr/bin/python3 or on PATH)")
	}
	return path, nil
}

// evaluator runs the embedded evaluate.py with python.
type evaluator struct {
	python  string
	timeout time.Duration
}

// evalResult is what evaluate.py writes to fd 3.
type evalResult struct {
	Config map[string]any `json:"config"`
	Error  *struct {
		File    string `json:"file"`
		Line    int    `json:"line"`
		Message string `json:"message"`
	} `json:"error"`
}

// eval execs files as fedmsg does and returns the merged config. location
// names the whole set in errors that belong to no single file.
func (e evaluator) eval(location string, files []string) (Config, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("evaluate %s: %w", location, err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	args := append([]string{"-I", "-B", "-c", evaluateScript, strconv.Itoa(maxValues)}, files...)
	cmd := exec.CommandContext(ctx, e.python, args...)
	cmd.ExtraFiles = []*os.File{w} // fd 3
	// Its own process group, so that children the config code started die
	// with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("evaluate %s: %w", location, err)
	}
	// The result is read as one JSON document, not to EOF: a child the config
	// code started may hold the pipe open after Python exits. The deadline
	// bounds the read when no result comes.
	_ = r.SetReadDeadline(time.Now().Add(e.timeout))
	limited := &io.LimitedReader{R: r, N: maxResultBytes + 1}
	dec := json.NewDecoder(limited)
	dec.UseNumber()
	var res evalResult
	readErr := dec.Decode(&res)
	if readErr != nil {
		cancel()
	}
	waitErr := cmd.Wait()
	switch {
	case errors.Is(readErr, os.ErrDeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("evaluate %s with %s: no result within %v", location, e.python, e.timeout)
	case limited.N <= 0:
		return nil, fmt.Errorf("evaluate %s: result larger than %d bytes", location, maxResultBytes)
	case readErr == io.EOF:
		// Python failed before the script ran, or the config code ended
		// the process itself; its stderr is the config's, not repeated here.
		return nil, fmt.Errorf("evaluate %s with %s: no result (%v)", location, e.python, waitErr)
	case readErr != nil:
		return nil, fmt.Errorf("evaluate %s: unreadable result: %w", location, readErr)
	}
	return res.config(location)
}

// config returns the merged config, or the evaluator's error.
func (res evalResult) config(location string) (Config, error) {
	if res.Error != nil {
		file := res.Error.File
		if file == "" {
			file = location
		}
		return nil, fileError(file, res.Error.Line, res.Error.Message)
	}
	if res.Config == nil {
		return nil, fmt.Errorf("evaluate %s: result holds no config", location)
	}
	cfg, err := fromJSON(res.Config)
	if err != nil {
		return nil, fmt.Errorf("evaluate %s: %w", location, err)
	}
	return cfg.(map[string]any), nil
}

// fromJSON gives numbers the literal parser's types: int64 for Python ints,
// float64 for floats (which Python's json always writes with "." or "e").
func fromJSON(v any) (any, error) {
	switch c := v.(type) {
	case json.Number:
		if !strings.ContainsAny(string(c), ".eE") {
			return c.Int64()
		}
		return c.Float64()
	case map[string]any:
		for k, e := range c {
			conv, err := fromJSON(e)
			if err != nil {
				return nil, err
			}
			c[k] = conv
		}
	case []any:
		for i, e := range c {
			conv, err := fromJSON(e)
			if err != nil {
				return nil, err
			}
			c[i] = conv
		}
	}
	return v, nil
}
