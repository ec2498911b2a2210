package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/fedora-infra/fedmsg-relay/internal/activation"
	"github.com/fedora-infra/fedmsg-relay/internal/config"
	"github.com/fedora-infra/fedmsg-relay/internal/relay"
)

// inheritedSockets adopts what systemd's socket unit passed, matched to the
// configured endpoints; without socket activation it returns nil and the
// relay binds as usual.
func inheritedSockets(cfg *config.Config, log hclog.Logger) (map[string]int, error) {
	ls, err := activation.Listeners()
	if err != nil || len(ls) == 0 {
		return nil, err
	}
	endpoints := slices.Concat(cfg.RelayInbound, cfg.RelayOutbound, cfg.RelayInboundConfirm)
	m, err := activation.Match(context.Background(), ls, endpoints)
	if err != nil {
		return nil, err
	}
	for _, ep := range endpoints {
		if _, ok := m[ep]; !ok {
			log.Warn("socket activation: endpoint not in the socket unit, bound by the relay (connections to it are refused during a restart)", "endpoint", ep)
		}
	}
	return m, nil
}

// stateFile is where the subscription count survives a restart, or "".
func stateFile(cfg *config.Config) string {
	dir := cfg.StateDirectory
	if dir == "" {
		// systemd sets one path per StateDirectory= entry, colon-separated.
		dir, _, _ = strings.Cut(os.Getenv("STATE_DIRECTORY"), ":")
	}
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, "subscriptions")
}

// resumeOptions reads what the previous relay recorded at its stop. A
// missing file (first start) or a damaged one holds nothing.
func resumeOptions(cfg *config.Config, log hclog.Logger) relay.ResumeOptions {
	o := relay.ResumeOptions{Hold: cfg.ResumeHold}
	path := stateFile(cfg)
	if path == "" {
		return o
	}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return o
	}
	if err == nil {
		o.Subscriptions, err = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	if err != nil || o.Subscriptions < 0 {
		log.Warn("resume state unreadable: not holding for listeners", "file", path, "error", err)
		o.Subscriptions = 0
	}
	return o
}

// saveSubscriptions records, for the next start, how many subscriptions the
// listeners held when this relay stopped; written whole or not at all.
func saveSubscriptions(cfg *config.Config, n int) error {
	path := stateFile(cfg)
	if path == "" {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(n)+"\n"), 0o600); err != nil {
		return fmt.Errorf("record subscriptions: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("record subscriptions: %w", err)
	}
	return nil
}
