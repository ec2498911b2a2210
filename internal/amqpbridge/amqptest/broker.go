// Package amqptest runs a real RabbitMQ node (Debian's rabbitmq-server) for
// tests, as a plain process with its own directory, ports and epmd, and gives
// tests AMQP helpers to declare, consume and count what arrives on it.
package amqptest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-infra/fedmsg-relay/internal/testutil"
)

const (
	rabbitmqBin = "/usr/lib/rabbitmq/bin/"
	epmdBin     = "/usr/bin/epmd"
)

// Options adapt the node to a package's tests.
type Options struct {
	// Plugins are enabled at boot (e.g. rabbitmq_auth_mechanism_ssl). None by
	// default: a faster start, and no management listener port to collide.
	Plugins []string
	// Prepare runs once before the first start. It may write files into the
	// broker's Dir (certificates, definitions) and returns extra lines for
	// rabbitmq.conf, e.g. a TLS listener on TLSPort.
	Prepare func(b *Broker) (conf string, err error)
}

// Broker is a real RabbitMQ node run by the test binary as user rabbitmq.
// Stopping and starting it again keeps its node name and mnesia dir, so
// durable exchanges, queues and persistent messages survive a Restart.
type Broker struct {
	dir                                   string
	node                                  string
	amqpPort, tlsPort, distPort, epmdPort int
	uid, gid                              uint32
	env                                   []string
	epmd                                  *exec.Cmd
	server                                *exec.Cmd
	serverDone                            chan struct{}
}

// Start prepares and boots a node and waits until it accepts connections.
// It fails when rabbitmq-server is not installed or the process is not root
// (the node runs as user rabbitmq). Call Shutdown when done.
func Start(opts Options) (*Broker, error) {
	for _, bin := range []string{rabbitmqBin + "rabbitmq-server", rabbitmqBin + "rabbitmqctl", epmdBin} {
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("%s missing (Debian package rabbitmq-server): %w", bin, err)
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("starting rabbitmq-server as user rabbitmq needs root")
	}
	u, err := user.Lookup("rabbitmq")
	if err != nil {
		return nil, fmt.Errorf("user rabbitmq: %w", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "amqptest-rabbitmq-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	b := &Broker{
		dir:      dir,
		node:     fmt.Sprintf("rabbit-test-%d@localhost", os.Getpid()),
		amqpPort: ports[0], distPort: ports[1], epmdPort: ports[2], tlsPort: ports[3],
		uid: uint32(uid), gid: uint32(gid),
	}
	if err := b.prepare(opts); err != nil {
		b.Shutdown()
		return nil, err
	}
	if err := b.start(); err != nil {
		b.Shutdown()
		return nil, err
	}
	return b, nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Dir is the broker's private directory (owned by user rabbitmq).
func (b *Broker) Dir() string { return b.dir }

// AMQPPort is the plain AMQP listener on 127.0.0.1.
func (b *Broker) AMQPPort() int { return b.amqpPort }

// TLSPort is a free port reserved for a TLS listener that Options.Prepare may configure.
func (b *Broker) TLSPort() int { return b.tlsPort }

// URL is the guest login to the default vhost.
func (b *Broker) URL() string {
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", b.amqpPort)
}

func (b *Broker) prepare(opts Options) error {
	for _, d := range []string{"mnesia", "log", "home"} {
		if err := os.Mkdir(filepath.Join(b.dir, d), 0o750); err != nil {
			return fmt.Errorf("broker dir: %w", err)
		}
	}
	conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\nloopback_users = none\n", b.amqpPort)
	if opts.Prepare != nil {
		extra, err := opts.Prepare(b)
		if err != nil {
			return fmt.Errorf("prepare broker: %w", err)
		}
		conf += extra
	}
	plugins := "[" + strings.Join(opts.Plugins, ",") + "].\n"
	for name, content := range map[string]string{"rabbitmq.conf": conf, "enabled_plugins": plugins} {
		if err := os.WriteFile(filepath.Join(b.dir, name), []byte(content), 0o640); err != nil {
			return fmt.Errorf("broker file: %w", err)
		}
	}
	if err := filepath.Walk(b.dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(path, int(b.uid), int(b.gid))
	}); err != nil {
		return fmt.Errorf("chown broker dir: %w", err)
	}
	b.env = append(os.Environ(),
		"HOME="+filepath.Join(b.dir, "home"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(b.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(b.dir, "log"),
		"RABBITMQ_NODENAME="+b.node,
		"RABBITMQ_NODE_PORT="+strconv.Itoa(b.amqpPort),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(b.distPort),
		"ERL_EPMD_PORT="+strconv.Itoa(b.epmdPort),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(b.dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(b.dir, "enabled_plugins"),
		// No scheduler busy-waiting: CI machines and test runs share few cores.
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=+sbwt none +sbwtdcpu none +sbwtdio none",
	)
	// Our own epmd on a private port: erl would otherwise start a daemon that outlives us.
	b.epmd = b.command(epmdBin, "-port", strconv.Itoa(b.epmdPort))
	if err := b.epmd.Start(); err != nil {
		return fmt.Errorf("start epmd: %w", err)
	}
	return nil
}

// command runs as user rabbitmq in its own process group, and is sent SIGTERM
// if the test binary dies first.
func (b *Broker) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = b.dir
	cmd.Env = b.env
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: b.uid, Gid: b.gid},
		Setpgid:    true,
		Pdeathsig:  syscall.SIGTERM,
	}
	return cmd
}

// start starts the node and waits until it accepts connections.
func (b *Broker) start() error {
	out, err := os.OpenFile(filepath.Join(b.dir, "server.out"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("server output: %w", err)
	}
	defer out.Close()
	b.server = b.command(rabbitmqBin + "rabbitmq-server")
	b.server.Stdout, b.server.Stderr = out, out
	if err := b.server.Start(); err != nil {
		return fmt.Errorf("start rabbitmq-server: %w", err)
	}
	b.serverDone = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(b.server, b.serverDone)
	// await_startup fails at once while the node is not yet registered with
	// epmd, so first wait for the AMQP listener, which opens late in the boot.
	if err := b.awaitListener(60 * time.Second); err != nil {
		return err
	}
	await := b.command(rabbitmqBin+"rabbitmqctl", "-n", b.node, "await_startup", "--timeout", "60")
	if msg, err := await.CombinedOutput(); err != nil {
		return fmt.Errorf("rabbitmqctl await_startup: %w: %s\n%s", err, msg, b.serverOutput())
	}
	return nil
}

func (b *Broker) awaitListener(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.amqpPort), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-b.serverDone:
			return fmt.Errorf("rabbitmq-server exited during startup\n%s", b.serverOutput())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rabbitmq-server not listening on port %d after %s\n%s", b.amqpPort, timeout, b.serverOutput())
		}
	}
}

func (b *Broker) serverOutput() string {
	out, _ := os.ReadFile(filepath.Join(b.dir, "server.out"))
	return "server output:\n" + string(out)
}

// stop stops the node by its pid (the rabbitmq-server script stops erl on SIGTERM).
func (b *Broker) stop() error {
	if b.server == nil {
		return nil
	}
	defer func() { b.server = nil }()
	if err := b.server.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal rabbitmq-server: %w", err)
	}
	select {
	case <-b.serverDone:
		return nil
	case <-time.After(30 * time.Second):
		// Kill the whole process group we created (the script and its erl).
		syscall.Kill(-b.server.Process.Pid, syscall.SIGKILL)
		<-b.serverDone
		return errors.New("rabbitmq-server did not stop within 30s; killed")
	}
}

// Shutdown stops the node and epmd and removes the broker's directory.
func (b *Broker) Shutdown() {
	b.stop()
	if b.epmd != nil && b.epmd.Process != nil {
		b.epmd.Process.Kill()
		b.epmd.Wait()
	}
	os.RemoveAll(b.dir)
}

// Restart stops the node, keeps it down for downtime, and starts it again.
func (b *Broker) Restart(tb testing.TB, downtime time.Duration) {
	tb.Helper()
	start := time.Now()
	if err := b.stop(); err != nil {
		tb.Fatal(err)
	}
	stopped := time.Now()
	time.Sleep(downtime)
	if err := b.start(); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("broker restart: stop %s, down %s, start %s", stopped.Sub(start).Round(time.Millisecond), downtime, time.Since(stopped.Add(downtime)).Round(time.Millisecond))
}

// CPUSeconds is the CPU time the running node has used so far.
func (b *Broker) CPUSeconds() (float64, error) {
	if b.server == nil {
		return 0, errors.New("the broker is not running")
	}
	return testutil.GroupCPUSeconds(b.server.Process.Pid)
}

// Ctl runs rabbitmqctl against the node.
func (b *Broker) Ctl(tb testing.TB, args ...string) {
	tb.Helper()
	cmd := b.command(rabbitmqBin+"rabbitmqctl", append([]string{"-n", b.node}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("rabbitmqctl %v: %v: %s", args, err, out)
	}
}

// Freeze stops (SIGSTOP) or resumes (SIGCONT) the node's whole process group:
// a broker that hangs instead of closing its connections.
func (b *Broker) Freeze(tb testing.TB, stop bool) {
	tb.Helper()
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	if err := syscall.Kill(-b.server.Process.Pid, sig); err != nil {
		tb.Fatalf("signal %v to the broker: %v", sig, err)
	}
}

// DeadURL points at a port nothing listens on: a broker that is down.
func DeadURL(tb testing.TB) string {
	tb.Helper()
	ports, err := freePorts(1)
	if err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", ports[0])
}
