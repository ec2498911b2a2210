// Command fedmsg-relay is the fedmsg bus relay: short-lived producers connect
// PUB sockets to its inbound SUB socket, and every listener connects to its
// outbound PUB socket. Installed as fedmsg-signing-relay it signs what it
// publishes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/config"
	"github.com/fedora-infra/fedmsg-relay/internal/logging"
	"github.com/fedora-infra/fedmsg-relay/internal/membudget"
	"github.com/fedora-infra/fedmsg-relay/internal/metrics"
	"github.com/fedora-infra/fedmsg-relay/internal/relay"
	"github.com/fedora-infra/fedmsg-relay/internal/sdnotify"
	"github.com/fedora-infra/fedmsg-relay/internal/version"
)

const signingName = "fedmsg-signing-relay"

func main() {
	os.Exit(run())
}

func run() int {
	name := filepath.Base(os.Args[0])
	flags := flag.NewFlagSet(name, flag.ContinueOnError)
	configPath := flags.String("config", config.DefaultPath, `configuration file (YAML); "" for the built-in loopback defaults`)
	checkOnly := flags.Bool("check-config", false, "validate the configuration, print any problems and exit")
	sign := flags.Bool("sign", name == signingName, "sign every message published (fedmsg X.509); implied by the name "+signingName)
	showVersion := flags.Bool("version", false, "print the version and exit")
	if err := flags.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Printf("%s %s\n", name, version.Version)
		return 0
	}

	cfg, err := loadConfig(*configPath, flags)
	if err == nil && *sign {
		cfg.SignMessages = true
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: invalid configuration:\n%v\n", name, err)
		return 1
	}
	if *checkOnly {
		for _, w := range cfg.Warnings() {
			fmt.Fprintf(os.Stderr, "%s: warning: %v\n", name, w)
		}
		fmt.Printf("%s: configuration ok\n", describeSource(cfg))
		return 0
	}

	log, logOut, err := logging.Setup(logging.Options{
		Name: "fedmsg-relay", Level: cfg.LogLevel, JSON: cfg.LogFormat == "json", File: cfg.LogFile,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	defer logOut.Close()
	if err := serve(cfg, log, logOut); err != nil {
		log.Error("relay failed", "error", err)
		return 1
	}
	return 0
}

// loadConfig reads path. A missing file at the default path is not an error:
// the relay then serves the built-in loopback defaults, so that a first run
// needs neither root nor a file.
func loadConfig(path string, flags *flag.FlagSet) (*config.Config, error) {
	explicit := false
	flags.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	cfg, err := config.Load(path)
	if !explicit && errors.Is(err, os.ErrNotExist) {
		return config.Load("")
	}
	return cfg, err
}

func describeSource(cfg *config.Config) string {
	if cfg.Path == "" {
		return "built-in defaults"
	}
	return cfg.Path
}

func serve(cfg *config.Config, log hclog.Logger, logOut *logging.Output) error {
	log.Info("starting", "version", version.Version, "config", describeSource(cfg), "pid", os.Getpid())
	for _, w := range cfg.Warnings() {
		log.Warn("configuration", "warning", w.Error())
	}
	setMemoryLimit(cfg, log)
	reg := metrics.NewRegistry()
	reg.GaugeFunc("fedmsg_relay_build_info", "Build information.", func() float64 { return 1 }, "version", version.Version)
	start := time.Now()
	reg.GaugeFunc("fedmsg_relay_start_time_seconds", "Start time of the process since the Unix epoch.",
		func() float64 { return float64(start.Unix()) })

	opts := relayOptions(cfg)
	inherited, err := inheritedSockets(cfg, log)
	if err != nil {
		return fmt.Errorf("socket activation: %w", err)
	}
	opts.Inherited = inherited
	opts.Resume = resumeOptions(cfg, log)
	opts.Budget = membudget.New(cfg.BufferBytes)
	registerBudget(reg, opts.Budget)
	r, err := relay.New(opts, log.Named(logging.NameRelay), reg)
	if err != nil {
		return err
	}
	defer r.Close()
	keys, stopKeys, err := startKeys(cfg, r, log, reg)
	if err != nil {
		return err
	}
	defer stopKeys()
	stopInject := func() {}
	if cfg.AMQP.Enabled() {
		var stopBridge func()
		stopInject, stopBridge, err = startBridge(&cfg.AMQP, opts.Budget, r, log.Named(logging.NameAMQP), reg)
		if err != nil {
			return err
		}
		defer stopBridge()
	}
	if cfg.MonitoringEndpoint != "" {
		mon, err := r.StartMonitoring(log.Named(logging.NameMonitoring))
		if err != nil {
			return err
		}
		defer mon.Stop()
	}
	if cfg.MetricsAddress != "" {
		mlog := log.Named(logging.NameMetrics)
		healthy := func() error {
			if !r.Alive(5 * time.Second) {
				return errors.New("forwarding loop is not turning")
			}
			return nil
		}
		srv, err := metrics.Listen(cfg.MetricsAddress, metrics.Handler(reg, healthy), func(err error) { mlog.Error("serve", "error", err) })
		if err != nil {
			return err
		}
		defer srv.Close()
		mlog.Info("serving /metrics and /healthz", "address", srv.Addr.String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	notify(log, sdnotify.Ready)
	stopWatchdog := startWatchdog(r, log)
	defer stopWatchdog()

	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	for {
		select {
		case err := <-done:
			return err // the loop failed on its own
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				reload(cfg, keys, log, logOut)
				continue
			}
			log.Info("shutting down", "signal", sig.String(), "drain_timeout", cfg.DrainTimeout)
			notify(log, sdnotify.Stopping)
			stopInject() // nothing is acknowledged to RabbitMQ after the drain
			cancel()
			if err := <-done; err != nil {
				return err
			}
			return saveSubscriptions(cfg, r.Subscriptions())
		}
	}
}

// registerBudget exports the one byte budget: its limit and what inbound,
// confirm, the subscribers' queues and the bridge's hand-off hold of it.
func registerBudget(reg *metrics.Registry, b *membudget.Budget) {
	reg.GaugeFunc("fedmsg_relay_buffer_bytes", "The byte budget for everything the relay queues (buffer_bytes).",
		func() float64 { return float64(b.Limit()) })
	reg.GaugeFunc("fedmsg_relay_buffer_used_bytes", "Bytes of the budget held now (producers' messages, confirm requests, subscribers' queues, the bridge's hand-off).",
		func() float64 { return float64(b.Used()) })
}

// reload is SIGHUP's one job: reopen the log file (after logrotate) and
// reload key material.
func reload(cfg *config.Config, k *keys, log hclog.Logger, logOut *logging.Output) {
	if err := logOut.Reopen(); err != nil {
		log.Error("reopen log file", "error", err)
	}
	if err := k.load(context.Background()); err != nil {
		log.Error("reload keys; keeping the old ones", "error", err)
	}
	log.Info("reloaded", "log_file", cfg.LogFile)
}

func notify(log hclog.Logger, state string) {
	if err := sdnotify.Notify(state); err != nil {
		log.Warn("systemd notify", "error", err)
	}
}

// startWatchdog pings systemd while the forwarding loop turns, so a wedged
// relay gets restarted.
func startWatchdog(r *relay.Relay, log hclog.Logger) (stop func()) {
	interval := sdnotify.WatchdogInterval()
	if interval == 0 {
		return func() {}
	}
	quit := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if r.Alive(interval) {
					notify(log, sdnotify.Watchdog)
				} else {
					log.Warn("forwarding loop stalled: not pinging the watchdog")
				}
			}
		}
	}()
	return func() { close(quit) }
}

// memoryHeadroom is what the Go heap holds besides the byte budget: the
// forwarding batch, signing buffers, the spool's reader, metrics.
const memoryHeadroom = 32 << 20

// setMemoryLimit makes the Go heap collect harder as it nears buffer_bytes
// plus headroom, so that peers filling the budget cannot also double it
// through GC slack (GOGC=100). Measured with test/hostile: RSS grew by up
// to 68 MiB without it, 39-44 MiB with it. It is a soft limit: the heap may
// exceed it rather than fail. GOMEMLIMIT, when set, wins.
func setMemoryLimit(cfg *config.Config, log hclog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := cfg.BufferBytes + memoryHeadroom
	debug.SetMemoryLimit(limit)
	log.Debug("go heap soft limit", "bytes", limit)
}
