// Package wsclient_test drives mcp-runtime's WebSocket transport with a client written by
// others: the TypeScript MCP SDK's WebSocketClientTransport (Node 22), over wss with a test
// CA, authenticated by a single-use ticket, to the go-sdk everything-server over stdio.
package wsclient_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/test/conformance/fixture"
)

const allowedOrigin = "https://app.example.com"

// clientOutput is client.mjs's one line of JSON.
type clientOutput struct {
	OK     bool     `json:"ok"`
	Error  string   `json:"error"`
	Tools  []string `json:"tools"`
	Server struct {
		Name string `json:"name"`
	} `json:"server"`
	Result struct {
		IsError bool `json:"isError"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	} `json:"result"`
}

type env struct {
	rt    *fixture.Runtime
	pki   *fixture.PKI
	node  *fixture.NodeJS
	token string
}

func setup(t *testing.T) *env {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	node := fixture.Node(t, dir)
	pki := fixture.NewPKI(t)
	iss := fixture.NewIssuer(t)
	ln := fixture.Listen(t)
	publicURL := "https://" + ln.Addr().String() + "/mcp"
	cfg := &config.Config{
		Listen:   config.Listen{Address: ln.Addr().String(), HealthAddress: "127.0.0.1:0"},
		TLS:      config.TLS{CertFile: pki.Volume.CertFile(), KeyFile: pki.Volume.KeyFile()},
		Endpoint: config.Endpoint{PublicURL: publicURL, Transports: []string{config.TransportStreamableHTTP, config.TransportWebSocket}},
		Origins:  config.Origins{Allowed: []string{allowedOrigin}},
		Auth: config.Auth{
			JWT:       []config.JWTProvider{iss.Provider()},
			WebSocket: config.WebSocketAuth{FirstMessage: config.FirstMessage{Disabled: true}}, // tickets only
		},
		Upstream: config.Upstream{RequestTimeout: config.D(10 * time.Second), ShutdownGrace: config.D(2 * time.Second)},
		Audit:    config.Audit{File: filepath.Join(t.TempDir(), "audit.log")},
	}
	rt := fixture.StartRuntime(t, ln, cfg, fixture.EverythingServer(t))
	return &env{rt: rt, pki: pki, node: node, token: iss.Token(t, "alice", publicURL, 5*time.Minute)}
}

// ticket asks POST /auth/ticket for a single-use WebSocket ticket, as a page from origin.
func (e *env) ticket(t *testing.T, origin string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "https://"+e.rt.Addr+"/auth/ticket", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Origin", origin)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig(e.pki)}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out struct {
		Ticket string `json:"ticket"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil || out.Ticket == "" {
		t.Fatalf("POST /auth/ticket: status %d", resp.StatusCode)
	}
	return out.Ticket
}

// connect runs client.mjs against wss://…/mcp?ticket=… sending origin ("" sends none).
func (e *env) connect(t *testing.T, ticket, origin string) (clientOutput, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	// NODE_EXTRA_CA_CERTS: Node trusts the test CA on top of its own roots, as a user would.
	cmd := e.node.Command(ctx, []string{"NODE_EXTRA_CA_CERTS=" + e.pki.CAFile, "MCP_ORIGIN=" + origin},
		"client.mjs", "wss://"+e.rt.Addr+"/mcp?ticket="+ticket, "test_simple_text")
	stdout, err := cmd.Output()
	var out clientOutput
	if jerr := json.Unmarshal(stdout, &out); jerr != nil {
		stderr := ""
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("client.mjs printed no JSON result (exit: %v): %s\n%s", err, stdout, stderr)
	}
	if out.OK != (err == nil) {
		t.Fatalf("client.mjs exit status (%v) disagrees with its output %s", err, stdout)
	}
	t.Logf("client.mjs: %s", stdout)
	return out, string(stdout)
}

// waitAuthDenial waits for the audit log to record a refused WebSocket auth with reason.
func (e *env) waitAuthDenial(g Gomega, reason string) {
	g.Eventually(func() []map[string]any {
		var hits []map[string]any
		for _, r := range e.rt.AuditRecords() {
			if r["kind"] == "auth" && r["outcome"] == "deny" && r["reason"] == reason {
				hits = append(hits, r)
			}
		}
		return hits
	}).WithTimeout(5*time.Second).WithPolling(50*time.Millisecond).ShouldNot(BeEmpty(), "audit log has no auth denial %q", reason)
}

func TestTypeScriptSDKWebSocketClientWithTicket(t *testing.T) {
	e := setup(t)

	ticket := e.ticket(t, allowedOrigin)
	t.Run("connects, lists tools and calls one", func(t *testing.T) {
		g := NewWithT(t)
		out, raw := e.connect(t, ticket, allowedOrigin)
		g.Expect(out.OK).To(BeTrue(), raw)
		g.Expect(out.Server.Name).NotTo(BeEmpty(), "the upstream's initialize result reached the SDK")
		g.Expect(out.Tools).To(ContainElements("test_simple_text", "json_schema_2020_12_tool"))
		g.Expect(out.Result.IsError).To(BeFalse(), raw)
		g.Expect(out.Result.Content).To(ContainElement(HaveField("Text", ContainSubstring("simple text"))), raw)
	})

	t.Run("the same ticket again is refused", func(t *testing.T) {
		g := NewWithT(t)
		out, raw := e.connect(t, ticket, allowedOrigin)
		g.Expect(out.OK).To(BeFalse(), raw)
		e.waitAuthDenial(g, "ticket_replayed")
	})

	// What Node's WebSocket sends by default: no Origin. A ticket is bound to the page that
	// asked for it, so a socket without that Origin cannot redeem it.
	t.Run("without the ticket's Origin it is refused", func(t *testing.T) {
		g := NewWithT(t)
		out, raw := e.connect(t, e.ticket(t, allowedOrigin), "")
		g.Expect(out.OK).To(BeFalse(), raw)
		e.waitAuthDenial(g, "ticket_origin_mismatch")
	})

	g := NewWithT(t)
	g.Expect(e.rt.Logs.String()).NotTo(ContainSubstring(ticket), "tickets never reach the logs")
	g.Expect(e.rt.Logs.String()).NotTo(ContainSubstring(e.token), "tokens never reach the logs")
}

func tlsConfig(p *fixture.PKI) *tls.Config {
	return &tls.Config{RootCAs: p.CA.Pool(), MinVersion: tls.VersionTLS12}
}
