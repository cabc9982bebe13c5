// Package browser_test runs browsercheck (cross-site WebSocket hijacking, in Debian's
// headless Chromium) against mcp-runtime served on 127.0.0.1 with TLS from a test CA and JWT
// auth, in front of the go-sdk everything-server over stdio.
package browser_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/server"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/tlsreload/tlstest"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/upstream"
	"github.com/mcpfleet/mcp-fleet-operator/internal/testutil"
	"github.com/mcpfleet/mcp-fleet-operator/test/browser/browsercheck"
	"github.com/mcpfleet/mcp-fleet-operator/test/conformance/fixture"
)

// runtimeHost is the name the browser uses for the runtime, as it would a Service's
// (NAME.NAMESPACE.svc): Chromium maps it to the 127.0.0.1 listener with
// --host-resolver-rules, and the serving certificate is issued for it.
const runtimeHost = "mcp-runtime.browsercheck.test"

// requireTools skips only where nothing was installed for this test at all: no Chromium and
// no MCP_EVERYTHING_SERVER (so not under `make test`, whose test-deps install both).
func requireTools(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(browsercheck.ChromiumPath()); err != nil && os.Getenv("MCP_EVERYTHING_SERVER") == "" {
		t.Skipf("browser check skipped: no Chromium at %s and MCP_EVERYTHING_SERVER unset; run `make test` (its test-deps install both) or hack/chromium.sh and `make everything-server`", browsercheck.ChromiumPath())
	}
	return browsercheck.Prepare(t)
}

// localRuntime is mcp-runtime serving on 127.0.0.1 for one test.
type localRuntime struct {
	cfg     *config.Config
	addr    string   // client listener, 127.0.0.1:PORT
	metrics string   // http://127.0.0.1:PORT/metrics
	spki    []string // the serving (leaf) certificate's
	caSPKI  []string // the CA's, which the runtime does not send
	token   string
	up      *countingUpstream
	logs    *testutil.SyncBuffer
}

// startRuntime serves TLS (a leaf for runtimeHost from a test CA) and JWT auth with WebSocket
// tickets, allowing only allowedOrigins, in front of the everything-server.
func startRuntime(t *testing.T, allowedOrigins ...string) *localRuntime {
	t.Helper()
	ca := tlstest.NewCA(t, "browsercheck-test-ca")
	leaf := issue(t, ca, runtimeHost)
	vol := tlstest.NewSecretVolume(t, leaf)
	spki, err := browsercheck.SPKIHashes(leaf.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	caSPKI, err := browsercheck.SPKIHashes(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	iss := fixture.NewIssuer(t)
	publicURL := "https://" + runtimeHost + "/mcp"
	ln, hl := listen(t), listen(t)
	cfg := &config.Config{
		Listen:   config.Listen{Address: ln.Addr().String(), HealthAddress: hl.Addr().String()},
		TLS:      config.TLS{CertFile: vol.CertFile(), KeyFile: vol.KeyFile()},
		Endpoint: config.Endpoint{PublicURL: publicURL, Transports: []string{config.TransportStreamableHTTP, config.TransportSSE, config.TransportWebSocket}},
		Origins:  config.Origins{Allowed: allowedOrigins},
		Auth:     config.Auth{JWT: []config.JWTProvider{iss.Provider()}},
		Upstream: config.Upstream{RequestTimeout: config.D(10 * time.Second), ShutdownGrace: config.D(2 * time.Second)},
		Audit:    config.Audit{File: filepath.Join(t.TempDir(), "audit.log")},
	}
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	logs := &testutil.SyncBuffer{Limit: 4 << 20}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	stdio, err := upstream.NewStdio(cfg.Upstream, []string{fixture.EverythingServer(t)}, upstream.Options{Logger: log, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	up := &countingUpstream{Upstream: stdio}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Build(ctx, cfg, server.Options{Upstream: up, Logger: log, LogOutput: logs, DrainTimeout: 2 * time.Second})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := up.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, hl) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runtime stopped with an error: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("runtime did not stop within 10s")
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = srv.Close(cctx)
		if t.Failed() {
			l := logs.String()
			t.Logf("runtime log (last 20 KB):\n%s", l[max(0, len(l)-20<<10):])
		}
	})
	r := &localRuntime{
		cfg: cfg, addr: ln.Addr().String(), metrics: "http://" + hl.Addr().String() + "/metrics",
		spki: spki, caSPKI: caSPKI, token: iss.Token(t, "alice", publicURL, 10*time.Minute), up: up, logs: logs,
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + hl.Addr().String() + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("runtime not ready within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// target is how Chromium reaches r: by name on port 443, mapped to the loopback listener.
func (r *localRuntime) target(node string, pages *browsercheck.Pages) browsercheck.Target {
	return browsercheck.Target{
		BaseURL:    "https://" + runtimeHost + ":443",
		Path:       "/mcp",
		ResolveTo:  r.addr,
		TrustSPKI:  r.spki,
		Token:      r.token,
		Pages:      pages,
		MetricsURL: r.metrics,
		Node:       node,
		Chromium:   browsercheck.ChromiumPath(),
		Timeout:    3 * time.Minute,
	}
}

func (r *localRuntime) audit() []map[string]any {
	b, _ := os.ReadFile(r.cfg.Audit.File)
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// issue signs a serving certificate for host, as cert-manager would for a Service name.
func issue(t *testing.T, ca *tlstest.CA, host string) *tlstest.Leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{host},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &tlstest.Leaf{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		Serial:  serial,
	}
}

// countingUpstream counts the upstream sessions the runtime opened: a refused browser never
// gets one.
type countingUpstream struct {
	upstream.Upstream
	mu       sync.Mutex
	sessions int
}

func (c *countingUpstream) NewSession(ctx context.Context) (upstream.Session, error) {
	s, err := c.Upstream.NewSession(ctx)
	if err == nil {
		c.mu.Lock()
		c.sessions++
		c.mu.Unlock()
	}
	return s, err
}

func (c *countingUpstream) Sessions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessions
}

func TestCrossSiteWebSocketHijackingInChromium(t *testing.T) {
	node := requireTools(t)
	pages, err := browsercheck.ServePages("", "")
	if err != nil {
		t.Fatal(err)
	}
	defer pages.Close()
	rt := startRuntime(t, pages.AllowedOrigin)
	// Chromium's profile goes to TMPDIR: a private one shows it is removed afterwards (short:
	// Chromium's singleton socket lives below it).
	tmp, err := os.MkdirTemp("/tmp", "bct-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	t.Setenv("TMPDIR", tmp)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := browsercheck.Run(ctx, rt.target(node, pages))
	t.Logf("browser check:\n%s", res.Summary())
	g := NewWithT(t)
	g.Expect(err).NotTo(HaveOccurred())

	// What only a local runtime shows: the foreign page never reached the upstream, the
	// audit log or the ticket check, and nothing secret reached the logs.
	g.Expect(rt.up.Sessions()).To(Equal(2), "upstream sessions: the allowed page's and the replay's, none for the foreign page")
	g.Eventually(rt.audit).WithTimeout(5 * time.Second).WithPolling(50 * time.Millisecond).Should(ContainElement(
		And(HaveKeyWithValue("kind", "tool_call"), HaveKeyWithValue("tool", "json_schema_2020_12_tool"), HaveKeyWithValue("origin", pages.AllowedOrigin))))
	var calls, foreign int
	for _, r := range rt.audit() {
		if r["kind"] == "tool_call" && r["outcome"] == "ok" {
			calls++
		}
		if r["origin"] == pages.ForeignOrigin {
			foreign++
		}
	}
	g.Expect(calls).To(Equal(2), "audited tool calls: the allowed page's and the replay's")
	g.Expect(foreign).To(BeZero(), "the foreign page's requests were refused before authentication and auditing")
	g.Expect(rt.logs.String()).NotTo(ContainSubstring(rt.token), "tokens never reach the logs")
	g.Expect(rt.logs.String()).NotTo(ContainSubstring("mt1."), "tickets never reach the logs")

	left, err := os.ReadDir(tmp)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(left).To(BeEmpty(), "Chromium's temporary profile is removed")
	g.Expect(processesMentioning(tmp)).To(BeEmpty(), "no Chromium process is left")
}

// processesMentioning lists the live processes whose command line contains s.
func processesMentioning(s string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), s) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return out
}

// The check must fail where hijacking works: a runtime that also allows the foreign origin.
func TestBrowserCheckFailsWhenTheForeignOriginIsAllowed(t *testing.T) {
	node := requireTools(t)
	pages, err := browsercheck.ServePages("", "")
	if err != nil {
		t.Fatal(err)
	}
	defer pages.Close()
	rt := startRuntime(t, pages.AllowedOrigin, pages.ForeignOrigin)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := browsercheck.Run(ctx, rt.target(node, pages))
	t.Logf("browser check against an open runtime:\n%s\nerror: %v", res.Summary(), err)
	g := NewWithT(t)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("foreign page: the upgrade without a ticket: the WebSocket opened"))
	g.Expect(err.Error()).To(ContainSubstring("foreign page: fetch POST /auth/ticket must fail"))
	g.Expect(res.Foreign.NoTicket.Opened).To(BeTrue(), "the foreign page really opened a socket")
	g.Expect(res.Allowed.Session).NotTo(BeNil())
	g.Expect(res.Allowed.Session.Text()).To(ContainSubstring("browsercheck-"), "the allowed page worked as usual")
}

// Chromium trusts the runtime only through the pin of the certificate it serves: pinning the
// CA, which the runtime does not send, leaves the certificate untrusted.
func TestBrowserCheckNeedsTheServingCertificatePinned(t *testing.T) {
	node := requireTools(t)
	pages, err := browsercheck.ServePages("", "")
	if err != nil {
		t.Fatal(err)
	}
	defer pages.Close()
	rt := startRuntime(t, pages.AllowedOrigin)
	target := rt.target(node, pages)
	target.TrustSPKI = rt.caSPKI

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := browsercheck.Run(ctx, target)
	g := NewWithT(t)
	g.Expect(err).To(MatchError(ContainSubstring("TrustSPKI must hold the SPKI hash")))
	g.Expect(res.Allowed.Ticket.OK).To(BeFalse())
	g.Expect(res.Network["allowed"]).To(ContainElement(HaveField("ErrorText", ContainSubstring("ERR_CERT"))), "Chromium refused the certificate")
	t.Logf("pinning the CA: %v; ticket fetch %q", err, res.Allowed.Ticket.Error)
}
