package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/upstream"
	"github.com/mcpfleet/mcp-fleet-operator/internal/testutil"
)

// everythingServer is the go-sdk conformance server: $MCP_EVERYTHING_SERVER, else
// bin/everything-server-v1.8.0 under the module root. Missing is a failure, not a skip.
func everythingServer(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MCP_EVERYTHING_SERVER"); p != "" {
		return p
	}
	dir, _ := os.Getwd()
	for ; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		if filepath.Dir(dir) == dir {
			t.Fatal("module root not found")
		}
	}
	p := filepath.Join(dir, "bin", "everything-server-v1.8.0")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("set MCP_EVERYTHING_SERVER or run `make test-deps` (expected %s)", p)
	}
	return p
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// httpRuntime is the runtime (plain HTTP, anonymous: this is about relaying, the security
// chain has its own tests) in front of the everything-server serving Streamable HTTP.
type httpRuntime struct {
	url   string
	audit string
	logs  *testutil.SyncBuffer
}

func startHTTPRuntime(t *testing.T) *httpRuntime {
	t.Helper()
	esAddr := freeAddr(t)
	es := exec.Command(everythingServer(t), "-http", esAddr, "-stateless=false")
	if err := es.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = es.Process.Kill(); _ = es.Wait() })
	return startTestRuntime(t, func(c *config.Config) {
		c.Upstream.Transport, c.Upstream.URL = config.UpstreamHTTP, "http://"+esAddr+"/mcp"
	}, nil)
}

// testConfig is the tests' runtime configuration: plain HTTP on 127.0.0.1, anonymous,
// the audit log in dir (before Default).
func testConfig(dir string) *config.Config {
	return &config.Config{
		Listen:   config.Listen{Address: "127.0.0.1:0", HealthAddress: "localhost:0"},
		TLS:      config.TLS{Insecure: true},
		Endpoint: config.Endpoint{PublicURL: "http://127.0.0.1/mcp", Transports: []string{config.TransportStreamableHTTP}},
		Auth:     config.Auth{Anonymous: true},
		Audit:    config.Audit{File: filepath.Join(dir, "audit.log")},
		Upstream: config.Upstream{RequestTimeout: config.D(3 * time.Second), ShutdownGrace: config.D(time.Second)},
	}
}

// buildIdleServer builds a Server from testConfig (returned too) with a child that exits
// at once and serves nothing: for tests that drive its methods directly.
func buildIdleServer(t *testing.T) (*Server, *config.Config) {
	t.Helper()
	cfg := testConfig(t.TempDir())
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := Build(context.Background(), cfg, Options{Command: []string{"/bin/true"}, Logger: slog.New(slog.DiscardHandler), DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return srv, cfg
}

// startTestRuntime serves the runtime on plain HTTP, anonymous, in front of the upstream
// edit configures (default: the stdio everything-server, command).
func startTestRuntime(t *testing.T, edit func(*config.Config), command []string) *httpRuntime {
	t.Helper()
	return startTestRuntimeWith(t, edit, Options{Command: command})
}

// startTestRuntimeWith is startTestRuntime with more Options (its logger and drain timeout
// are the test's).
func startTestRuntimeWith(t *testing.T, edit func(*config.Config), o Options) *httpRuntime {
	t.Helper()
	cfg := testConfig(t.TempDir())
	if edit != nil {
		edit(cfg)
	}
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	logs := &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	o.Logger, o.LogOutput, o.DrainTimeout = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), logs, time.Second
	srv, err := Build(ctx, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Upstream().Start(ctx); err != nil {
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
	t.Cleanup(func() {
		cancel()
		<-done
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = srv.Close(cctx)
		if t.Failed() {
			t.Logf("runtime log:\n%s", logs.String())
		}
	})
	NewWithT(t).Eventually(srv.Upstream().Ready, 10*time.Second, 20*time.Millisecond).Should(BeTrue())
	return &httpRuntime{url: "http://" + ln.Addr().String() + "/mcp", audit: cfg.Audit.File, logs: logs}
}

// post sends one message; accept is the Accept header.
func (h *httpRuntime) post(ctx context.Context, t *testing.T, sid, accept, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", accept)
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

const bothAccepted = "application/json, text/event-stream"

func (h *httpRuntime) open(t *testing.T) string {
	t.Helper()
	g := NewWithT(t)
	resp := h.post(context.Background(), t, "", bothAccepted,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}},"clientInfo":{"name":"t","version":"1"}}}`)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), string(body))
	g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"), "the response came first: a JSON body")
	g.Expect(string(body)).To(ContainSubstring(`"serverInfo"`))
	sid := resp.Header.Get("Mcp-Session-Id")
	g.Expect(sid).NotTo(BeEmpty())
	resp = h.post(context.Background(), t, sid, bothAccepted, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusAccepted))
	return sid
}

// events reads SSE "message" events from r and sends their data to out until the stream ends.
func events(r io.Reader, out chan<- map[string]any) {
	defer close(out)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var m map[string]any
			if json.Unmarshal([]byte(d), &m) == nil {
				out <- m
			}
		}
	}
}

func (h *httpRuntime) auditLines(t *testing.T) []map[string]any {
	b, _ := os.ReadFile(h.audit)
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestHTTPUpstreamPostsAreRelayedOnTheHandlersGoroutine drives the runtime's inline
// exchange (upstream.Exchanger) with the real server: JSON when the response comes first,
// SSE with notifications before the response, notifications a JSON-only client cannot
// take, a server→client request answered on another POST, and a client that leaves.
func TestHTTPUpstreamPostsAreRelayedOnTheHandlersGoroutine(t *testing.T) {
	g := NewWithT(t)
	requireExchanger(t)
	h := startHTTPRuntime(t)
	sid := h.open(t)

	// The response first: a JSON body, validated and audited.
	resp := h.post(context.Background(), t, sid, bothAccepted,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"json_schema_2020_12_tool","arguments":{"name":"a","contactMethod":"email","email":"a@example.com","address":{"street":"1 Main St","city":"X"}}}}`)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
	var m map[string]any
	g.Expect(json.Unmarshal(body, &m)).To(Succeed())
	g.Expect(m).To(HaveKeyWithValue("id", BeEquivalentTo(2)))
	g.Expect(m).To(HaveKey("result"))
	g.Eventually(func() []map[string]any { return h.auditLines(t) }, 2*time.Second).Should(ContainElement(And(
		HaveKeyWithValue("tool", "json_schema_2020_12_tool"), HaveKeyWithValue("outcome", "ok"))))

	// Arguments that do not match the schema are refused by the runtime, never relayed.
	resp = h.post(context.Background(), t, sid, bothAccepted,
		`{"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"json_schema_2020_12_tool","arguments":{"name":7}}}`)
	body, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	g.Expect(json.Unmarshal(body, &m)).To(Succeed(), string(body))
	g.Expect(m).To(HaveKeyWithValue("error", HaveKeyWithValue("code", BeEquivalentTo(-32602))))
	g.Eventually(func() []map[string]any { return h.auditLines(t) }, 2*time.Second).Should(ContainElement(And(
		HaveKeyWithValue("tool", "json_schema_2020_12_tool"), HaveKeyWithValue("outcome", "refused"))))

	// Notifications first: an SSE stream, progress in order, then the response.
	resp = h.post(context.Background(), t, sid, bothAccepted,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"test_tool_with_progress","_meta":{"progressToken":"tok"}}}`)
	g.Expect(resp.Header.Get("Content-Type")).To(Equal("text/event-stream"))
	ch := make(chan map[string]any, 16)
	events(resp.Body, ch)
	_ = resp.Body.Close()
	var got []string
	for e := range ch {
		if meth, ok := e["method"].(string); ok {
			got = append(got, meth)
		} else {
			got = append(got, fmt.Sprintf("response %v", e["id"]))
		}
	}
	g.Expect(got).To(Equal([]string{"notifications/progress", "notifications/progress", "notifications/progress", "response 3"}))

	// A client that takes JSON only gets the response alone.
	resp = h.post(context.Background(), t, sid, "application/json",
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"test_tool_with_progress","_meta":{"progressToken":"t2"}}}`)
	body, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
	g.Expect(json.Unmarshal(body, &m)).To(Succeed(), string(body))
	g.Expect(m).To(HaveKeyWithValue("id", BeEquivalentTo(4)))

	// A server→client request on the call's stream, answered on another POST.
	resp = h.post(context.Background(), t, sid, bothAccepted,
		`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"test_elicitation","arguments":{"message":"ok?"}}}`)
	ch = make(chan map[string]any, 16)
	go events(resp.Body, ch)
	var elicit map[string]any
	g.Eventually(ch, 5*time.Second).Should(Receive(&elicit))
	g.Expect(elicit).To(HaveKeyWithValue("method", "elicitation/create"))
	answer, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": elicit["id"], "result": map[string]any{"action": "accept", "content": map[string]any{}}})
	ar := h.post(context.Background(), t, sid, bothAccepted, string(answer))
	_ = ar.Body.Close()
	g.Expect(ar.StatusCode).To(Equal(http.StatusAccepted))
	var final map[string]any
	g.Eventually(ch, 5*time.Second).Should(Receive(&final))
	g.Expect(final).To(HaveKeyWithValue("id", BeEquivalentTo(5)))
	g.Expect(final).To(HaveKey("result"))
	_ = resp.Body.Close()

	// A client that leaves while the server waits on it: the call is abandoned and audited
	// as cancelled; the session goes on.
	ctx, cancel := context.WithCancel(context.Background())
	resp = h.post(ctx, t, sid, bothAccepted,
		`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"test_elicitation","arguments":{"message":"leaving"}}}`)
	ch = make(chan map[string]any, 16)
	go events(resp.Body, ch)
	g.Eventually(ch, 5*time.Second).Should(Receive(&elicit))
	cancel()
	_ = resp.Body.Close()
	g.Eventually(func() []map[string]any { return h.auditLines(t) }, 3*time.Second).Should(ContainElement(And(
		HaveKeyWithValue("tool", "test_elicitation"), HaveKeyWithValue("outcome", "cancelled"))))
	resp = h.post(context.Background(), t, sid, bothAccepted, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_simple_text"}}`)
	body, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	g.Expect(string(body)).To(ContainSubstring(`"id":7`))
}

// requireExchanger checks that the HTTP upstream offers the inline exchange the test is about.
func requireExchanger(t *testing.T) {
	t.Helper()
	u, err := upstream.NewHTTP(config.Upstream{URL: "http://127.0.0.1:1/mcp"}, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := u.NewSession(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if _, ok := s.(upstream.Exchanger); !ok {
		t.Fatal("HTTP upstream sessions do not implement upstream.Exchanger")
	}
}
