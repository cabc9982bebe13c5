package docs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/hack/apidocs/gen"
)

const root = "../.."

// TestAPIDocsUpToDate fails when docs/api.md differs from what the CRDs generate.
func TestAPIDocsUpToDate(t *testing.T) {
	g := NewWithT(t)
	want, err := gen.RenderDir(filepath.Join(root, gen.DefaultCRDDir))
	g.Expect(err).NotTo(HaveOccurred())
	got, err := os.ReadFile(filepath.Join(root, "docs", "api.md"))
	g.Expect(err).NotTo(HaveOccurred(), "docs/api.md is missing: run make docs")
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/api.md is out of date with config/crd/bases: run make docs")
	}
}

// TestAPIDocsContent checks the reference carries what the brief promises: both kinds,
// defaults, required markers and the CEL validation messages.
func TestAPIDocsContent(t *testing.T) {
	g := NewWithT(t)
	doc, err := gen.RenderDir(filepath.Join(root, gen.DefaultCRDDir))
	g.Expect(err).NotTo(HaveOccurred())
	s := string(doc)
	g.Expect(s).To(ContainSubstring("## MCPServer v1alpha1"))
	g.Expect(s).To(ContainSubstring("## MCPServerPolicy v1alpha1"))
	g.Expect(s).To(ContainSubstring("`mcp.mcpfleet.dev/v1alpha1`"))
	g.Expect(s).To(ContainSubstring("| `spec.transport` |"))
	g.Expect(s).To(ContainSubstring("spec.metrics.port must differ from spec.endpoint.port"))
	g.Expect(strings.Count(s, "*Validation:*")).To(BeNumerically(">=", 10))
	g.Expect(s).To(MatchRegexp("\\| `spec\\.[a-zA-Z.]+` \\| [a-z]+[^|]* \\| `[^`]+` \\|"), "some default is rendered")

	again, err := gen.RenderDir(filepath.Join(root, gen.DefaultCRDDir))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).To(Equal(doc), "rendering must be deterministic")
}

// TestRenderDirErrors: a directory without CRDs is an error, not an empty document.
func TestRenderDirErrors(t *testing.T) {
	g := NewWithT(t)
	_, err := gen.RenderDir(t.TempDir())
	g.Expect(err).To(MatchError(ContainSubstring("no CRD YAML")))
}
