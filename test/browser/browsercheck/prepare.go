package browsercheck

import (
	"os"

	"github.com/mcpfleet/mcp-fleet-operator/test/conformance/fixture"
)

// ChromiumPath is $MCP_CHROMIUM, else DefaultChromium.
func ChromiumPath() string {
	if p := os.Getenv("MCP_CHROMIUM"); p != "" {
		return p
	}
	return DefaultChromium
}

// Prepare installs what Run needs besides Chromium — Node 22 (hack/node22.sh, cached) and
// test/browser's npm project from its lock file — and returns the node executable for
// Target.Node. It fails the test when Chromium is missing (hack/chromium.sh installs it).
func Prepare(t fixture.Fataler) (node string) {
	t.Helper()
	if _, err := os.Stat(ChromiumPath()); err != nil {
		t.Fatalf("Chromium is needed at %s: run hack/chromium.sh (or `make test-deps`), or set MCP_CHROMIUM: %v", ChromiumPath(), err)
	}
	return fixture.Node(t, Dir()).Bin
}
