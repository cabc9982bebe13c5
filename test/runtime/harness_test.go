// Package runtime_test drives mcp-runtime end to end: real MCP clients written by others
// (the official Go SDK, coder/websocket, plain HTTP) through the in-process server, over
// TLS, to the go-sdk conformance everything-server over stdio.
package runtime_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"github.com/mcpfleet/mcp-fleet-operator/internal/testutil"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/server"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/tlsreload/tlstest"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/upstream"
)

const (
	issuer        = "https://issuer.test"
	publicURL     = "https://mcp.test/mcp"
	allowedOrigin = "https://app.example.com"
	foreignOrigin = "https://evil.example.net"
)

// TestMain doubles as a fake stdio MCP server (see fakeServer) when re-executed with
// MCP_FAKE_SERVER set, so crash tests need no extra binary.
func TestMain(m *testing.M) {
	if os.Getenv("MCP_FAKE_SERVER") != "" {
		fakeServer()
		return
	}
	os.Exit(m.Run())
}

// everythingServer finds the go-sdk conformance server: $MCP_EVERYTHING_SERVER, else
// bin/everything-server-v1.8.0 at the module root. Missing is a failure, not a skip.
func everythingServer(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MCP_EVERYTHING_SERVER"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "bin", "everything-server-v1.8.0")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the everything-server is needed: set MCP_EVERYTHING_SERVER or run `make bin/everything-server-v1.8.0` (looked at %s)", p)
	}
	return p
}

// keys holds the test JWT signer and the PKI.
type keys struct {
	jwtKey   *ecdsa.PrivateKey
	jwtFile  string
	ca       *tlstest.CA
	vol      *tlstest.SecretVolume
	otherKey *ecdsa.PrivateKey
	dir      string
}

func newKeys(t *testing.T) *keys {
	t.Helper()
	k := &keys{ca: tlstest.NewCA(t, "runtime-test-ca"), dir: t.TempDir()}
	k.vol = tlstest.NewSecretVolume(t, k.ca.Issue(t, "runtime-1"))
	var err error
	if k.jwtKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if k.otherKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.jwtKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	k.jwtFile = filepath.Join(t.TempDir(), "jwt.pub")
	if err := os.WriteFile(k.jwtFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// token mints an ES256 JWT for sub; edit changes the claims (bad-token tests).
func (k *keys) token(t *testing.T, sub string, edit func(jwt.MapClaims)) string {
	t.Helper()
	claims := jwt.MapClaims{
		"iss": issuer, "sub": sub, "aud": publicURL,
		"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix(),
		"scope": "mcp:tools",
	}
	if edit != nil {
		edit(claims)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(k.jwtKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// baseConfig is TLS + JWT + every transport, short timeouts, audit to a file.
func baseConfig(k *keys) *config.Config {
	return &config.Config{
		Audit:    config.Audit{File: filepath.Join(k.dir, "audit.log")},
		Listen:   config.Listen{Address: "127.0.0.1:0", HealthAddress: "localhost:0"},
		TLS:      config.TLS{CertFile: k.vol.CertFile(), KeyFile: k.vol.KeyFile()},
		Endpoint: config.Endpoint{PublicURL: publicURL, Transports: []string{config.TransportStreamableHTTP, config.TransportSSE, config.TransportWebSocket}},
		Origins:  config.Origins{Allowed: []string{allowedOrigin}},
		Auth: config.Auth{JWT: []config.JWTProvider{{
			Issuer: issuer, KeyFiles: []config.KeyFile{{Path: k.jwtFile, Algorithm: "ES256"}},
		}}},
		Upstream: config.Upstream{RequestTimeout: config.D(10 * time.Second), ShutdownGrace: config.D(2 * time.Second)},
		Limits:   config.Limits{RequestsPerSecond: 1000, ReadHeaderTimeout: config.D(2 * time.Second)},
	}
}

// rt is one running runtime in front of a stdio upstream.
type rt struct {
	cfg    *config.Config
	keys   *keys
	addr   string // host:port of the TLS listener
	health string
	up     *countingUpstream
	logs   *testutil.SyncBuffer
}

func (r *rt) url(path string) string { return "https://" + r.addr + path }

// auditLines returns the audit log's records so far (the writer is asynchronous: poll).
func (r *rt) auditLines(t *testing.T) []map[string]any {
	t.Helper()
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

// metrics scrapes the health port's /metrics.
func (r *rt) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + r.health + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// client is an HTTPS client trusting the test CA, HTTP/1.1 only (WebSocket upgrades).
func (r *rt) client() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: r.keys.ca.Pool(), ServerName: "localhost"},
		ForceAttemptHTTP2: false,
	}}
}

// start runs the server in-process until the test ends. edit tunes the config; command
// defaults to the everything-server.
func start(t *testing.T, k *keys, edit func(*config.Config), command ...string) *rt {
	t.Helper()
	cfg := baseConfig(k)
	if edit != nil {
		edit(cfg)
	}
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	if len(command) == 0 {
		command = []string{everythingServer(t)}
	}
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var up upstream.Upstream
	var err error
	if cfg.Upstream.Transport == config.UpstreamHTTP {
		up, err = upstream.NewHTTP(cfg.Upstream, upstream.Options{Logger: log})
	} else {
		up, err = upstream.NewStdio(cfg.Upstream, command, upstream.Options{Logger: log, Stderr: io.Discard})
	}
	if err != nil {
		t.Fatal(err)
	}
	cu := &countingUpstream{Upstream: up}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Build(ctx, cfg, server.Options{Upstream: cu, Logger: log, LogOutput: logs, DrainTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, hl) }()
	r := &rt{cfg: cfg, keys: k, addr: ln.Addr().String(), health: hl.Addr().String(), up: cu, logs: logs}
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop within 10s")
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = srv.Close(cctx)
		if t.Failed() {
			t.Logf("runtime log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + r.health + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("runtime not ready within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// countingUpstream records what reached the upstream, to prove refused input never does.
type countingUpstream struct {
	upstream.Upstream
	mu       sync.Mutex
	sessions int
	sent     []string
}

func (c *countingUpstream) NewSession(ctx context.Context) (upstream.Session, error) {
	return c.open(ctx, c.Upstream.NewSession)
}

// NewStatelessSession keeps the wrapped upstream's own process for stateless-revision
// requests when it has one.
func (c *countingUpstream) NewStatelessSession(ctx context.Context) (upstream.Session, error) {
	if st, ok := c.Upstream.(upstream.StatelessSessions); ok {
		return c.open(ctx, st.NewStatelessSession)
	}
	return c.open(ctx, c.Upstream.NewSession)
}

func (c *countingUpstream) open(ctx context.Context, newSession func(context.Context) (upstream.Session, error)) (upstream.Session, error) {
	s, err := newSession(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.sessions++
	c.mu.Unlock()
	return &countingSession{Session: s, c: c}, nil
}

// Sessions counts upstream sessions opened.
func (c *countingUpstream) Sessions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessions
}

// Sent returns the messages relayed so far that contain substr.
func (c *countingUpstream) Sent(substr string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.sent {
		if strings.Contains(m, substr) {
			out = append(out, m)
		}
	}
	return out
}

type countingSession struct {
	upstream.Session
	c *countingUpstream
}

func (s *countingSession) Send(ctx context.Context, msg []byte) error {
	s.c.mu.Lock()
	s.c.sent = append(s.c.sent, string(msg))
	s.c.mu.Unlock()
	return s.Session.Send(ctx, msg)
}

// bearer adds a token to every request of an http.Client.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// post sends a JSON-RPC body to the endpoint with the usual MCP headers plus extra.
func (r *rt) post(t *testing.T, body string, extra map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.url("/mcp"), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	resp, err := r.client().Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(b)
}

// initSession opens a 2025-11-25 session with a raw initialize and returns its id.
func (r *rt) initSession(t *testing.T, token string) string {
	t.Helper()
	resp, body := r.post(t, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`,
		map[string]string{"Authorization": "Bearer " + token})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	sid := resp.Header.Get("Mcp-Session-Id")
	resp, body = r.post(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, r.sessionHeaders(token, sid))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", resp.StatusCode, body)
	}
	return sid
}

// deleteSession ends a session with DELETE and returns the status.
func (r *rt) deleteSession(t *testing.T, headers map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, r.url("/mcp"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := r.client().Do(req)
	if err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func (r *rt) sessionHeaders(token, sid string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token, "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
}

// rpcError decodes the error of a JSON-RPC response body (possibly an SSE stream).
func rpcError(t *testing.T, body string) (code int, message string, data json.RawMessage) {
	t.Helper()
	if strings.HasPrefix(body, "event:") {
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok && strings.Contains(line, `"error"`) {
				body = line
			}
		}
	}
	var m struct {
		Error *struct {
			Code    int             `json:"code"`
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &m); err != nil || m.Error == nil {
		t.Fatalf("not a JSON-RPC error response: %s", body)
	}
	return m.Error.Code, m.Error.Message, m.Error.Data
}

// fakeServer is a minimal stdio MCP server: it answers initialize and tools/list, and on
// tools/call of "crash" exits without answering (a child dying mid-call).
func fakeServer() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	for in.Scan() {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		if json.Unmarshal(in.Bytes(), &m) != nil || m.ID == nil {
			continue
		}
		var result string
		switch m.Method {
		case "initialize":
			result = `{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"1"}}`
		case "tools/list":
			result = `{"tools":[{"name":"crash","inputSchema":{"type":"object"}},{"name":"echo","inputSchema":{"type":"object"}}]}`
		case "tools/call":
			if m.Params.Name == "crash" {
				os.Exit(3)
			}
			result = `{"content":[{"type":"text","text":"ok"}]}`
		default:
			result = `{}`
		}
		_, _ = fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%s,"result":%s}`+"\n", m.ID, result)
		_ = out.Flush()
	}
}
