package amqpbridge

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// testBroker is a real RabbitMQ node run by the test binary as a plain process
// (user rabbitmq, private mnesia/log dirs, free ports, its own epmd), shared by
// every test of the package. Stopping and starting it again keeps its node
// name and mnesia dir, so durable queues and persistent messages survive.
type testBroker struct {
	dir                                 string
	node                                string
	amqpPort, tlsPort, distPort, epmdPt int
	uid, gid                            uint32
	env                                 []string
	epmd                                *exec.Cmd
	server                              *exec.Cmd
	serverDone                          chan struct{}
}

var (
	broker    *testBroker
	brokerErr error // why there is no broker
)

func TestMain(m *testing.M) {
	flag.Parse()
	if fuzzing() {
		// Fuzzing needs no broker, and each fuzz worker process runs TestMain.
		os.Exit(m.Run())
	}
	broker, brokerErr = startTestBroker()
	code := m.Run()
	if broker != nil {
		broker.shutdown()
	}
	os.Exit(code)
}

func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}

// requireBroker skips the test when RabbitMQ is not available, except under
// CI=true, where a missing broker is a failure.
func requireBroker(t testing.TB) *testBroker {
	t.Helper()
	if broker != nil {
		return broker
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("RabbitMQ broker unavailable (CI=true): %v", brokerErr)
	}
	t.Skipf("RabbitMQ broker unavailable: %v", brokerErr)
	return nil
}

const (
	rabbitmqBin = "/usr/lib/rabbitmq/bin/"
	epmdBin     = "/usr/bin/epmd"
)

func startTestBroker() (*testBroker, error) {
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
	dir, err := os.MkdirTemp("", "amqpbridge-rabbitmq-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	b := &testBroker{
		dir:      dir,
		node:     fmt.Sprintf("rabbit-test-%d@localhost", os.Getpid()),
		amqpPort: ports[0], distPort: ports[1], epmdPt: ports[2], tlsPort: ports[3],
		uid: uint32(uid), gid: uint32(gid),
	}
	if err := b.prepare(); err != nil {
		b.shutdown()
		return nil, err
	}
	if err := b.start(); err != nil {
		b.shutdown()
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

func (b *testBroker) prepare() error {
	for _, d := range []string{"mnesia", "log", "home"} {
		if err := os.Mkdir(filepath.Join(b.dir, d), 0o750); err != nil {
			return fmt.Errorf("broker dir: %w", err)
		}
	}
	if err := writeTestPKI(b.dir); err != nil {
		return fmt.Errorf("test certificates: %w", err)
	}
	definitions, err := brokerDefinitions()
	if err != nil {
		return fmt.Errorf("broker definitions: %w", err)
	}
	conf := fmt.Sprintf(`listeners.tcp.default = 127.0.0.1:%d
listeners.ssl.default = 127.0.0.1:%d
loopback_users = none
load_definitions = %[3]s/definitions.json
ssl_options.cacertfile = %[3]s/ca.crt
ssl_options.certfile = %[3]s/server.crt
ssl_options.keyfile = %[3]s/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
ssl_cert_login_from = common_name
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = EXTERNAL
`, b.amqpPort, b.tlsPort, b.dir)
	files := map[string]string{
		"rabbitmq.conf":    conf,
		"definitions.json": string(definitions),
		// Only SASL EXTERNAL: a faster start, and no management listener port to collide.
		"enabled_plugins": "[rabbitmq_auth_mechanism_ssl].\n",
	}
	for name, content := range files {
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
		"ERL_EPMD_PORT="+strconv.Itoa(b.epmdPt),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(b.dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(b.dir, "enabled_plugins"),
		// No scheduler busy-waiting: CI machines and test runs share few cores.
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=+sbwt none +sbwtdcpu none +sbwtdio none",
	)
	// Our own epmd on a private port: erl would otherwise start a daemon that outlives us.
	b.epmd = b.command(epmdBin, "-port", strconv.Itoa(b.epmdPt))
	if err := b.epmd.Start(); err != nil {
		return fmt.Errorf("start epmd: %w", err)
	}
	return nil
}

// command runs as user rabbitmq in its own process group, and is sent SIGTERM
// if the test binary dies first.
func (b *testBroker) command(name string, args ...string) *exec.Cmd {
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
func (b *testBroker) start() error {
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

func (b *testBroker) awaitListener(timeout time.Duration) error {
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

func (b *testBroker) serverOutput() string {
	out, _ := os.ReadFile(filepath.Join(b.dir, "server.out"))
	return "server output:\n" + string(out)
}

// stop stops the node by its pid (the rabbitmq-server script stops erl on SIGTERM).
func (b *testBroker) stop() error {
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

// ctl runs rabbitmqctl against the node.
func (b *testBroker) ctl(t testing.TB, args ...string) {
	t.Helper()
	cmd := b.command(rabbitmqBin+"rabbitmqctl", append([]string{"-n", b.node}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl %v: %v: %s", args, err, out)
	}
}

// freeze stops (SIGSTOP) or resumes (SIGCONT) the node's whole process group.
func (b *testBroker) freeze(t testing.TB, stop bool) {
	t.Helper()
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	if err := syscall.Kill(-b.server.Process.Pid, sig); err != nil {
		t.Fatalf("signal %v to the broker: %v", sig, err)
	}
}

func (b *testBroker) shutdown() {
	b.stop()
	if b.epmd != nil && b.epmd.Process != nil {
		b.epmd.Process.Kill()
		b.epmd.Wait()
	}
	os.RemoveAll(b.dir)
}

func (b *testBroker) url() string {
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", b.amqpPort)
}

// restart stops the node, keeps it down for downtime, and starts it again.
func (b *testBroker) restart(t testing.TB, downtime time.Duration) {
	t.Helper()
	start := time.Now()
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	time.Sleep(downtime)
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("broker restart: stop %s, down %s, start %s", stopped.Sub(start).Round(time.Millisecond), downtime, time.Since(stopped.Add(downtime)).Round(time.Millisecond))
}

// deadURL points at a port nothing listens on: a broker that is down.
func deadURL(t testing.TB) string {
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", ports[0])
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
