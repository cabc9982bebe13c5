package packaging

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/yaml"
)

// TestChartCRDsEqualConfig: the chart's CRDs are byte-for-byte those controller-gen wrote.
func TestChartCRDsEqualConfig(t *testing.T) {
	g := NewWithT(t)
	bases := yamlFiles(t, filepath.Join(repoRoot, "config", "crd", "bases"))
	chart := yamlFiles(t, filepath.Join(chartDir, "files", "crds"))
	g.Expect(bases).NotTo(BeEmpty())
	g.Expect(names(chart)).To(Equal(names(bases)), "chart CRD files differ from config/crd/bases: run `make chart-sync`")
	for name, want := range bases {
		g.Expect(string(chart[name])).To(Equal(string(want)), "charts/…/files/crds/%s drifted from config/crd/bases: run `make chart-sync`", name)
	}

	// config/crd/kustomization.yaml must list every generated CRD.
	var k struct{ Resources []string }
	g.Expect(yaml.Unmarshal(readFile(t, filepath.Join(repoRoot, "config", "crd", "kustomization.yaml")), &k)).To(Succeed())
	for name := range bases {
		g.Expect(k.Resources).To(ContainElement("bases/"+name), "config/crd/kustomization.yaml does not list bases/%s", name)
	}

	// The rendered CRDs carry the same spec plus the keep policy.
	objs := render(t, "drift", "mcp-fleet-system")
	rendered := 0
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		rendered++
		var got, want apiextensionsv1.CustomResourceDefinition
		g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &got)).To(Succeed())
		g.Expect(yaml.Unmarshal(bases["mcp.mcpfleet.dev_"+strings.TrimSuffix(got.Name, ".mcp.mcpfleet.dev")+".yaml"], &want)).To(Succeed())
		g.Expect(got.Spec).To(Equal(want.Spec), "rendered CRD %s differs from config/crd/bases", got.Name)
		g.Expect(got.Annotations).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
		// Argo CD honours keep when an Application is deleted, but prunes a CRD that leaves the
		// manifests (crds.install=false) unless told not to: every MCPServer would go with it.
		g.Expect(strings.Split(got.Annotations["argocd.argoproj.io/sync-options"], ",")).To(ContainElements("Prune=false", "Delete=false"))
	}
	g.Expect(rendered).To(Equal(len(bases)))
}

// rbacTriple is one permission: group, resource, verb.
type rbacTriple struct{ group, resource, verb string }

func expand(rules []rbacv1.PolicyRule) []rbacTriple {
	var out []rbacTriple
	for _, r := range rules {
		for _, gr := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, rbacTriple{gr, res, v})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.group+"/"+a.resource+"/"+a.verb < b.group+"/"+b.resource+"/"+b.verb
	})
	return slices.Compact(out)
}

// TestChartRBACMatchesRoleYAML: in both modes the chart grants exactly the rules of
// config/rbac/role.yaml (controller-gen's output), with cluster-scoped resources only in the
// ClusterRole and namespaced ones only in per-namespace Roles in namespaced mode.
func TestChartRBACMatchesRoleYAML(t *testing.T) {
	g := NewWithT(t)
	roleYAML := readFile(t, filepath.Join(repoRoot, "config", "rbac", "role.yaml"))
	g.Expect(string(readFile(t, filepath.Join(chartDir, "files", "rbac", "role.yaml")))).To(Equal(string(roleYAML)),
		"charts/…/files/rbac/role.yaml drifted from config/rbac/role.yaml: run `make chart-sync`")
	var role rbacv1.ClusterRole
	g.Expect(yaml.Unmarshal(roleYAML, &role)).To(Succeed())
	want := expand(role.Rules)
	g.Expect(want).NotTo(BeEmpty())

	// Cluster mode: one ClusterRole with every rule.
	cluster := render(t, "rbac", "mcp-fleet-system")
	g.Expect(expand(rulesOf(t, cluster, "ClusterRole", "", "rbac-mcp-fleet-operator-manager"))).To(Equal(want))
	g.Expect(find(cluster, "Role", "team-a", "rbac-mcp-fleet-operator-manager")).To(BeNil())

	// Namespaced mode.
	scoped := render(t, "rbac", "mcp-fleet-system", "--set", "watchNamespaces={team-a,team-b}")
	clusterPart := expand(rulesOf(t, scoped, "ClusterRole", "", "rbac-mcp-fleet-operator-manager"))
	roleA := expand(rulesOf(t, scoped, "Role", "team-a", "rbac-mcp-fleet-operator-manager"))
	roleB := expand(rulesOf(t, scoped, "Role", "team-b", "rbac-mcp-fleet-operator-manager"))
	g.Expect(roleB).To(Equal(roleA))
	union := expand(nil)
	union = append(append(union, clusterPart...), roleA...)
	sort.Slice(union, func(i, j int) bool {
		a, b := union[i], union[j]
		return a.group+"/"+a.resource+"/"+a.verb < b.group+"/"+b.resource+"/"+b.verb
	})
	g.Expect(union).To(Equal(want), "namespaced mode must grant exactly role.yaml's rules, split between ClusterRole and Roles")

	namespaced := resourceScopes(t)
	for _, p := range clusterPart {
		ns, known := namespaced[p.group+"/"+p.resource]
		g.Expect(known).To(BeTrue(), "unknown resource %s/%s in role.yaml", p.group, p.resource)
		g.Expect(ns).To(BeFalse(), "namespaced mode's ClusterRole grants the namespaced resource %s/%s cluster-wide", p.group, p.resource)
	}
	for _, p := range roleA {
		ns, known := namespaced[p.group+"/"+p.resource]
		g.Expect(known).To(BeTrue(), "unknown resource %s/%s in role.yaml", p.group, p.resource)
		g.Expect(ns).To(BeTrue(), "cluster-scoped %s/%s landed in a Role, where it grants nothing: add it to clusterScopedResources in _helpers.tpl", p.group, p.resource)
	}

	// kustomize: config/default ships role.yaml unchanged.
	kobjs := kustomizeDefault(t)
	g.Expect(expand(rulesOf(t, kobjs, "ClusterRole", "", "mcp-fleet-operator-manager-role"))).To(Equal(want))
}

// resourceScopes maps group/resource (subresources included) to "is namespaced", from the
// API server's discovery for served APIs and from config/crd/bases for the operator's own.
func resourceScopes(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, lists, err := dc.ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lists {
		group, _, _ := strings.Cut(l.GroupVersion, "/")
		if !strings.Contains(l.GroupVersion, "/") {
			group = "" // core: "v1"
		}
		for _, r := range l.APIResources {
			out[group+"/"+r.Name] = r.Namespaced
		}
	}
	for _, data := range yamlFiles(t, filepath.Join(repoRoot, "config", "crd", "bases")) {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(data, &crd); err != nil {
			t.Fatal(err)
		}
		ns := crd.Spec.Scope == apiextensionsv1.NamespaceScoped
		out[crd.Spec.Group+"/"+crd.Spec.Names.Plural] = ns
		out[crd.Spec.Group+"/"+crd.Spec.Names.Plural+"/status"] = ns
		out[crd.Spec.Group+"/"+crd.Spec.Names.Plural+"/scale"] = ns
		out[crd.Spec.Group+"/"+crd.Spec.Names.Plural+"/finalizers"] = ns // RBAC-only: blockOwnerDeletion
	}
	return out
}

func rulesOf(t *testing.T, objs []*unstructured.Unstructured, kind, namespace, name string) []rbacv1.PolicyRule {
	t.Helper()
	o := find(objs, kind, namespace, name)
	if o == nil {
		t.Fatalf("no %s %s/%s rendered", kind, namespace, name)
	}
	var r rbacv1.ClusterRole // a Role has the same rules field
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(map[string]any{"rules": o.Object["rules"]}, &r); err != nil {
		t.Fatal(err)
	}
	return r.Rules
}

func find(objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	return nil
}

func yamlFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".yaml") {
			out[e.Name()] = readFile(t, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

func names(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
