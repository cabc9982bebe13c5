package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"
	"github.com/cert-manager/cert-manager/pkg/healthz"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	// The Issuer/ClusterIssuer controllers find issuer types in a registry these fill.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// enabledControllers are the cert-manager controllers this launcher runs (ACME, Vault,
// Venafi, the ingress/gateway shims and the CSR controllers are left out).
var enabledControllers = []string{
	issuers.ControllerName,
	clusterissuers.ControllerName,
	// Signers only act on approved CertificateRequests; cert-manager runs this by default.
	approver.ControllerName,
	crselfsigned.CRControllerName,
	crca.CRControllerName,
	trigger.ControllerName,
	issuing.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
}

// cert-manager's defaults (internal/apis/config/controller/v1alpha1/defaults.go), which a
// zero ContextOptions would not give.
const (
	workers               = 5
	kubernetesAPIQPS      = 20
	kubernetesAPIBurst    = 50
	requestMinimumBackoff = time.Hour
	requestMaximumBackoff = 32 * time.Hour
	controllerLeaseName   = "cert-manager-controller"
)

// Leader election timings of both the controllers and cainjector
// (internal/apis/config/shared/v1alpha1/defaults.go).
const (
	leaseDuration = 60 * time.Second
	renewDeadline = 40 * time.Second
	retryPeriod   = 15 * time.Second
)

// runControllers runs the enabled controllers from cert-manager's registry, as cert-manager's
// controller binary does (cmd/controller/app.Run), until ctx ends.
func runControllers(ctx context.Context, opts options, health *healthz.Server) error {
	ctx = logf.NewContext(ctx, logf.Log, "controller")
	log := logf.FromContext(ctx)
	factory, err := controllerpkg.NewContextFactory(ctx, controllerpkg.ContextOptions{
		Kubeconfig:         opts.kubeconfig,
		KubernetesAPIQPS:   kubernetesAPIQPS,
		KubernetesAPIBurst: kubernetesAPIBurst,
		IssuerOptions:      controllerpkg.IssuerOptions{ClusterResourceNamespace: opts.clusterResourceNamespace},
		CertificateOptions: controllerpkg.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: requestMinimumBackoff,
			CertificateRequestMaximumBackoffDuration: requestMaximumBackoff,
		},
	})
	if err != nil {
		return fmt.Errorf("building cert-manager's controller context: %w", err)
	}
	base, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building cert-manager's controller context: %w", err)
	}

	g, ctx := errgroup.WithContext(ctx)
	if opts.metricsAddr != disabled {
		ln, err := net.Listen("tcp", opts.metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-bind-address: %w", err)
		}
		// The certmanager_certificate_*/issuer metrics, as cert-manager's controller serves them.
		cmInformers := base.SharedInformerFactory.Certmanager().V1()
		base.Metrics.SetupCertificateCollector(cmInformers.Certificates().Lister())
		base.Metrics.SetupIssuerCollector(cmInformers.Issuers().Lister())
		base.Metrics.SetupClusterIssuerCollector(cmInformers.ClusterIssuers().Lister())
		srv := base.Metrics.NewServer(ln)
		log.Info("Serving /metrics", "address", ln.Addr().String())
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return srv.Shutdown(shutdownCtx)
		})
	}

	if opts.leaderElect {
		elected, err := electLeader(ctx, g, factory, opts.leaderElectionNamespace, health)
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return g.Wait()
		case <-elected:
		}
	}

	known := controllerpkg.Known()
	for _, name := range enabledControllers {
		construct, ok := known[name]
		if !ok {
			return fmt.Errorf("controller %q is not registered in cert-manager's pkg/controller", name)
		}
		c, err := construct(factory)
		if err != nil {
			return fmt.Errorf("constructing controller %s: %w", name, err)
		}
		g.Go(func() error { return c.Run(workers, ctx) })
	}
	log.Info("Started controllers", "controllers", enabledControllers)
	// Informers start after every controller asked for its own, as cert-manager does.
	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())

	err = g.Wait()
	base.KubeSharedInformerFactory.Shutdown()
	base.SharedInformerFactory.Shutdown()
	return err
}

// electLeader takes part in the election for cert-manager's own controller Lease and returns
// a channel closed once this process leads; losing the Lease later fails the group.
func electLeader(ctx context.Context, g *errgroup.Group, factory *controllerpkg.ContextFactory,
	namespace string, health *healthz.Server) (<-chan struct{}, error) {
	leCtx, err := factory.Build("leader-election")
	if err != nil {
		return nil, fmt.Errorf("building the leader election client: %w", err)
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("reading the hostname for the leader identity: %w", err)
	}
	// Unique per process so two launchers on one host do not both think they lead.
	id := host + "_" + string(uuid.NewUUID())
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, namespace, controllerLeaseName,
		leCtx.Client.CoreV1(), leCtx.Client.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: id, EventRecorder: leCtx.Recorder})
	if err != nil {
		return nil, fmt.Errorf("creating the leader election lock: %w", err)
	}
	elected := make(chan struct{})
	lost := make(chan error, 1)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   leaseDuration,
		RenewDeadline:   renewDeadline,
		RetryPeriod:     retryPeriod,
		ReleaseOnCancel: true,
		WatchDog:        health.LeaderHealthzAdaptor,
		Name:            controllerLeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { close(elected) },
			OnStoppedLeading: func() {
				if ctx.Err() == nil {
					lost <- fmt.Errorf("lost the leader election Lease %s/%s", namespace, controllerLeaseName)
				}
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the leader elector: %w", err)
	}
	logf.FromContext(ctx).Info("Waiting to lead", "lease", namespace+"/"+controllerLeaseName, "identity", id)
	g.Go(func() error {
		le.Run(ctx)
		select {
		case err := <-lost:
			return err
		default:
			return nil
		}
	})
	return elected, nil
}
