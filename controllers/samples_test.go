package controllers

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
)

// The samples are what users copy first, and what the example Argo CD Application syncs:
// each must pass the API server's validation (CEL rules included) exactly as written, and
// render into a runtime configuration the runtime accepts.
var _ = Describe("config/samples", func() {
	samplesDir := filepath.Join("..", "config", "samples")
	samples := []string{
		"mcp_v1alpha1_mcpserver_stdio.yaml",
		"mcp_v1alpha1_mcpserver_http.yaml",
		"mcp_v1alpha1_mcpserver_websocket.yaml",
	}

	It("lists every sample in its kustomization", func() {
		b, err := os.ReadFile(filepath.Join(samplesDir, "kustomization.yaml"))
		Expect(err).NotTo(HaveOccurred())
		var k struct {
			Resources []string `json:"resources"`
		}
		Expect(yaml.Unmarshal(b, &k)).To(Succeed())
		Expect(k.Resources).To(ConsistOf(samples))
	})

	for _, file := range samples {
		It("accepts sample "+file+" by server-side dry-run create", func() {
			b, err := os.ReadFile(filepath.Join(samplesDir, file))
			Expect(err).NotTo(HaveOccurred(), "sample %s is missing", file)
			u := &unstructured.Unstructured{}
			Expect(yaml.UnmarshalStrict(b, &u.Object)).To(Succeed())
			Expect(u.GetAPIVersion()).To(Equal(mcpv1alpha1.GroupVersion.String()))
			Expect(u.GetKind()).To(Equal("MCPServer"))
			Expect(u.GetNamespace()).To(BeEmpty(), "samples leave the namespace to kubectl -n / Argo CD")

			u.SetNamespace(newNamespace(nil))
			Expect(k8sClient.Create(ctx, u, client.DryRunAll, client.FieldValidation("Strict"))).To(Succeed())

			// The dry-run answer carries the CRD defaults: what the operator would see.
			s := &mcpv1alpha1.MCPServer{}
			Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, s)).To(Succeed())
			Expect(s.Spec.Endpoint.Port).NotTo(BeZero(), "the dry run did not return the defaulted object")
			Expect(resources.InsecureOptions(s)).To(BeEmpty(), "samples must not teach insecure options")
			cfg := resources.RuntimeConfig(s, testOpts)
			cfg.Default()
			Expect(cfg.Validate()).To(Succeed())
			_, err = resources.Deployment(s, testOpts, "sample")
			Expect(err).NotTo(HaveOccurred())
			_, err = resources.NetworkPolicy(s, testOpts)
			Expect(err).NotTo(HaveOccurred())

			if s.Spec.Transport == mcpv1alpha1.TransportHTTP {
				// DESIGN: http servers bind loopback, so the NetworkPolicy is not the only wall.
				Expect(strings.Join(append(append([]string{}, s.Spec.Command...), s.Spec.Args...), " ")).
					To(ContainSubstring("127.0.0.1"))
			}
		})
	}
})
