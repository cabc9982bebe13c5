package runtime_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/tlsreload/tlstest"
)

// With tls.clientAuth require, only clients holding a certificate from the configured CA
// bundle get a TLS session; replacing the bundle (as a rotated Secret does) changes who that
// is without restarting the runtime.
func TestClientCertificatesFollowTheCABundle(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	ca2025, ca2026 := tlstest.NewCA(t, "clients-2025"), tlstest.NewCA(t, "clients-2026")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	replaceBundle := func(pem []byte) {
		g.Expect(os.WriteFile(caFile+".tmp", pem, 0o600)).To(Succeed())
		g.Expect(os.Rename(caFile+".tmp", caFile)).To(Succeed())
	}
	replaceBundle(ca2025.CertPEM)
	r := start(t, k, func(c *config.Config) {
		c.TLS.ClientAuth = config.ClientAuthRequire
		c.TLS.ClientCAFile = caFile
	})
	listTools := func(cert ...tls.Certificate) error {
		hc := r.authedClient(t, "alice")
		hc.Transport.(bearer).base.(*http.Transport).TLSClientConfig.Certificates = cert
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := mcp.NewClient(&mcp.Implementation{Name: "mtls-test", Version: "1"}, nil).
			Connect(ctx, &mcp.StreamableClientTransport{Endpoint: r.url("/mcp"), HTTPClient: hc, MaxRetries: -1}, nil)
		if err != nil {
			return err
		}
		defer func() { _ = s.Close() }()
		_, err = s.ListTools(ctx, nil)
		return err
	}
	alice, bob := ca2025.Issue(t, "alice").TLSCertificate(t), ca2026.Issue(t, "bob").TLSCertificate(t)

	g.Expect(listTools(alice)).To(Succeed())
	refusedByTLS := MatchError(ContainSubstring("remote error: tls:"))
	g.Expect(listTools()).To(refusedByTLS, "no client certificate")
	g.Expect(listTools(bob)).To(refusedByTLS, "a certificate from a CA not in the bundle")

	replaceBundle(ca2026.CertPEM)
	g.Eventually(func() error { return listTools(bob) }, 10*time.Second, 100*time.Millisecond).Should(Succeed())
	g.Expect(listTools(alice)).To(refusedByTLS, "the CA dropped from the bundle no longer verifies anyone")
	g.Expect(r.logs.String()).To(ContainSubstring("Client CA bundle reloaded"))
}
