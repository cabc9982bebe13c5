// Command apidocs writes docs/api.md from the CRDs in config/crd/bases.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/mcpfleet/mcp-fleet-operator/hack/apidocs/gen"
)

func main() {
	crdDir := flag.String("crds", gen.DefaultCRDDir, "directory of CRD YAML files")
	out := flag.String("out", "docs/api.md", "output Markdown file")
	flag.Parse()
	doc, err := gen.RenderDir(*crdDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "apidocs:", err)
		os.Exit(1)
	}
	// A document in the repository: world-readable like every other file in it.
	if err := os.WriteFile(*out, doc, 0o644); err != nil { //nolint:gosec // see above
		fmt.Fprintln(os.Stderr, "apidocs:", err)
		os.Exit(1)
	}
}
