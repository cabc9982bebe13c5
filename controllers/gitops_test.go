package controllers

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
)

// Argo CD syncs with server-side apply under its own field manager and marks what it
// tracks with an annotation (or, in older setups, a label). A GitOps tool must see no drift:
// the operator never writes the spec and never copies the tracking marks onto children.
var _ = Describe("GitOps (Argo CD style server-side apply)", Ordered, func() {
	const manifest = `
apiVersion: mcp.mcpfleet.dev/v1alpha1
kind: MCPServer
metadata:
  name: gitops
  labels:
    argocd.argoproj.io/instance: fleet-app
  annotations:
    argocd.argoproj.io/tracking-id: fleet-app:mcp.mcpfleet.dev/MCPServer:NS/gitops
spec:
  image: ghcr.io/mcpfleet/everything-server:v1.8.0
  command: ["/everything-server"]
  tls:
    secretName: gitops-tls # user-provided: this story must not depend on cert-manager
  origins:
    allowed: ["https://app.example.com"]
`
	var ns string
	apply := func() {
		u := &unstructured.Unstructured{}
		Expect(yaml.Unmarshal([]byte(manifest), &u.Object)).To(Succeed())
		u.SetNamespace(ns)
		Expect(k8sClient.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("argocd-controller"), client.ForceOwnership)).To(Succeed())
	}

	It("applies twice without any change and without the operator owning spec fields", func() {
		ns = newNamespace(nil)
		apply()
		s := &mcpv1alpha1.MCPServer{}
		s.Namespace, s.Name = ns, "gitops"
		dep := child(s, "gitops", &appsv1.Deployment{}).(*appsv1.Deployment)
		Eventually(func() int64 { return getServer(s).Status.ObservedGeneration }, timeout, interval).Should(Equal(int64(1)))

		before := getServer(s)
		apply()
		after := getServer(s)
		Expect(after.Generation).To(Equal(before.Generation), "re-applying the same manifest must not change the spec")
		for _, mf := range after.ManagedFields {
			if mf.Manager == resources.FieldOwner {
				Expect(mf.Subresource).To(Equal("status"), "the operator may only own status fields, found %s on %q", mf.Operation, mf.Subresource)
			}
		}

		By("children carry the operator's labels, never Argo CD's tracking marks")
		for _, obj := range []client.Object{dep, child(s, "gitops", &corev1.Service{}), child(s, "gitops-runtime", &corev1.ConfigMap{})} {
			Expect(obj.GetLabels()).NotTo(HaveKey("argocd.argoproj.io/instance"))
			Expect(obj.GetAnnotations()).NotTo(HaveKey("argocd.argoproj.io/tracking-id"))
		}
		Expect(dep.Spec.Template.Labels).NotTo(HaveKey("argocd.argoproj.io/instance"))
		Expect(dep.Spec.Template.Annotations).NotTo(HaveKey("argocd.argoproj.io/tracking-id"))
	})
})
