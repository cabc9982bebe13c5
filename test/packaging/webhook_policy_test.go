package packaging

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ensureOurCRDs installs config/crd/bases when no earlier test (helm install) left them behind,
// so the custom resources the chart renders can be dry-run on their own.
func ensureOurCRDs(t *testing.T) {
	t.Helper()
	err := k8sClient.Get(context.Background(), client.ObjectKey{Name: "mcpserverpolicies.mcp.mcpfleet.dev"}, &apiextensionsv1.CustomResourceDefinition{})
	if err == nil {
		return
	}
	if !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Paths:              []string{filepath.Join(repoRoot, "config", "crd", "bases")},
		ErrorIfPathMissing: true,
		MaxTime:            time.Minute,
	}); err != nil {
		t.Fatalf("installing the CRDs: %v", err)
	}
}

func dryRunApply(ctx context.Context, o *unstructured.Unstructured) error {
	return k8sClient.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
		client.DryRunAll, client.ForceOwnership, client.FieldOwner("packaging-test"))
}

func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// TestBaselinePolicy: baselinePolicy.enabled renders config/policy/baseline.yaml's rules with
// the chosen enforcementAction, and the API server accepts it.
func TestBaselinePolicy(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ensureOurCRDs(t)

	g.Expect(ofKind(render(t, "base", "mcp-fleet-system"), "MCPServerPolicy")).To(BeEmpty(), "the baseline policy is opt-in")

	ref, err := decodeObjects(readFile(t, filepath.Join(repoRoot, "config", "policy", "baseline.yaml")))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ref).To(HaveLen(1))
	want, _, _ := unstructured.NestedMap(ref[0].Object, "spec")
	g.Expect(want).To(HaveKey("rules"))
	delete(want, "enforcementAction")

	for _, c := range []struct {
		args   []string
		action string
	}{
		{args: []string{"--set", "baselinePolicy.enabled=true"}, action: "Audit"},
		{args: []string{"--set", "baselinePolicy.enabled=true", "--set", "baselinePolicy.enforcementAction=Deny"}, action: "Deny"},
	} {
		pols := ofKind(render(t, "base", "mcp-fleet-system", c.args...), "MCPServerPolicy")
		g.Expect(pols).To(HaveLen(1))
		pol := pols[0]
		g.Expect(pol.GetName()).To(Equal("base-mcp-fleet-operator-baseline"))
		g.Expect(dryRunApply(ctx, pol)).To(Succeed(), "server-side dry-run of the baseline policy")
		got, _, _ := unstructured.NestedMap(pol.Object, "spec")
		g.Expect(got).To(HaveKeyWithValue("enforcementAction", c.action))
		delete(got, "enforcementAction")
		g.Expect(got).To(Equal(want), "the chart's baseline differs from config/policy/baseline.yaml")
	}
}

// TestWebhookWiring: with the webhook on, its objects render and pass server-side dry-run,
// and they point at each other: configuration -> Service -> pod port, CA injection from the
// Certificate whose Secret the manager mounts at its --webhook-cert-dir.
func TestWebhookWiring(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns = "hook-system"
	ensureNamespace(ctx, t, ns, nil)

	// auto follows the cert-manager API; helm template knows no cluster APIs unless told.
	g.Expect(ofKind(render(t, "hook", ns), "ValidatingWebhookConfiguration")).To(BeEmpty())
	g.Expect(managerArgs(g, render(t, "hook", ns))).To(ContainElement("--enable-webhooks=false"))
	g.Expect(ofKind(render(t, "hook", ns, "--api-versions", "cert-manager.io/v1/Certificate"), "ValidatingWebhookConfiguration")).To(HaveLen(1))
	g.Expect(ofKind(render(t, "hook", ns, "--api-versions", "cert-manager.io/v1/Certificate", "--set", "webhook.enabled=false"), "ValidatingWebhookConfiguration")).To(BeEmpty())

	objs := render(t, "hook", ns, "--set", "webhook.enabled=true")
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			continue // the CRDs are dry-run in TestServerSideDryRun
		}
		g.Expect(dryRunApply(ctx, o)).To(Succeed(), "server-side dry-run of %s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
	}

	vwcs := ofKind(objs, "ValidatingWebhookConfiguration")
	g.Expect(vwcs).To(HaveLen(1))
	vwc := vwcs[0]
	hooks, _, _ := unstructured.NestedSlice(vwc.Object, "webhooks")
	g.Expect(hooks).To(HaveLen(1))
	hook := hooks[0].(map[string]any)
	g.Expect(hook).To(HaveKeyWithValue("failurePolicy", "Fail"))
	g.Expect(hook).NotTo(HaveKey("namespaceSelector"), "cluster mode validates every namespace")

	// The same webhook as config/webhook, apart from where its Service lives.
	ref, err := decodeObjects(readFile(t, filepath.Join(repoRoot, "config", "webhook", "manifests.yaml")))
	g.Expect(err).NotTo(HaveOccurred())
	refHooks, _, _ := unstructured.NestedSlice(ref[0].Object, "webhooks")
	g.Expect(refHooks).To(HaveLen(1))
	refHook := refHooks[0].(map[string]any)
	for _, k := range []string{"name", "admissionReviewVersions", "sideEffects", "failurePolicy", "matchPolicy", "timeoutSeconds", "rules"} {
		g.Expect(hook[k]).To(Equal(refHook[k]), "webhook field %s differs from config/webhook/manifests.yaml", k)
	}
	refPath, _, _ := unstructured.NestedString(refHook, "clientConfig", "service", "path")
	svcName, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "name")
	svcNS, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "namespace")
	svcPath, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "path")
	g.Expect(svcNS).To(Equal(ns))
	g.Expect(svcPath).To(Equal(refPath))
	svcPort, _, _ := unstructured.NestedFieldNoCopy(hook, "clientConfig", "service", "port")
	g.Expect(svcPort).To(BeEquivalentTo(443))

	// The Service in the release namespace, on that port, to the pods' webhook port.
	svc := find(objs, "Service", ns, svcName)
	g.Expect(svc).NotTo(BeNil(), "the webhook configuration targets no rendered Service")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	g.Expect(ports).To(ConsistOf(And(HaveKeyWithValue("port", BeEquivalentTo(443)), HaveKeyWithValue("targetPort", "webhook"))))
	sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")

	deps := ofKind(objs, "Deployment")
	g.Expect(deps).To(HaveLen(1))
	var d appsv1.Deployment
	g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(deps[0].Object, &d)).To(Succeed())
	for k, v := range sel {
		g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue(k, v), "the webhook Service does not select the operator pods")
	}
	c := d.Spec.Template.Spec.Containers[0]
	g.Expect(c.Ports).To(ContainElement(And(HaveField("Name", "webhook"), HaveField("ContainerPort", BeEquivalentTo(9443)))))
	g.Expect(c.Args).To(ContainElements("--enable-webhooks=true", "--webhook-port=9443"))
	certDir := ""
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--webhook-cert-dir="); ok {
			certDir = v
		}
	}
	g.Expect(certDir).NotTo(BeEmpty())
	g.Expect(c.VolumeMounts).To(ContainElement(And(HaveField("MountPath", certDir), HaveField("ReadOnly", true))))
	var secretName string
	for _, m := range c.VolumeMounts {
		if m.MountPath != certDir {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				secretName = v.Secret.SecretName
			}
		}
	}
	g.Expect(secretName).NotTo(BeEmpty(), "no Secret mounted at --webhook-cert-dir")

	// CA injection from the Certificate that writes that Secret, for the Service's DNS name,
	// issued by a self-signed Issuer in the release namespace.
	inject := vwc.GetAnnotations()["cert-manager.io/inject-ca-from"]
	certNS, certName, ok := strings.Cut(inject, "/")
	g.Expect(ok).To(BeTrue(), "cert-manager.io/inject-ca-from is %q", inject)
	g.Expect(certNS).To(Equal(ns))
	cert := find(objs, "Certificate", ns, certName)
	g.Expect(cert).NotTo(BeNil(), "inject-ca-from names no rendered Certificate")
	certSecret, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	g.Expect(certSecret).To(Equal(secretName))
	dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	g.Expect(dns).To(ContainElement(svc.GetName() + "." + ns + ".svc"))
	issuer, _, _ := unstructured.NestedStringMap(cert.Object, "spec", "issuerRef")
	g.Expect(issuer).To(HaveKeyWithValue("kind", "Issuer"))
	iss := find(objs, "Issuer", ns, issuer["name"])
	g.Expect(iss).NotTo(BeNil(), "the webhook Certificate's Issuer is not rendered in the release namespace")
	g.Expect(iss.Object["spec"]).To(HaveKey("selfSigned"))

	// Namespaced mode: the webhook only sees the managed namespaces.
	scoped := ofKind(render(t, "hook", ns, "--set", "webhook.enabled=true", "--set", "watchNamespaces={team-a,team-b}"), "ValidatingWebhookConfiguration")
	g.Expect(scoped).To(HaveLen(1))
	exprs, _, _ := unstructured.NestedSlice(scoped[0].Object["webhooks"].([]any)[0].(map[string]any), "namespaceSelector", "matchExpressions")
	g.Expect(exprs).To(ConsistOf(And(HaveKeyWithValue("key", "kubernetes.io/metadata.name"), HaveKeyWithValue("operator", "In"),
		HaveKeyWithValue("values", ConsistOf("team-a", "team-b")))))
}

func managerArgs(g Gomega, objs []*unstructured.Unstructured) []string {
	deps := ofKind(objs, "Deployment")
	g.Expect(deps).To(HaveLen(1))
	var d appsv1.Deployment
	g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(deps[0].Object, &d)).To(Succeed())
	return d.Spec.Template.Spec.Containers[0].Args
}
