// Command benchoperator measures the manager at scale: N MCPServers created against a real
// kube-apiserver and etcd (envtest binaries) with bin/manager running as its own process,
// as in a cluster. For each scenario it prints the time until every server has all its
// children, the time until every status is settled, the manager's API writes to converge
// (counted in the apiserver's audit log and on the manager's own /metrics), the writes in a
// quiet window after convergence, and the manager's peak RSS and CPU time.
//
// It is a benchmark, not a test: it exits 0 whether the targets are met or not, and
// non-zero only when it cannot run. `make bench-operator` (N=100, QUIET=60s) runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

type options struct {
	n            int
	quiet        time.Duration
	settle       time.Duration
	phaseTimeout time.Duration
	assets       string
	manager      string
	scenarios    []string
	keep         bool
	creators     int
}

func main() {
	var o options
	var scenarios string
	flag.IntVar(&o.n, "n", 100, "Number of MCPServers.")
	flag.DurationVar(&o.quiet, "quiet", 60*time.Second, "Length of the quiet window after convergence.")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "Convergence means no manager write for this long after every status settled.")
	flag.DurationVar(&o.phaseTimeout, "timeout", 10*time.Minute, "Upper bound on each scenario's convergence.")
	flag.StringVar(&o.assets, "assets", os.Getenv("KUBEBUILDER_ASSETS"), "Directory with etcd and kube-apiserver (default $KUBEBUILDER_ASSETS; `make envtest` prints it).")
	flag.StringVar(&o.manager, "manager", "", "Manager binary (default: built from ./cmd/manager into the work directory).")
	flag.StringVar(&scenarios, "scenarios", "well,podsdown,nocertmanager", "Comma-separated scenarios to run: "+scenarioIDs())
	flag.BoolVar(&o.keep, "keep", false, "Keep the work directory (audit logs, manager logs).")
	flag.IntVar(&o.creators, "creators", 8, "Concurrent clients creating the servers.")
	flag.Parse()
	// The harness's own client libraries stay quiet; the manager logs to its own file.
	ctrllog.SetLogger(logr.Discard())
	o.scenarios = strings.Split(scenarios, ",")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench-operator:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, out io.Writer) error {
	if o.n < 1 || o.quiet < 0 || o.creators < 1 {
		return errors.New("-n and -creators must be positive and -quiet not negative")
	}
	if o.assets == "" {
		return errors.New("no envtest binaries: pass -assets or set KUBEBUILDER_ASSETS (`make bench-operator` does it)")
	}
	var selected []scenario
	for _, id := range o.scenarios {
		s, ok := findScenario(strings.TrimSpace(id))
		if !ok {
			return fmt.Errorf("unknown scenario %q (known: %s)", id, scenarioIDs())
		}
		selected = append(selected, s)
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "bench-operator-")
	if err != nil {
		return err
	}
	if o.keep {
		say(out, "work directory (kept): %s\n", work)
	} else {
		defer func() { _ = os.RemoveAll(work) }()
	}
	if o.manager == "" {
		o.manager = filepath.Join(work, "manager")
		say(out, "building %s\n", o.manager)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", o.manager, "./cmd/manager")
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building the manager: %w", err)
		}
	}

	say(out, "bench-operator: N=%d, quiet window %s, %d CPUs, load average %s, manager %s\n",
		o.n, o.quiet, numCPU(), loadAverage(), o.manager)
	var results []result
	for i, s := range selected {
		dir := filepath.Join(work, s.id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		say(out, "\n[%d/%d] %s: %s\n", i+1, len(selected), s.id, s.title)
		r, err := runScenario(ctx, o, s, root, dir, out)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", s.id, err)
		}
		results = append(results, r)
		printResult(out, o, r)
	}
	printSummary(out, o, results)
	return nil
}
