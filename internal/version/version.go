// Package version holds the build version, set with -ldflags at build time.
package version

// Version of the binary; "dev" when built without ldflags.
var Version = "dev"
