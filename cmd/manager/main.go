// Command manager runs the mcp-fleet-operator controller manager.
package main

import (
	"flag"
	"fmt"
	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"os"
	"path/filepath"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/controllers"
	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
	"github.com/mcpfleet/mcp-fleet-operator/internal/version"
	"github.com/mcpfleet/mcp-fleet-operator/internal/webhook"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr, probeAddr, defaultIssuer, runtimeImage string
		watchNamespaces, monitoringNamespace, clusterDomain string
		leaderElect, showVersion                            bool
		leaderElectionNamespace                             string
		webhookCertDir, enableWebhooks                      string
		webhookPort                                         int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint (\"0\" disables it).")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz.")
	flag.StringVar(&defaultIssuer, "default-issuer", "ClusterIssuer/mcp-fleet-ca", "cert-manager issuer used when spec.tls.issuerRef is unset, as Kind/name (Kind is Issuer or ClusterIssuer).")
	flag.StringVar(&runtimeImage, "runtime-image", "ghcr.io/mcpfleet/mcp-runtime:"+version.Version, "Image holding the mcp-runtime binary.")
	flag.StringVar(&watchNamespaces, "watch-namespaces", "", "Comma-separated namespaces to manage; empty manages all namespaces.")
	flag.StringVar(&monitoringNamespace, "monitoring-namespace", "", "Namespace allowed to scrape the servers' metrics port through their NetworkPolicy.")
	flag.StringVar(&clusterDomain, "cluster-domain", "cluster.local", "Cluster DNS domain used in Service names and certificates.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that only one replica reconciles.")
	flag.StringVar(&leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election lease (default: the pod's namespace).")
	flag.StringVar(&enableWebhooks, "enable-webhooks", "auto", "Serve the MCPServer validating webhook: true, false, or auto (true when --webhook-cert-dir holds tls.crt).")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "Port of the admission webhook server (HTTPS).")
	flag.StringVar(&webhookCertDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "Directory holding the webhook serving certificate (tls.crt, tls.key), e.g. the mounted cert-manager Secret.")
	flag.BoolVar(&showVersion, "version", false, "Print the version and exit.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	if showVersion {
		fmt.Println(version.Version)
		return nil
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))

	issuer, err := parseIssuer(defaultIssuer)
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	utilruntime.Must(cmv1.AddToScheme(scheme))
	utilruntime.Must(mcpv1alpha1.AddToScheme(scheme))

	webhooks, err := webhooksEnabled(enableWebhooks, webhookCertDir)
	if err != nil {
		return err
	}
	namespaces := splitNamespaces(watchNamespaces)
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "mcp-fleet-operator.mcpfleet.dev",
		LeaderElectionNamespace: leaderElectionNamespace,
		Cache:                   controllers.CacheOptions(namespaces),
		WebhookServer:           ctrlwebhook.NewServer(ctrlwebhook.Options{Port: webhookPort, CertDir: webhookCertDir}),
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	r := &controllers.MCPServerReconciler{
		Client:     mgr.GetClient(),
		Scheme:     mgr.GetScheme(),
		Recorder:   mgr.GetEventRecorder("mcp-fleet-operator"),
		Namespaces: namespaces,
		Options: resources.Options{
			RuntimeImage:        runtimeImage,
			DefaultIssuer:       issuer,
			ClusterDomain:       clusterDomain,
			MonitoringNamespace: monitoringNamespace,
		},
	}
	ctx := ctrl.SetupSignalHandler()
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("setting up controller: %w", err)
	}
	if err := (&controllers.PolicyReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the policy controller: %w", err)
	}
	if webhooks {
		mgr.GetWebhookServer().Register(webhook.Path, &ctrlwebhook.Admission{Handler: webhook.NewValidator(mgr.GetClient(), mgr.GetAPIReader(), mgr.GetScheme())})
		ctrl.Log.Info("Serving the MCPServer admission webhook", "port", webhookPort, "certDir", webhookCertDir)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctrl.Log.Info("Starting manager", "version", version.Version, "runtimeImage", runtimeImage)
	return mgr.Start(ctx)
}

// webhooksEnabled decides --enable-webhooks; auto serves them when a certificate is mounted.
func webhooksEnabled(flagValue, certDir string) (bool, error) {
	switch flagValue {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "auto":
		_, err := os.Stat(filepath.Join(certDir, "tls.crt"))
		return err == nil, nil
	}
	return false, fmt.Errorf("--enable-webhooks %q must be true, false or auto", flagValue)
}

func splitNamespaces(s string) []string {
	var out []string
	for _, ns := range strings.Split(s, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}

func parseIssuer(s string) (mcpv1alpha1.IssuerReference, error) {
	kind, name, ok := strings.Cut(s, "/")
	if !ok || name == "" || (kind != "Issuer" && kind != "ClusterIssuer") {
		return mcpv1alpha1.IssuerReference{}, fmt.Errorf("--default-issuer %q must be Kind/name with Kind Issuer or ClusterIssuer (e.g. ClusterIssuer/mcp-fleet-ca)", s)
	}
	return mcpv1alpha1.IssuerReference{Name: name, Kind: kind, Group: "cert-manager.io"}, nil
}
