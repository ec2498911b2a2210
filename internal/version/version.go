// Package version holds the build version, set at link time by the Makefile and the spec.
package version

// Version is overridden with -ldflags "-X .../internal/version.Version=...".
var Version = "0.1.0-dev"
