// Package version holds the build version, set at link time by the Makefile and the spec.
package version

// Version is set with -ldflags "-X .../internal/version.Version=..." from
// the spec's Version: (the one place the number is written); "dev" marks a
// plain `go build`.
var Version = "dev"
