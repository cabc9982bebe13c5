package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"

	"k8s.io/klog/v2"
)

// options are the launcher's flags. Everything else is cert-manager's own default.
type options struct {
	kubeconfig               string
	clusterResourceNamespace string
	leaderElect              bool
	leaderElectionNamespace  string
	metricsAddr              string
	healthAddr               string
	verbosity                int
}

// disabled is the bind address that turns a listener off (controller-runtime's convention).
const disabled = "0"

// parseFlags reads the flags; getenv supplies KUBECONFIG as the --kubeconfig default.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("cert-manager-local", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.kubeconfig, "kubeconfig", getenv("KUBECONFIG"),
		"kubeconfig of the cluster to run against (default $KUBECONFIG)")
	fs.StringVar(&o.clusterResourceNamespace, "cluster-resource-namespace", "cert-manager",
		"namespace holding the Secrets that ClusterIssuers refer to (a CA ClusterIssuer's key pair)")
	fs.BoolVar(&o.leaderElect, "leader-elect", false,
		"hold cert-manager's own Leases before running, so a second copy (or an in-cluster cert-manager) waits")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "kube-system",
		"namespace of the leader election Leases")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", disabled,
		"loopback host:port for the controllers' Prometheus /metrics, or 0 to disable")
	fs.StringVar(&o.healthAddr, "health-probe-bind-address", disabled,
		"loopback host:port for /livez, or 0 to disable")
	// cert-manager logs its normal messages at 2 (its chart's default).
	fs.IntVar(&o.verbosity, "v", 2, "log verbosity (cert-manager: 2 info, 4 debug)")

	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	}
	if o.kubeconfig == "" {
		return o, errors.New("--kubeconfig is required (or set KUBECONFIG): this launcher runs out of cluster")
	}
	if _, err := os.Stat(o.kubeconfig); err != nil {
		return o, fmt.Errorf("--kubeconfig: %w", err)
	}
	if o.clusterResourceNamespace == "" {
		return o, errors.New("--cluster-resource-namespace must not be empty")
	}
	if o.verbosity < 0 {
		return o, errors.New("-v must be 0 or more")
	}
	if o.leaderElect && o.leaderElectionNamespace == "" {
		return o, errors.New("--leader-election-namespace must not be empty with --leader-elect")
	}
	if err := checkLoopback("--metrics-bind-address", o.metricsAddr); err != nil {
		return o, err
	}
	if err := checkLoopback("--health-probe-bind-address", o.healthAddr); err != nil {
		return o, err
	}
	return o, nil
}

// checkLoopback keeps a developer machine's listeners off the network.
func checkLoopback(flagName, addr string) error {
	if addr == disabled {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: want host:port on a loopback address (e.g. 127.0.0.1:9402) or 0: %w", flagName, addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s %q: host must be a loopback address (127.0.0.1, ::1 or localhost), or use 0 to disable", flagName, addr)
	}
	return nil
}

// setVerbosity applies -v to klog, which cert-manager and controller-runtime both log through.
func setVerbosity(v int) error {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	return fs.Set("v", strconv.Itoa(v))
}
