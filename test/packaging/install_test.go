package packaging

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

const upgradedColumn = "PackagingUpgrade"

// TestHelmInstallUpgradeUninstall installs the chart into the test API server in cluster
// mode, upgrades it to a chart whose CRD changed, installs a second, namespaced release
// beside it, and uninstalls the first: the CRDs stay.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	appVersion := chartAppVersion(t)
	// Where cert-manager lives; the CA bootstrap puts its Issuer and CA Certificate there.
	ensureNamespace(ctx, t, "cert-manager", nil)

	out, err := helm("install", "fleet", chartDir, "--namespace", "fleet-system", "--create-namespace", "--timeout", "2m")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(ContainSubstring("kubectl -n fleet-system rollout status deployment/fleet-mcp-fleet-operator"), "NOTES.txt tells the next command")
	g.Expect(out).To(ContainSubstring("self-signed CA ClusterIssuer mcp-fleet-ca was created"))

	// Every object of the release exists on the server.
	manifest, err := helm("get", "manifest", "fleet", "--namespace", "fleet-system")
	g.Expect(err).NotTo(HaveOccurred())
	objs, err := decodeObjects([]byte(manifest))
	g.Expect(err).NotTo(HaveOccurred())
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(o.GroupVersionKind())
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(o), live)).To(Succeed(), "%s %s/%s not created", o.GetKind(), o.GetNamespace(), o.GetName())
	}
	g.Expect(kinds).To(Equal(map[string]int{
		"CustomResourceDefinition": len(yamlFiles(t, filepath.Join(repoRoot, "config", "crd", "bases"))),
		"ServiceAccount":           1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1,
		"Deployment": 1, "Service": 2, "PodDisruptionBudget": 1,
		// caBootstrap.create=auto and webhook.enabled=auto found cert-manager.io/v1 on the
		// server: the CA bootstrap and the webhook's own Issuer, Certificate and Service.
		"Issuer": 2, "Certificate": 2, "ClusterIssuer": 1, "ValidatingWebhookConfiguration": 1,
	}))

	var dep appsv1.Deployment
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: "fleet-system", Name: "fleet-mcp-fleet-operator"}, &dep)).To(Succeed())
	c := dep.Spec.Template.Spec.Containers[0]
	g.Expect(c.Image).To(Equal("ghcr.io/mcpfleet/mcp-fleet-operator:" + appVersion))
	g.Expect(c.Args).To(ContainElements(
		"--runtime-image=ghcr.io/mcpfleet/mcp-runtime:"+appVersion,
		"--default-issuer=ClusterIssuer/mcp-fleet-ca",
		"--leader-elect=true",
		"--leader-election-namespace=fleet-system",
		"--enable-webhooks=true",
	))
	g.Expect(c.Args).NotTo(ContainElement(HavePrefix("--watch-namespaces")))
	g.Expect(*dep.Spec.Replicas).To(BeEquivalentTo(2))

	crd := &apiextensionsv1.CustomResourceDefinition{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "mcpservers.mcp.mcpfleet.dev"}, crd)).To(Succeed())
	g.Expect(crd.Annotations).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
	g.Expect(printerColumns(crd)).NotTo(ContainElement(upgradedColumn))

	// Upgrade to a chart whose MCPServer CRD has one more printer column.
	changed := copyChart(t)
	addPrinterColumn(t, filepath.Join(changed, "files", "crds", "mcp.mcpfleet.dev_mcpservers.yaml"))
	// The CRDs exist now, so the baseline policy can be switched on in the same upgrade.
	_, err = helm("upgrade", "fleet", changed, "--namespace", "fleet-system", "--timeout", "2m",
		"--set", "baselinePolicy.enabled=true", "--set", "baselinePolicy.enforcementAction=Deny")
	g.Expect(err).NotTo(HaveOccurred())
	policy := &unstructured.Unstructured{}
	policy.SetAPIVersion("mcp.mcpfleet.dev/v1alpha1")
	policy.SetKind("MCPServerPolicy")
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "fleet-mcp-fleet-operator-baseline"}, policy)).To(Succeed())
	action, _, _ := unstructured.NestedString(policy.Object, "spec", "enforcementAction")
	g.Expect(action).To(Equal("Deny"))
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "mcpservers.mcp.mcpfleet.dev"}, crd)).To(Succeed())
	g.Expect(printerColumns(crd)).To(ContainElement(upgradedColumn), "helm upgrade did not update the CRD")

	// A second, namespaced release beside it (the first one owns the CRDs).
	ensureNamespace(ctx, t, "team-x", nil)
	out, err = helm("install", "scoped", chartDir, "--namespace", "scoped-system", "--create-namespace",
		"--set", "watchNamespaces={team-x}", "--set", "crds.install=false", "--set", "caBootstrap.create=never", "--timeout", "2m")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(ContainSubstring("Namespaced mode: it manages MCPServers only in team-x"))
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: "scoped-system", Name: "scoped-mcp-fleet-operator"}, &dep)).To(Succeed())
	g.Expect(dep.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--watch-namespaces=team-x"))
	var role rbacv1.Role
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: "team-x", Name: "scoped-mcp-fleet-operator-manager"}, &role)).To(Succeed())
	g.Expect(expand(role.Rules)).To(ContainElement(rbacTriple{"apps", "deployments", "create"}))
	var cr rbacv1.ClusterRole
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "scoped-mcp-fleet-operator-manager"}, &cr)).To(Succeed())
	scopes := resourceScopes(t)
	g.Expect(cr.Rules).NotTo(BeEmpty())
	for _, p := range expand(cr.Rules) {
		g.Expect(scopes).To(HaveKeyWithValue(p.group+"/"+p.resource, false), "namespaced mode's ClusterRole grants %v cluster-wide", p)
		g.Expect(p.verb).NotTo(BeElementOf("create", "delete", "deletecollection", "*"), "namespaced mode's ClusterRole grants %v", p)
	}

	// Uninstall: the workload goes, the CRDs stay (resource-policy: keep).
	_, err = helm("uninstall", "fleet", "--namespace", "fleet-system", "--timeout", "2m")
	g.Expect(err).NotTo(HaveOccurred())
	err = k8sClient.Get(ctx, client.ObjectKey{Namespace: "fleet-system", Name: "fleet-mcp-fleet-operator"}, &appsv1.Deployment{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "deployment still there after uninstall: %v", err)
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "mcpservers.mcp.mcpfleet.dev"}, crd)).To(Succeed(), "helm uninstall deleted the CRD")
	g.Expect(crd.DeletionTimestamp).To(BeNil())
	err = k8sClient.Get(ctx, client.ObjectKey{Name: "fleet-mcp-fleet-operator-baseline"}, policy.DeepCopy())
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the baseline policy outlived its release: %v", err)
	_, err = helm("uninstall", "scoped", "--namespace", "scoped-system", "--timeout", "2m")
	g.Expect(err).NotTo(HaveOccurred())
}

func chartAppVersion(t *testing.T) string {
	t.Helper()
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(readFile(t, filepath.Join(chartDir, "Chart.yaml")), &c); err != nil || c.AppVersion == "" {
		t.Fatalf("reading appVersion from Chart.yaml: %v", err)
	}
	return c.AppVersion
}

func printerColumns(crd *apiextensionsv1.CustomResourceDefinition) []string {
	var out []string
	for _, v := range crd.Spec.Versions {
		for _, c := range v.AdditionalPrinterColumns {
			out = append(out, c.Name)
		}
	}
	return out
}

// copyChart copies the chart into a temporary directory so a test can change it.
func copyChart(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "mcp-fleet-operator")
	err := filepath.WalkDir(chartDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(chartDir, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func addPrinterColumn(t *testing.T, path string) {
	t.Helper()
	var crd map[string]any
	if err := yaml.Unmarshal(readFile(t, path), &crd); err != nil {
		t.Fatal(err)
	}
	versions, _, _ := unstructured.NestedSlice(crd, "spec", "versions")
	if len(versions) == 0 {
		t.Fatalf("no versions in %s", path)
	}
	for i := range versions {
		v := versions[i].(map[string]any)
		cols, _ := v["additionalPrinterColumns"].([]any)
		v["additionalPrinterColumns"] = append(cols, map[string]any{"name": upgradedColumn, "type": "string", "jsonPath": ".metadata.uid", "priority": int64(1)})
	}
	if err := unstructured.SetNestedSlice(crd, versions, "spec", "versions"); err != nil {
		t.Fatal(err)
	}
	b, err := yaml.Marshal(crd)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), upgradedColumn) {
		t.Fatal("printer column not written")
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
