//go:build e2e

package e2e_test

import (
	"context"
	"net"
	"net/url"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
	"github.com/mcpfleet/mcp-fleet-operator/test/browser/browsercheck"
)

// browserOrigins are the two page servers of the browser check, started before the
// MCPServer so that its allowlist can name the allowed one.
type browserOrigins struct {
	*browsercheck.Pages
	Allowed string
}

func reserveBrowserOrigins() browserOrigins {
	pages, err := browsercheck.ServePages("", "")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(pages.Close)
	return browserOrigins{Pages: pages, Allowed: pages.AllowedOrigin}
}

// runBrowserCheck is the cross-site WebSocket hijacking scenario in headless Chromium
// against the server's pod: the allowed page calls a tool over the WebSocket, the foreign
// page is refused before any upgrade (test/browser/README.md lists every check).
func runBrowserCheck(ctx context.Context, s server, o browserOrigins) {
	node := browsercheck.Prepare(GinkgoT())
	u, err := url.Parse(s.url(ctx))
	Expect(err).NotTo(HaveOccurred())
	ip, err := serviceIP(ctx, u.Hostname())
	Expect(err).NotTo(HaveOccurred())

	// Pin the certificate the runtime serves now (renewal rotates the key).
	var sec corev1.Secret
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: s.NS, Name: resources.TLSSecretName(s.get(ctx))}, &sec)).To(Succeed())
	spki, err := browsercheck.SPKIHashes(sec.Data["tls.crt"])
	Expect(err).NotTo(HaveOccurred())

	// The pod's metrics port, reached directly from the node (exactly one replica serves).
	pods := s.runningPods(ctx, 1)
	metrics := "http://" + net.JoinHostPort(pods[0].Status.PodIP, "9090") + "/metrics"

	res, err := browsercheck.Run(ctx, browsercheck.Target{
		BaseURL:    "https://" + u.Host,
		Path:       u.Path,
		ResolveTo:  net.JoinHostPort(ip, u.Port()),
		TrustSPKI:  spki,
		Token:      s.token("e2e-browser"),
		Pages:      o.Pages,
		MetricsURL: metrics,
		Node:       node,
	})
	GinkgoWriter.Println(res.Summary())
	Expect(err).NotTo(HaveOccurred(), "the browser check")
}
