// Command cert-manager-local runs cert-manager's controllers out of cluster, in one process,
// against a kubeconfig: the certificate controllers, the Issuer/ClusterIssuer controllers,
// the CertificateRequest approver and SelfSigned/CA signers, and cainjector. Every controller
// is cert-manager's own (its pkg/controller registry and pkg/controller/cainjector), wired
// the way cert-manager's controller and cainjector binaries wire them; no cert-manager
// binary is published as a Go module, so this launcher is the project's own.
//
// The cert-manager CRDs must be installed first (hack/certmanager.sh crds).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
	ctrl "sigs.k8s.io/controller-runtime"
)

// shutdownTimeout bounds a graceful stop; cert-manager's workers finish their current item.
const shutdownTimeout = 30 * time.Second

func main() {
	opts, err := parseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager-local:", err)
		os.Exit(2)
	}
	if err := setVerbosity(opts.verbosity); err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager-local: -v:", err)
		os.Exit(2)
	}
	logf.InitLogs()
	defer logf.FlushLogs()
	ctrl.SetLogger(logf.Log.WithName("cainjector"))
	setAppVersion()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills at once
		time.Sleep(shutdownTimeout)
		logf.Log.Error(nil, "Shutdown did not finish in time, exiting", "timeout", shutdownTimeout)
		logf.FlushLogs()
		os.Exit(1)
	}()

	logf.Log.Info("Starting cert-manager-local", "version", util.AppVersion, "kubeconfig", opts.kubeconfig,
		"clusterResourceNamespace", opts.clusterResourceNamespace, "leaderElect", opts.leaderElect)
	if err := run(ctx, opts); err != nil {
		logf.Log.Error(err, "cert-manager-local failed")
		logf.FlushLogs()
		os.Exit(1)
	}
	logf.Log.Info("Stopped cleanly")
}

// setAppVersion stamps the cert-manager version this binary was built with into its user
// agent and field managers, as cert-manager's release build does with ldflags.
func setAppVersion() {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	for _, dep := range info.Deps {
		if dep.Path == "github.com/cert-manager/cert-manager" {
			util.AppVersion = dep.Version
		}
	}
}
