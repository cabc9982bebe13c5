package packaging

import (
	"context"
	"github.com/mcpfleet/mcp-fleet-operator/internal/testutil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// TestManagerRunsWithNamespacedRBAC is the least-privilege proof: the real manager binary,
// authenticated as the chart's ServiceAccount with the namespaced-mode RBAC and the args of
// the installed Deployment, wins leader election and reconciles an MCPServer in its watched
// namespace without a single "forbidden".
func TestManagerRunsWithNamespacedRBAC(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const release, ns, watched = "least", "least-system", "team-y"
	const sa = release + "-mcp-fleet-operator"
	ensureNamespace(ctx, t, watched, nil)

	// The CRDs may already be owned by (or kept from) another release.
	installCRDs := "true"
	if err := k8sClient.Get(ctx, client.ObjectKey{Name: "mcpservers.mcp.mcpfleet.dev"}, &apiextensionsv1.CustomResourceDefinition{}); err == nil {
		installCRDs = "false"
	}
	_, err := helm("install", release, chartDir, "--namespace", ns, "--create-namespace", "--timeout", "2m",
		"--set", "watchNamespaces={"+watched+"}", "--set", "crds.install="+installCRDs, "--set", "caBootstrap.create=never",
		// The manager runs outside the cluster here: no serving certificate, no webhook.
		"--set", "webhook.enabled=false")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _, _ = helm("uninstall", release, "--namespace", ns) })
	g.Eventually(func() error {
		return k8sClient.Get(ctx, client.ObjectKey{Name: "mcpservers.mcp.mcpfleet.dev"}, &apiextensionsv1.CustomResourceDefinition{})
	}).WithTimeout(30 * time.Second).Should(Succeed())

	var dep appsv1.Deployment
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: release + "-mcp-fleet-operator"}, &dep)).To(Succeed())
	var args []string
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
		switch {
		case strings.HasPrefix(a, "--metrics-bind-address="):
			a = "--metrics-bind-address=0" // no listeners needed on the test machine
		case strings.HasPrefix(a, "--health-probe-bind-address="):
			a = "--health-probe-bind-address=0"
		}
		args = append(args, a)
	}

	// A client certificate whose user name is the ServiceAccount's: RBAC treats it as the SA.
	user, err := testEnv.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + ns + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	kc, err := user.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	tmp := t.TempDir()
	saKubeconfig := filepath.Join(tmp, "kubeconfig")
	g.Expect(os.WriteFile(saKubeconfig, kc, 0o600)).To(Succeed())

	manager := filepath.Join(tmp, "manager")
	build := exec.CommandContext(ctx, "go", "build", "-o", manager, "./cmd/manager")
	build.Dir = repoRoot
	out, err := build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "building cmd/manager: %s", out)

	logs := testutil.SyncBuffer{Limit: 8 << 20} // the test needs the first megabytes at most
	run := exec.CommandContext(ctx, manager, args...)
	run.Env = append(os.Environ(), "KUBECONFIG="+saKubeconfig)
	run.Stdout, run.Stderr = &logs, &logs
	g.Expect(run.Start()).To(Succeed())
	t.Cleanup(func() {
		_ = run.Process.Kill()
		_ = run.Wait()
		if t.Failed() {
			t.Logf("manager log:\n%s", logs.String())
		}
	})

	// Leader election in the release namespace.
	g.Eventually(func(g Gomega) {
		var lease coordinationv1.Lease
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mcp-fleet-operator.mcpfleet.dev"}, &lease)).To(Succeed())
		g.Expect(lease.Spec.HolderIdentity).To(HaveValue(Not(BeEmpty())))
	}).WithTimeout(60 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())

	// An MCPServer in the watched namespace gets its children.
	var sample map[string]any
	g.Expect(yaml.Unmarshal(readFile(t, filepath.Join(repoRoot, "config", "samples", "mcp_v1alpha1_mcpserver_stdio.yaml")), &sample)).To(Succeed())
	srv := &unstructured.Unstructured{Object: sample}
	srv.SetNamespace(watched)
	g.Expect(k8sClient.Create(ctx, srv)).To(Succeed())
	g.Eventually(func() error {
		return k8sClient.Get(ctx, client.ObjectKey{Namespace: watched, Name: srv.GetName()}, &appsv1.Deployment{})
	}).WithTimeout(60*time.Second).WithPolling(500*time.Millisecond).Should(Succeed(), "the operator did not create the server's Deployment")
	g.Eventually(func(g Gomega) {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(srv.GroupVersionKind())
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(srv), live)).To(Succeed())
		og, _, _ := unstructured.NestedInt64(live.Object, "status", "observedGeneration")
		g.Expect(og).To(Equal(live.GetGeneration()), "status not written")
	}).WithTimeout(30 * time.Second).Should(Succeed())

	// The same MCPServer outside the watched namespaces is left alone.
	other := srv.DeepCopy()
	other.SetNamespace("default")
	other.SetResourceVersion("")
	g.Expect(k8sClient.Create(ctx, other)).To(Succeed())
	g.Consistently(func() bool {
		err := k8sClient.Get(ctx, client.ObjectKey{Namespace: "default", Name: other.GetName()}, &appsv1.Deployment{})
		return apierrors.IsNotFound(err)
	}).WithTimeout(3 * time.Second).Should(BeTrue())

	g.Expect(strings.ToLower(logs.String())).NotTo(ContainSubstring("forbidden"), "the manager hit an RBAC denial")
	g.Expect(k8sClient.Delete(ctx, srv)).To(Succeed())
	g.Expect(k8sClient.Delete(ctx, other)).To(Succeed())
}
