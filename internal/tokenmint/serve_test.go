package tokenmint

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/tlsreload/tlstest"
	"github.com/mcpfleet/mcp-fleet-operator/internal/testutil"
)

// everythingServer finds the go-sdk conformance server: $MCP_EVERYTHING_SERVER, else
// bin/everything-server-v1.8.0 at the module root. Missing is a failure, not a skip.
func everythingServer(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MCP_EVERYTHING_SERVER"); p != "" {
		return p
	}
	p := filepath.Join(moduleRoot(), "bin", "everything-server-v1.8.0")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the everything-server is needed: set MCP_EVERYTHING_SERVER or run `make everything-server` (looked at %s)", p)
	}
	return p
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// servePod runs `mcp-runtime serve` as the pod would: the runtime.yaml of the ConfigMap in
// the API server, the auth Secret's mounted keys and a serving certificate under a
// stand-in for /etc/mcp-runtime, the everything-server as its stdio child. Only the
// listen addresses and the audit file are moved for the test.
func servePod(t *testing.T, r rendered) (base string, client *http.Client) {
	t.Helper()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "tokenmint-test-ca")
	leaf := ca.Issue(t, "runtime")
	if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	for f, b := range map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM} {
		if err := os.WriteFile(filepath.Join(dir, "tls", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := mountedConfig(t, r.runtime, r.secret, dir)
	cfg.Listen.Address, cfg.Listen.HealthAddress = freePort(t), freePort(t)
	cfg.Audit.File = filepath.Join(dir, "audit.log")
	data, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "runtime.yaml")
	if err := os.WriteFile(cfgFile, data, 0o600); err != nil {
		t.Fatal(err)
	}

	logs := &testutil.SyncBuffer{}
	cmd := exec.Command(runtimeBinary(t), "serve", "--config", cfgFile, "--drain-timeout", "2s", "--", everythingServer(t))
	cmd.Stdout, cmd.Stderr = io.Discard, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("mcp-runtime did not stop within 20s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("mcp-runtime log:\n%s", logs.String())
		}
	})

	health := "http://" + cfg.Listen.HealthAddress + "/readyz"
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(health)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("mcp-runtime exited before it was ready: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mcp-runtime not ready within 30s\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, port, _ := net.SplitHostPort(cfg.Listen.Address)
	return "https://localhost:" + port + cfg.Endpoint.Path, &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}},
	}
}

type rpcResponse struct {
	status int
	header http.Header
	body   string
}

func post(t *testing.T, c *http.Client, url, token, session, body string) rpcResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return rpcResponse{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"tokenmint-test","version":"1"}}}`

// session opens an MCP session with token and returns its id.
func session(t *testing.T, c *http.Client, url, token string) string {
	t.Helper()
	g := NewWithT(t)
	r := post(t, c, url, token, "", initialize)
	g.Expect(r.status).To(Equal(http.StatusOK), r.body)
	sid := r.header.Get("Mcp-Session-Id")
	g.Expect(sid).NotTo(BeEmpty())
	g.Expect(post(t, c, url, token, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`).status).To(Equal(http.StatusAccepted))
	return sid
}

// The whole path: `mcp-runtime token` against the API server, `mcp-runtime serve` with
// the server's rendered config and mounted Secret, a real MCP exchange with the token.
func TestServeAcceptsTheMintedToken(t *testing.T) {
	e := startCluster(t)
	e.ensureDemo(t)
	other := e.createServer(t, sampleServer(e.ns, "other"), false)
	url, c := servePod(t, e.rendered(t, "demo"))
	kc := []string{"--kubeconfig", e.kubeconfig, "-n", e.ns}
	callTool := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_simple_text","arguments":{}}}`

	t.Run("no token: 401 with the resource metadata", func(t *testing.T) {
		g := NewWithT(t)
		r := post(t, c, url, "", "", initialize)
		g.Expect(r.status).To(Equal(http.StatusUnauthorized))
		g.Expect(r.header.Get("WWW-Authenticate")).To(ContainSubstring("resource_metadata="))
	})

	t.Run("another server's token: 401", func(t *testing.T) {
		g := NewWithT(t)
		tok := tokenOf(t, mint(t, nil, append(kc, "--server", other.Name)...))
		g.Expect(post(t, c, url, tok, "", initialize).status).To(Equal(http.StatusUnauthorized))
	})

	t.Run("a token without the tool's scope: session yes, tool call 403", func(t *testing.T) {
		g := NewWithT(t)
		tok := tokenOf(t, mint(t, nil, append(kc, "--server", "demo", "--subject", "alice")...))
		sid := session(t, c, url, tok)
		r := post(t, c, url, tok, sid, callTool)
		g.Expect(r.status).To(Equal(http.StatusForbidden))
		g.Expect(r.header.Get("WWW-Authenticate")).To(ContainSubstring(`error="insufficient_scope"`))
		g.Expect(r.header.Get("WWW-Authenticate")).To(ContainSubstring("mcp:tools"))
	})

	t.Run("a token with the scope calls the tool", func(t *testing.T) {
		g := NewWithT(t)
		tok := tokenOf(t, mint(t, nil, append(kc, "--server", "demo", "--subject", "alice", "--scopes", "mcp:tools", "--ttl", "2m")...))
		sid := session(t, c, url, tok)
		r := post(t, c, url, tok, sid, callTool)
		g.Expect(r.status).To(Equal(http.StatusOK), r.body)
		g.Expect(r.body).To(ContainSubstring(`"id":2`))
		g.Expect(r.body).To(ContainSubstring("This is a simple text response for testing."))
		g.Expect(bytes.Contains([]byte(r.body), []byte(`"isError":true`))).To(BeFalse())
	})
}
