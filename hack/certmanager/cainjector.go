package main

import (
	"context"
	"fmt"

	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	"github.com/cert-manager/cert-manager/pkg/util"
	corev1 "k8s.io/api/core/v1"
	apiext "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	kscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	apireg "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// cainjectorLeaseName is upstream cainjector's, so it takes turns with an in-cluster one.
const cainjectorLeaseName = "cert-manager-cainjector-leader-election"

// runCAInjector runs cert-manager's cainjector (a controller-runtime manager), set up as
// cert-manager's cainjector binary does (cmd/cainjector/app.Run), until ctx ends. It fills
// caBundle in Validating/MutatingWebhookConfigurations, CRD conversion webhooks and
// APIServices annotated cert-manager.io/inject-ca-from (or inject-ca-from-secret,
// inject-apiserver-ca).
func runCAInjector(ctx context.Context, opts options, cfg *rest.Config) error {
	scheme := runtime.NewScheme()
	utilruntime.Must(kscheme.AddToScheme(scheme))
	utilruntime.Must(cmscheme.AddToScheme(scheme))
	utilruntime.Must(apiext.AddToScheme(scheme))
	utilruntime.Must(apireg.AddToScheme(scheme))

	lease, renew, retry := leaseDuration, renewDeadline, retryPeriod
	mgr, err := ctrl.NewManager(util.RestConfigWithUserAgent(cfg, "cainjector"), ctrl.Options{
		Scheme: scheme,
		Cache:  cache.Options{ReaderFailOnMissingInformer: true},
		// Secrets are read live and watched as metadata only, as upstream does, so the
		// cache never holds every Secret of the cluster.
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		// The controllers' /metrics and /livez are the launcher's endpoints; these stay off.
		Metrics:                       metricsserver.Options{BindAddress: disabled},
		HealthProbeBindAddress:        disabled,
		LeaderElection:                opts.leaderElect,
		LeaderElectionNamespace:       opts.leaderElectionNamespace,
		LeaderElectionID:              cainjectorLeaseName,
		LeaderElectionReleaseOnCancel: true,
		LeaderElectionResourceLock:    resourcelock.LeasesResourceLock,
		LeaseDuration:                 &lease,
		RenewDeadline:                 &renew,
		RetryPeriod:                   &retry,
	})
	if err != nil {
		return fmt.Errorf("creating the cainjector manager: %w", err)
	}
	err = cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   true,
			cainjector.ValidatingWebhookConfigurationName: true,
			cainjector.APIServiceName:                     true,
			cainjector.CustomResourceDefinitionName:       true,
		},
	})
	if err != nil {
		return fmt.Errorf("registering cainjector's reconcilers: %w", err)
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running cainjector: %w", err)
	}
	return nil
}
