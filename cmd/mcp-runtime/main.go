// Command mcp-runtime runs in front of an MCP server and enforces TLS, the Origin allowlist,
// authentication, rate limits, JSON-RPC and tool-argument validation, and audit.
//
//	mcp-runtime serve --config FILE [-- COMMAND ARGS...]
//	mcp-runtime install DIR
//	mcp-runtime token --server NAME [-n NAMESPACE] [--ttl 10m] [--subject SUB] [--scopes A,B]
//	mcp-runtime version
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/logbatch"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/procs"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/server"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/sysmon"
	"github.com/mcpfleet/mcp-fleet-operator/internal/version"
)

const usage = `mcp-runtime secures an MCP server.

Usage:
  mcp-runtime serve --config FILE [--drain-timeout 20s] [-- COMMAND ARGS...]
      Serve MCP clients and relay to the upstream: a stdio server started as
      COMMAND ARGS (or upstream.command), or the HTTP server at upstream.url.
  mcp-runtime install DIR
      Copy this executable to DIR/mcp-runtime (for an init container).
  mcp-runtime token --server NAME [-n NAMESPACE] [--ttl 10m] [--subject SUB] [--scopes A,B]
                    [--kubeconfig FILE] [--context CTX]
      Print a short-lived token for an MCPServer that trusts the operator-generated
      issuer, signed with the key in its auth Secret (read with your kubeconfig).
  mcp-runtime version
      Print the version.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		_, _ = fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "install":
		if len(args) != 2 {
			_, _ = fmt.Fprint(stderr, "usage: mcp-runtime install DIR\n")
			return 2
		}
		dst, err := install(args[1])
		if err != nil {
			_, _ = fmt.Fprintf(stderr, "mcp-runtime install: %v\n", err)
			return 1
		}
		_, _ = fmt.Fprintf(stdout, "installed %s\n", dst)
		return 0
	case "token":
		return token(args[1:], stdout, stderr)
	case "version", "--version":
		_, _ = fmt.Fprintln(stdout, version.Version)
		return 0
	case "help", "-h", "--help":
		_, _ = fmt.Fprint(stdout, usage)
		return 0
	default:
		_, _ = fmt.Fprintf(stderr, "mcp-runtime: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", "", "runtime configuration file (YAML or JSON)")
	drain := fs.Duration("drain-timeout", 20*time.Second, "how long in-flight requests may finish at shutdown")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgFile == "" {
		_, _ = fmt.Fprint(stderr, "mcp-runtime serve: --config is required\n")
		return 2
	}
	log, logOut := logbatch.NewJSONLogger(stderr)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = logOut.Close(ctx) // the last lines; a stuck stderr cannot hold the exit
	}()
	slog.SetDefault(log)
	cfg, err := config.Load(*cfgFile)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "mcp-runtime serve: invalid configuration %s:\n%v\n", *cfgFile, err)
		return 1
	}
	// Before anything is started: when the runtime's own GODEBUG differs from the one it was
	// given (the keepSchedulerAwake setting added, http2debug removed), this process is
	// replaced by the same command with it, which reads the configuration again.
	if err := sysmon.Apply(cfg.Tuning.KeepSchedulerAwake); err != nil {
		log.Warn("Could not re-execute with the runtime's own GODEBUG (tuning.keepSchedulerAwake, no http2debug)", "error", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	procs.Start(ctx, log, cfg.Tuning.StaticProcs)
	srv, err := server.Build(ctx, cfg, server.Options{Command: fs.Args(), Logger: log, LogOutput: logOut, DrainTimeout: *drain})
	if err != nil {
		log.Error("Cannot start", "error", err)
		return 1
	}
	ln, healthLn, err := srv.Listen()
	if err != nil {
		log.Error("Cannot listen", "error", err)
		return 1
	}
	up := srv.Upstream()
	if err := up.Start(ctx); err != nil {
		log.Error("Cannot start the upstream", "error", err)
		_, _ = ln.Close(), healthLn.Close()
		return 1
	}
	log.Info("mcp-runtime started", "version", version.Version, "config", *cfgFile)
	serveErr := srv.Serve(ctx, ln, healthLn)

	// The upstream gets its own grace after the clients drained.
	closeCtx, cancel := context.WithTimeout(context.Background(), cfg.Upstream.ShutdownGrace.Duration+5*time.Second)
	defer cancel()
	if err := srv.Close(closeCtx); err != nil {
		log.Warn("Upstream or audit log did not stop cleanly", "error", err)
	}
	if serveErr != nil {
		log.Error("Server failed", "error", serveErr)
		return 1
	}
	log.Info("mcp-runtime stopped")
	return 0
}

// install copies the running executable to dir/mcp-runtime, mode 0755, atomically (write a
// temporary file in dir, then rename), so a half-copied binary is never executed.
func install(dir string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding this executable: %w", err)
	}
	src, err := os.Open(self)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", self, err)
	}
	defer func() { _ = src.Close() }()
	tmp, err := os.CreateTemp(dir, ".mcp-runtime-*")
	if err != nil {
		return "", fmt.Errorf("creating a file in %s: %w", dir, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // no-op after the rename
	if _, err := io.Copy(tmp, src); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("copying to %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("setting the mode of %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("syncing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}
	dst := filepath.Join(dir, "mcp-runtime")
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("installing %s: %w", dst, err)
	}
	return dst, nil
}
