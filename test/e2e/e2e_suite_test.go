//go:build e2e

// Package e2e_test drives the whole product on a real single-node cluster (hack/localcluster):
// the operator installed by its Helm chart, cert-manager's controllers, and MCPServer pods
// running the real runtime in front of the go-sdk everything-server, reached from the host
// by real MCP clients. `make test-e2e` brings the cluster up, runs this suite and tears the
// cluster down; it is excluded from `go test ./...` by the e2e build tag.
package e2e_test

import (
	"context"
	"os"
	"path/filepath"
	goruntime "runtime"
	"testing"
	"time"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(2 * time.Minute)
	SetDefaultEventuallyPollingInterval(500 * time.Millisecond)
	RunSpecs(t, "mcp-fleet-operator end to end on a real single-node cluster")
}

var (
	k8s       client.Client
	clientset *kubernetes.Clientset
	restCfg   *rest.Config

	// runtimeBin is the mcp-runtime CLI the tests mint tokens with, as a user would.
	runtimeBin string
	// kubectlBin applies the samples, as a user would.
	kubectlBin string
	// upstreamImage is the everything-server image imported into the node.
	upstreamImage string
)

var _ = BeforeSuite(func() {
	kubeconfig := os.Getenv("KUBECONFIG")
	Expect(kubeconfig).NotTo(BeEmpty(),
		"KUBECONFIG must name the local cluster's kubeconfig; run `make test-e2e`, which brings the cluster up first")
	var err error
	restCfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	restCfg.QPS, restCfg.Burst = 50, 100

	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(mcpv1alpha1.AddToScheme(scheme)).To(Succeed())
	Expect(certmanagerv1.AddToScheme(scheme)).To(Succeed())
	k8s, err = client.New(restCfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	clientset = kubernetes.NewForConfigOrDie(restCfg)

	runtimeBin = envOr("E2E_MCP_RUNTIME", filepath.Join(moduleRoot(), "bin", "mcp-runtime"))
	_, err = os.Stat(runtimeBin)
	Expect(err).NotTo(HaveOccurred(), "the mcp-runtime CLI is needed to mint tokens: run `make build` or set E2E_MCP_RUNTIME")
	kubectlBin = envOr("E2E_KUBECTL", "kubectl")
	upstreamImage = envOr("E2E_UPSTREAM_IMAGE", "ghcr.io/mcpfleet/everything-server:v1.8.0")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	By("waiting for the operator to be available")
	Eventually(func(g Gomega) {
		deps, err := clientset.AppsV1().Deployments(operatorNamespace()).List(ctx, listAll)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(deps.Items).NotTo(BeEmpty(), "no operator Deployment in %s", operatorNamespace())
		for _, d := range deps.Items {
			g.Expect(d.Status.AvailableReplicas).To(BeNumerically(">=", 1), "operator %s not available", d.Name)
		}
	}).WithContext(ctx).Should(Succeed())
})

var _ = AfterSuite(func() {
	removeHostsEntries()
})

func moduleRoot() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func operatorNamespace() string { return envOr("E2E_OPERATOR_NAMESPACE", "mcp-fleet-system") }
