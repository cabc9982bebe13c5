// Package webhook_test runs the MCPServer admission webhook in the test process, called by
// a real kube-apiserver (envtest) that installs config/webhook/manifests.yaml rewritten to
// point at the test's webhook server.
package webhook_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/webhook"
)

var (
	testEnv    *envtest.Environment
	cfg        *rest.Config
	k8sClient  client.Client
	scheme     = runtime.NewScheme()
	ctx        context.Context
	cancel     context.CancelFunc
	stopServer context.CancelFunc
	serverDone chan struct{}
	warnings   = &warningRecorder{}
)

func TestWebhook(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "MCPServer admission webhook (envtest)")
}

// warningRecorder keeps the admission warnings the API server relays.
type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

// take returns and clears the warnings seen so far.
func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	Expect(os.Getenv("KUBEBUILDER_ASSETS")).NotTo(BeEmpty(),
		"KUBEBUILDER_ASSETS is unset: run `make test`, or export KUBEBUILDER_ASSETS=$(make -s envtest)")
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(mcpv1alpha1.AddToScheme(scheme))

	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	Expect(err).NotTo(HaveOccurred(), "locating the cert-manager module")
	cmCRDs := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")

	root := filepath.Join("..", "..")
	testEnv = &envtest.Environment{
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths: []string{
				filepath.Join(root, "config", "crd", "bases"),
				filepath.Join(cmCRDs, "cert-manager.io_issuers.yaml"),
				filepath.Join(cmCRDs, "cert-manager.io_clusterissuers.yaml"),
			},
			ErrorIfPathMissing: true,
		},
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			Paths: []string{filepath.Join(root, "config", "webhook", "manifests.yaml")},
		},
	}
	ctx, cancel = context.WithCancel(context.Background())
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	Expect(testEnv.WebhookInstallOptions.ValidatingWebhooks).To(HaveLen(1), "config/webhook/manifests.yaml holds the validating webhook")

	withWarnings := rest.CopyConfig(cfg)
	withWarnings.WarningHandlerWithContext = warnings
	k8sClient, err = client.New(withWarnings, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	// The webhook reads through a client of its own, as in the manager.
	reader, err := client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	o := &testEnv.WebhookInstallOptions
	server := crwebhook.NewServer(crwebhook.Options{Host: o.LocalServingHost, Port: o.LocalServingPort, CertDir: o.LocalServingCertDir})
	server.Register(webhook.Path, &crwebhook.Admission{Handler: webhook.NewValidator(reader, reader, scheme)})
	var sctx context.Context
	sctx, stopServer = context.WithCancel(ctx)
	serverDone = make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(serverDone)
		Expect(server.Start(sctx)).To(Succeed())
	}()
	Eventually(func() error { return server.StartedChecker()(nil) }, 10*time.Second, 50*time.Millisecond).Should(Succeed())
})

var _ = AfterSuite(func() {
	if stopServer != nil {
		stopServer()
	}
	if cancel != nil {
		cancel()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})
