package packaging

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// hardened is the chart with every optional object on, in namespaced mode.
var hardened = []string{
	"--set", "watchNamespaces={team-a,team-b}",
	"--set", "networkPolicy.enabled=true",
	"--set", "monitoringNamespace=monitoring",
	"--set", "metrics.serviceMonitor.enabled=true",
	"--set", "caBootstrap.create=always",
	"--set", "webhook.enabled=true",
}

func render(t *testing.T, release, namespace string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := helm(append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects([]byte(out))
	if err != nil {
		t.Fatalf("decoding helm template output: %v", err)
	}
	return objs
}

// kustomizeDefault builds config/default the way `make build-installer` does.
func kustomizeDefault(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	out, err := runTool(os.Environ(), kubectl, "kustomize", filepath.Join(repoRoot, "config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// installerYAML is dist/install.yaml, which `make build-installer` (and `make test`) writes.
func installerYAML(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "dist", "install.yaml"))
	if err != nil {
		t.Fatalf("dist/install.yaml: %v: run `make build-installer` (`make test` writes it before the tests)", err)
	}
	return b
}

func installerObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	objs, err := decodeObjects(installerYAML(t))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestInstallerImagesFollowChart: config/default pins the same images as the chart.
func TestInstallerImagesFollowChart(t *testing.T) {
	g := NewWithT(t)
	v := chartAppVersion(t)
	for name, objs := range map[string][]*unstructured.Unstructured{"config/default": kustomizeDefault(t), "dist/install.yaml": installerObjects(t)} {
		var d *appsv1.Deployment
		for _, o := range objs {
			if o.GetKind() == "Deployment" {
				d = &appsv1.Deployment{}
				g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d)).To(Succeed())
			}
		}
		g.Expect(d).NotTo(BeNil(), "%s has no Deployment", name)
		c := d.Spec.Template.Spec.Containers[0]
		g.Expect(c.Image).To(HavePrefix("ghcr.io/mcpfleet/mcp-fleet-operator:"), name)
		g.Expect(c.Args).To(ContainElement("--runtime-image=$(RUNTIME_IMAGE)"), name)
		g.Expect(c.Env).To(ContainElement(HaveField("Name", "RUNTIME_IMAGE")), name)
		if name == "config/default" {
			g.Expect(c.Image).To(Equal("ghcr.io/mcpfleet/mcp-fleet-operator:"+v), "config/manager/kustomization.yaml newTag must equal the chart's appVersion")
			g.Expect(c.Env).To(ContainElement(corev1.EnvVar{Name: "RUNTIME_IMAGE", Value: "ghcr.io/mcpfleet/mcp-runtime:" + v}))
		}
	}
}

func TestHelmLintStrict(t *testing.T) {
	g := NewWithT(t)
	for _, args := range [][]string{nil, hardened} {
		out, err := helm(append([]string{"lint", "--strict", chartDir}, args...)...)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("0 chart(s) failed"))
	}
	// values.schema.json refuses what would break the chart's promises.
	for _, bad := range []string{
		"securityContext.readOnlyRootFilesystem=false",
		"securityContext.allowPrivilegeEscalation=true",
		// Each of these breaks restricted Pod Security too.
		"securityContext.capabilities.drop={}",
		"securityContext.capabilities.add={NET_ADMIN}",
		"securityContext.seccompProfile.type=Unconfined",
		"securityContext.runAsUser=0",
		"podSecurityContext.seccompProfile.type=Unconfined",
		"podSecurityContext.runAsUser=0",
		"caBootstrap.create=maybe",
		"replicaCount=0",
		"image.pullpolicy=Always",
		"watchNamespaces={Not_A_Namespace}",
		"webhook.enabled=maybe",
		"baselinePolicy.enforcementAction=Warn",
		"leaderElection.enabled=false", // with the default 2 replicas: two active managers
	} {
		_, err := helm("lint", "--strict", chartDir, "--set", bad)
		g.Expect(err).To(HaveOccurred(), "values.schema.json accepted %s", bad)
	}
}

// TestPodDisruptionBudgetAllowsDrains: a PodDisruptionBudget that allows no disruption
// (minAvailable as high as the replicas) makes `kubectl drain` of the operator's node hang.
func TestPodDisruptionBudgetAllowsDrains(t *testing.T) {
	g := NewWithT(t)
	const ns, name = "mcp-fleet-system", "pdb-mcp-fleet-operator"
	for _, args := range [][]string{nil, {"--set", "replicaCount=1"}, {"--set", "replicaCount=3"}} {
		objs := render(t, "pdb", ns, args...)
		var dep appsv1.Deployment
		g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(find(objs, "Deployment", ns, name).Object, &dep)).To(Succeed())
		replicas := *dep.Spec.Replicas
		o := find(objs, "PodDisruptionBudget", ns, name)
		if replicas > 1 {
			g.Expect(o).NotTo(BeNil(), "%v: no PodDisruptionBudget for %d replicas", args, replicas)
		}
		if o == nil {
			continue
		}
		var pdb policyv1.PodDisruptionBudget
		g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &pdb)).To(Succeed())
		g.Expect(pdb.Spec.MinAvailable).NotTo(BeNil())
		g.Expect(pdb.Spec.MinAvailable.IntValue()).To(BeNumerically("<", replicas),
			"%v: minAvailable %s with %d replicas lets no pod be evicted", args, pdb.Spec.MinAvailable.String(), replicas)
	}
}

// TestServerSideDryRun applies every rendered object with server-side apply in dry-run mode:
// the API server's real schemas (CRDs included), defaulting and admission run on each.
func TestServerSideDryRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, ns := range []string{"mcp-fleet-system", "team-a", "team-b", "cert-manager", "monitoring"} {
		ensureNamespace(ctx, t, ns, nil)
	}
	cases := map[string][]*unstructured.Unstructured{
		"chart defaults":            render(t, "dry", "mcp-fleet-system"),
		"chart hardened namespaced": render(t, "dry", "mcp-fleet-system", hardened...),
		"config/default":            kustomizeDefault(t),
		"dist/install.yaml":         installerObjects(t),
	}
	for name, objs := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.GetKind()]++
				if o.GetKind() == "ServiceMonitor" {
					// No Prometheus Operator CRD in the test API server: checked by shape instead.
					assertServiceMonitor(g, o, objs)
					continue
				}
				err := k8sClient.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
					client.DryRunAll, client.ForceOwnership, client.FieldOwner("packaging-test"))
				g.Expect(err).NotTo(HaveOccurred(), "server-side dry-run of %s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
			}
			for _, k := range []string{"CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "PodDisruptionBudget"} {
				g.Expect(kinds).To(HaveKey(k), "nothing of kind %s rendered", k)
			}
			g.Expect(kinds["CustomResourceDefinition"]).To(Equal(len(yamlFiles(t, filepath.Join(repoRoot, "config", "crd", "bases")))))
		})
	}
	// The hardened profile renders the optional objects.
	kinds := map[string]int{}
	for _, o := range cases["chart hardened namespaced"] {
		kinds[o.GetKind()]++
	}
	g := NewWithT(t)
	g.Expect(kinds).To(HaveKeyWithValue("NetworkPolicy", 1))
	g.Expect(kinds).To(HaveKeyWithValue("ServiceMonitor", 1))
	g.Expect(kinds).To(HaveKeyWithValue("Issuer", 2))      // CA bootstrap, webhook
	g.Expect(kinds).To(HaveKeyWithValue("Certificate", 2)) // CA, webhook serving cert
	g.Expect(kinds).To(HaveKeyWithValue("ValidatingWebhookConfiguration", 1))
	g.Expect(kinds).To(HaveKeyWithValue("Service", 2)) // metrics, webhook
	g.Expect(kinds).To(HaveKeyWithValue("ClusterIssuer", 1))
	g.Expect(kinds).To(HaveKeyWithValue("Role", 3)) // team-a, team-b, leader election
}

func assertServiceMonitor(g Gomega, sm *unstructured.Unstructured, objs []*unstructured.Unstructured) {
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	g.Expect(eps).To(HaveLen(1))
	port, _, _ := unstructured.NestedString(eps[0].(map[string]any), "port")
	var svc *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() != "Service" || o.GetNamespace() != sm.GetNamespace() {
			continue
		}
		matches := true
		for k, v := range sel {
			matches = matches && o.GetLabels()[k] == v
		}
		if matches {
			g.Expect(svc).To(BeNil(), "ServiceMonitor selects more than one Service")
			svc = o
		}
	}
	g.Expect(svc).NotTo(BeNil(), "ServiceMonitor selects no Service")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	g.Expect(ports).To(ContainElement(HaveKeyWithValue("name", port)))
}

// TestRestrictedPodSecurity creates each rendered pod template as a Pod (dry-run) in a
// namespace that enforces the restricted Pod Security Standard.
func TestRestrictedPodSecurity(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns = "pss-restricted"
	ensureNamespace(ctx, t, ns, map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"})

	var templates []corev1.PodTemplateSpec
	for _, objs := range [][]*unstructured.Unstructured{render(t, "pss", ns), render(t, "pss", ns, hardened...), kustomizeDefault(t)} {
		for _, o := range objs {
			if o.GetKind() != "Deployment" {
				continue
			}
			var d appsv1.Deployment
			g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d)).To(Succeed())
			g.Expect(d.Spec.Replicas).To(HaveValue(BeEquivalentTo(2)))
			c := d.Spec.Template.Spec.Containers[0]
			g.Expect(c.Args).To(ContainElement("--leader-elect=true"))
			g.Expect(c.SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
			templates = append(templates, d.Spec.Template)
		}
	}
	g.Expect(templates).To(HaveLen(3))
	for i, tpl := range templates {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("tpl-%d", i), Namespace: ns, Labels: tpl.Labels}, Spec: tpl.Spec}
		g.Expect(k8sClient.Create(ctx, pod, client.DryRunAll)).To(Succeed(), "pod template %d violates restricted Pod Security", i)
	}
	// Control: the same namespace refuses a pod that drops the hardening, so the check above can fail.
	bad := templates[0].DeepCopy()
	bad.Spec.SecurityContext.RunAsNonRoot = nil
	bad.Spec.Containers[0].SecurityContext.RunAsNonRoot = nil
	bad.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
	err := k8sClient.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "control", Namespace: ns}, Spec: bad.Spec}, client.DryRunAll)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "restricted Pod Security is not enforced by the test API server: %v", err)
}

// kubeScoreIgnored are the kube-score checks switched off, each with its reason.
var kubeScoreIgnored = []string{
	// Images are pinned to a version tag or digest (container-image-tag enforces non-latest).
	// Always would make every restart and leader failover depend on the registry being up,
	// and breaks preloaded/air-gapped images; its reason (re-checking imagePullSecrets on
	// shared nodes) does not apply to a cluster-admin-installed operator. Users who want it
	// set image.pullPolicy=Always.
	"container-image-pull-policy",
}

// kubeScoreOptional are optional checks we hold ourselves to as well.
var kubeScoreOptional = []string{"container-seccomp-profile", "container-ports-check"}

type kubeScoreResult struct {
	ObjectName string `json:"object_name"`
	TypeMeta   struct {
		Kind string `json:"kind"`
	} `json:"type_meta"`
	Checks []struct {
		Check struct {
			ID string `json:"id"`
		} `json:"check"`
		Grade    int  `json:"grade"`
		Skipped  bool `json:"skipped"`
		Comments []struct {
			Path    string `json:"path"`
			Summary string `json:"summary"`
		} `json:"comments"`
	} `json:"checks"`
}

// scoreFindings runs kube-score on a manifest and returns critical and warning findings.
func scoreFindings(t *testing.T, manifest []byte, extraIgnores ...string) (critical, warning []string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(f, manifest, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"score", "--kubernetes-version", "v1.36", "--output-format", "json"}
	for _, id := range kubeScoreIgnored {
		args = append(args, "--ignore-test", id)
	}
	for _, id := range extraIgnores {
		args = append(args, "--ignore-test", id)
	}
	for _, id := range kubeScoreOptional {
		args = append(args, "--enable-optional-test", id)
	}
	// kube-score exits 1 when it finds criticals; the JSON on stdout is what counts.
	out, err := runTool(os.Environ(), kubeScore, append(args, f)...)
	var results []kubeScoreResult
	if jerr := json.Unmarshal([]byte(out), &results); jerr != nil {
		t.Fatalf("kube-score output is not JSON (%v): %v", jerr, err)
	}
	if len(results) == 0 {
		t.Fatalf("kube-score scored nothing: %v", err)
	}
	for _, r := range results {
		for _, c := range r.Checks {
			if c.Skipped {
				continue
			}
			var msgs []string
			for _, cm := range c.Comments {
				msgs = append(msgs, strings.TrimSpace(cm.Path+" "+cm.Summary))
			}
			line := fmt.Sprintf("%s %s: %s %v", r.TypeMeta.Kind, r.ObjectName, c.Check.ID, msgs)
			switch c.Grade {
			case 1:
				critical = append(critical, line)
			case 5:
				warning = append(warning, line)
			}
		}
	}
	return critical, warning
}

func TestKubeScore(t *testing.T) {
	g := NewWithT(t)
	installer := string(installerYAML(t))
	hardenedOut, err := helm(append([]string{"template", "score", chartDir, "--namespace", "mcp-fleet-system"}, hardened...)...)
	g.Expect(err).NotTo(HaveOccurred())
	defaultsOut, err := helm("template", "score", chartDir, "--namespace", "mcp-fleet-system")
	g.Expect(err).NotTo(HaveOccurred())

	for name, c := range map[string]struct {
		manifest string
		ignores  []string
	}{
		"dist/install.yaml":         {manifest: installer},
		"chart hardened namespaced": {manifest: hardenedOut},
		// The chart's NetworkPolicy is opt-in (API server ports differ per distribution), so
		// the default render has no policy for the pod; the hardened profile is scored with it.
		"chart defaults": {manifest: defaultsOut, ignores: []string{"pod-networkpolicy"}},
	} {
		critical, warning := scoreFindings(t, []byte(c.manifest), c.ignores...)
		t.Logf("kube-score %s: %d critical, %d warning %v", name, len(critical), len(warning), warning)
		g.Expect(critical).To(BeEmpty(), "kube-score critical findings for %s", name)
	}

	// Control: the scorer does flag a Deployment stripped of its hardening.
	weak := strings.ReplaceAll(installer, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
	critical, _ := scoreFindings(t, []byte(weak))
	g.Expect(critical).To(ContainElement(ContainSubstring("container-security-context-readonlyrootfilesystem")))
}

func ensureNamespace(ctx context.Context, t *testing.T, name string, labels map[string]string) {
	t.Helper()
	err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}
