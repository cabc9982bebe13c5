package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/cert-manager/cert-manager/pkg/healthz"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// crdWait bounds how long a freshly applied CRD set may take to be served.
const crdWait = 30 * time.Second

// requiredResources are the cert-manager.io resources the controllers run here watch.
var requiredResources = []string{"certificaterequests", "certificates", "clusterissuers", "issuers"}

// run starts the cert-manager controllers and cainjector and returns when ctx ends (nil) or
// either of them fails (the other is stopped).
func run(ctx context.Context, opts options) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", opts.kubeconfig)
	if err != nil {
		return fmt.Errorf("loading --kubeconfig %s: %w", opts.kubeconfig, err)
	}
	if err := waitForCRDs(ctx, cfg, crdWait); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil // stopped while waiting for the CRDs
	}

	g, ctx := errgroup.WithContext(ctx)
	// cert-manager's own /livez: fails when leader election stops renewing (with --leader-elect),
	// 20s past the lease, its default.
	health := healthz.NewServer(20 * time.Second)
	if opts.healthAddr != disabled {
		ln, err := net.Listen("tcp", opts.healthAddr)
		if err != nil {
			return fmt.Errorf("--health-probe-bind-address: %w", err)
		}
		logf.Log.Info("Serving /livez", "address", ln.Addr().String())
		g.Go(func() error { return health.Start(ctx, ln) })
	}
	g.Go(func() error { return runControllers(ctx, opts, health) })
	g.Go(func() error { return runCAInjector(ctx, opts, cfg) })
	return g.Wait()
}

// waitForCRDs fails with the fix spelled out when cert-manager's CRDs are not served:
// without them the controllers' informers never sync and nothing says why.
func waitForCRDs(ctx context.Context, cfg *rest.Config, timeout time.Duration) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("building a discovery client: %w", err)
	}
	var missing []string
	var lastErr error
	poll := func(context.Context) (bool, error) {
		missing = slices.Clone(requiredResources)
		list, err := dc.ServerResourcesForGroupVersion("cert-manager.io/v1")
		lastErr = err
		if err == nil {
			for _, r := range list.APIResources {
				missing = slices.DeleteFunc(missing, func(name string) bool { return name == r.Name })
			}
		}
		return len(missing) == 0, nil
	}
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, poll); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		// A group nobody serves answers 404; anything else (connection, RBAC) is shown as is.
		if lastErr != nil && !apierrors.IsNotFound(lastErr) {
			return fmt.Errorf("asking %s for the cert-manager.io/v1 API failed for %s (is the cluster up and --kubeconfig right?): %w",
				cfg.Host, timeout, lastErr)
		}
		return fmt.Errorf("cert-manager CRDs not served by %s after %s: missing cert-manager.io/v1 %s; "+
			"install them first: kubectl apply --server-side -f \"$(hack/certmanager.sh crds)\"",
			cfg.Host, timeout, strings.Join(missing, ", "))
	}
	return nil
}
