package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	return string(b)
}

type fakeAudit struct{ dropped, errors uint64 }

func (f fakeAudit) Dropped() uint64 { return f.dropped }
func (f fakeAudit) Errors() uint64  { return f.errors }

func TestScrapeExpectedSeries(t *testing.T) {
	g := NewWithT(t)
	m := New()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	m.ObserveRPC("streamable-http", "tools/call", "ok", 3*time.Millisecond)
	m.ObserveRPC("streamable-http", "tools/call", "ok", 0)
	m.ObserveRPC("websocket", "tools/call", "invalid", 0)
	m.ObserveRPC("websocket", "evil/"+strings.Repeat("x", 50), "ok", time.Millisecond) // client-chosen method
	m.ObserveRPC("websocket", "", "ok", 0)                                             // a response
	m.AuthDecision("jwt", "allow")
	m.AuthDecision("", "deny")
	m.AuthDecision("alice@example.com", "deny") // a mistake in the caller must not leak a principal
	m.OriginRejected("origin")
	m.RateLimited("tool")
	m.ValidationFailure("arguments")
	m.ValidationFailure("Bad Reason With Spaces")
	m.UpstreamRestart()
	m.ConnOpened("websocket")
	m.ConnOpened("websocket")
	m.ConnClosed("websocket")
	m.SessionOpened("streamable-http")
	m.MessageDropped("sse")
	g.Expect(m.WatchAudit(fakeAudit{dropped: 7, errors: 2})).To(Succeed())
	g.Expect(m.WatchLog(fakeAudit{dropped: 5, errors: 1})).To(Succeed())

	expected := `
# HELP mcp_runtime_rpc_requests_total JSON-RPC messages from clients by transport, MCP method and outcome.
# TYPE mcp_runtime_rpc_requests_total counter
mcp_runtime_rpc_requests_total{method="other",outcome="ok",transport="websocket"} 1
mcp_runtime_rpc_requests_total{method="response",outcome="ok",transport="websocket"} 1
mcp_runtime_rpc_requests_total{method="tools/call",outcome="invalid",transport="websocket"} 1
mcp_runtime_rpc_requests_total{method="tools/call",outcome="ok",transport="streamable-http"} 2
# HELP mcp_runtime_auth_decisions_total Authentication decisions by method (jwt, apikey, ticket, first-message, anonymous) and outcome.
# TYPE mcp_runtime_auth_decisions_total counter
mcp_runtime_auth_decisions_total{method="jwt",outcome="allow"} 1
mcp_runtime_auth_decisions_total{method="none",outcome="deny"} 1
mcp_runtime_auth_decisions_total{method="other",outcome="deny"} 1
# HELP mcp_runtime_origin_rejections_total Requests refused by the Origin or Host check.
# TYPE mcp_runtime_origin_rejections_total counter
mcp_runtime_origin_rejections_total{reason="origin"} 1
# HELP mcp_runtime_rate_limited_total Requests or messages refused by a rate or connection limit.
# TYPE mcp_runtime_rate_limited_total counter
mcp_runtime_rate_limited_total{scope="tool"} 1
# HELP mcp_runtime_validation_failures_total Messages refused by JSON-RPC, tool policy or argument schema validation.
# TYPE mcp_runtime_validation_failures_total counter
mcp_runtime_validation_failures_total{reason="arguments"} 1
mcp_runtime_validation_failures_total{reason="other"} 1
# HELP mcp_runtime_upstream_restarts_total Restarts of the upstream MCP server process.
# TYPE mcp_runtime_upstream_restarts_total counter
mcp_runtime_upstream_restarts_total 1
# HELP mcp_runtime_active_connections Open client connections (WebSocket, SSE streams) by transport.
# TYPE mcp_runtime_active_connections gauge
mcp_runtime_active_connections{transport="websocket"} 1
# HELP mcp_runtime_active_sessions Open MCP sessions by transport.
# TYPE mcp_runtime_active_sessions gauge
mcp_runtime_active_sessions{transport="streamable-http"} 1
# HELP mcp_runtime_messages_dropped_total Messages to clients dropped because the client did not read them in time.
# TYPE mcp_runtime_messages_dropped_total counter
mcp_runtime_messages_dropped_total{transport="sse"} 1
# HELP mcp_runtime_audit_lines_dropped_total Audit lines dropped because the audit writer could not keep up.
# TYPE mcp_runtime_audit_lines_dropped_total counter
mcp_runtime_audit_lines_dropped_total 7
# HELP mcp_runtime_audit_write_errors_total Audit lines that failed to encode or write.
# TYPE mcp_runtime_audit_write_errors_total counter
mcp_runtime_audit_write_errors_total 2
# HELP mcp_runtime_log_lines_dropped_total Log lines (access log included) dropped because stderr could not keep up.
# TYPE mcp_runtime_log_lines_dropped_total counter
mcp_runtime_log_lines_dropped_total 5
# HELP mcp_runtime_log_write_errors_total Log lines that failed to write to stderr.
# TYPE mcp_runtime_log_write_errors_total counter
mcp_runtime_log_write_errors_total 1
`
	g.Expect(testutil.ScrapeAndCompare(srv.URL, strings.NewReader(expected),
		"mcp_runtime_rpc_requests_total", "mcp_runtime_auth_decisions_total", "mcp_runtime_origin_rejections_total",
		"mcp_runtime_rate_limited_total", "mcp_runtime_validation_failures_total", "mcp_runtime_upstream_restarts_total",
		"mcp_runtime_active_connections", "mcp_runtime_active_sessions", "mcp_runtime_messages_dropped_total",
		"mcp_runtime_audit_lines_dropped_total", "mcp_runtime_audit_write_errors_total",
		"mcp_runtime_log_lines_dropped_total", "mcp_runtime_log_write_errors_total",
	)).To(Succeed())

	body := scrape(t, srv.URL)
	// Latency only for the two observations with a duration.
	g.Expect(body).To(ContainSubstring(`mcp_runtime_rpc_request_duration_seconds_count{method="tools/call",transport="streamable-http"} 1`))
	g.Expect(body).To(ContainSubstring(`mcp_runtime_rpc_request_duration_seconds_count{method="other",transport="websocket"} 1`))
	g.Expect(body).To(ContainSubstring("go_goroutines "))
	g.Expect(body).To(ContainSubstring("process_cpu_seconds_total "))
	g.Expect(body).NotTo(ContainSubstring("evil"))
	g.Expect(body).NotTo(ContainSubstring("alice"))
	for _, line := range strings.Split(body, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "go_") && !strings.HasPrefix(line, "process_") {
			g.Expect(line).To(HavePrefix("mcp_runtime_"))
		}
	}

	// Nothing lands in the global registry.
	fams, err := prometheus.DefaultGatherer.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range fams {
		g.Expect(f.GetName()).NotTo(HavePrefix("mcp_runtime_"))
	}
	// Two Metrics coexist (tests, restarts) without duplicate-registration panics.
	g.Expect(New()).NotTo(BeIdenticalTo(m))
}

func TestMiddleware(t *testing.T) {
	g := NewWithT(t)
	m := New()
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/teapot", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		_, _ = w.Write([]byte("data: x\n\n"))
	})
	mux.HandleFunc("/upgrade", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer func() { _ = conn.Close() }()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
	})
	srv := httptest.NewServer(m.Middleware(mux))
	defer srv.Close()
	metricsSrv := httptest.NewServer(m.Handler())
	defer metricsSrv.Close()

	for _, p := range []string{"/ok", "/ok", "/teapot", "/sse"} {
		resp, err := http.Get(srv.URL + p)
		g.Expect(err).NotTo(HaveOccurred())
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	req, _ := http.NewRequest("PATCH", srv.URL+"/upgrade", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "x")
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusSwitchingProtocols))
	_ = resp.Body.Close()

	g.Eventually(func() string { return scrape(t, metricsSrv.URL) }).WithTimeout(5 * time.Second).Should(And(
		ContainSubstring(`mcp_runtime_http_requests_total{code="200",method="GET"} 3`),
		ContainSubstring(`mcp_runtime_http_requests_total{code="418",method="GET"} 1`),
		ContainSubstring(`mcp_runtime_http_requests_total{code="101",method="other"} 1`),
		// The SSE stream and the hijacked connection stay out of the duration histogram.
		ContainSubstring(`mcp_runtime_http_request_duration_seconds_count{method="GET"} 3`),
		ContainSubstring(`mcp_runtime_http_requests_in_flight 0`),
	))
}

func TestLabelNormalisation(t *testing.T) {
	g := NewWithT(t)
	g.Expect(Method("tools/call")).To(Equal("tools/call"))
	g.Expect(Method("notifications/tools/list_changed")).To(Equal("notifications/tools/list_changed"))
	g.Expect(Method("Tools/Call")).To(Equal("other"))
	g.Expect(Method("")).To(Equal("response"))
	g.Expect(word("streamable-http")).To(Equal("streamable-http"))
	g.Expect(word("rate_limited")).To(Equal("rate_limited"))
	g.Expect(word("")).To(Equal("none"))
	g.Expect(word(strings.Repeat("a", 33))).To(Equal("other"))
	g.Expect(word("a b")).To(Equal("other"))
	g.Expect(httpMethod("BREW")).To(Equal("other"))
}

func TestNilMetricsIsOff(t *testing.T) {
	g := NewWithT(t)
	var m *Metrics
	m.ObserveRPC("websocket", "ping", "ok", time.Second)
	m.AuthDecision("jwt", "allow")
	m.OriginRejected("origin")
	m.RateLimited("client")
	m.ValidationFailure("parse")
	m.UpstreamRestart()
	m.ConnOpened("sse")
	m.ConnClosed("sse")
	m.SessionOpened("sse")
	m.SessionClosed("sse")
	m.MessageDropped("sse")
	g.Expect(m.WatchAudit(fakeAudit{})).To(Succeed())
	g.Expect(m.WatchLog(fakeAudit{})).To(Succeed())
	g.Expect(m.Registry()).To(BeNil())
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	rec := httptest.NewRecorder()
	m.Middleware(h).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	g.Expect(rec.Code).To(Equal(http.StatusNoContent))
	rec = httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	g.Expect(rec.Code).To(Equal(http.StatusNotFound))
}
