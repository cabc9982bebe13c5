// Package metrics holds the runtime's Prometheus metrics, on a registry of its own (never
// the global one), all named mcp_runtime_*.
//
// Labels are low-cardinality by construction: JSON-RPC methods outside the MCP method set
// become "other", and every other label value that is not a short [a-z0-9_-] word becomes
// "other" too, so no client input (principal, tool arguments, arbitrary method or tool
// names) can grow the series count. There is no tool label: with an empty allow list any
// name passes the policy. Every method is safe on a nil *Metrics (metrics off).
package metrics

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "mcp_runtime"

// Metrics is the set of runtime metrics.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests     *prometheus.CounterVec
	httpDuration     *prometheus.HistogramVec
	httpInFlight     prometheus.Gauge
	rpcRequests      *prometheus.CounterVec
	rpcDuration      *prometheus.HistogramVec
	authDecisions    *prometheus.CounterVec
	originRejects    *prometheus.CounterVec
	rateLimited      *prometheus.CounterVec
	validation       *prometheus.CounterVec
	upstreamRestarts prometheus.Counter
	connections      *prometheus.GaugeVec
	sessions         *prometheus.GaugeVec
	dropped          *prometheus.CounterVec
}

// latencyBuckets span the runtime's own overhead (sub-millisecond) to slow tool calls.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// New makes the metrics on a fresh registry with the Go and process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests on the MCP listener by status code and HTTP method."}, []string{"code", "method"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "http_request_duration_seconds",
			Help: "Duration of HTTP requests that are not streams (SSE and WebSocket are left out).", Buckets: latencyBuckets}, []string{"method"}),
		httpInFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "http_requests_in_flight",
			Help: "HTTP requests being served, streams included."}),
		rpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "rpc_requests_total",
			Help: "JSON-RPC messages from clients by transport, MCP method and outcome."}, []string{"transport", "method", "outcome"}),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "rpc_request_duration_seconds",
			Help: "Time from a client request to its response, upstream included.", Buckets: latencyBuckets}, []string{"transport", "method"}),
		authDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "auth_decisions_total",
			Help: "Authentication decisions by method (jwt, apikey, ticket, first-message, anonymous) and outcome."}, []string{"method", "outcome"}),
		originRejects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "origin_rejections_total",
			Help: "Requests refused by the Origin or Host check."}, []string{"reason"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "rate_limited_total",
			Help: "Requests or messages refused by a rate or connection limit."}, []string{"scope"}),
		validation: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "validation_failures_total",
			Help: "Messages refused by JSON-RPC, tool policy or argument schema validation."}, []string{"reason"}),
		upstreamRestarts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "upstream_restarts_total",
			Help: "Restarts of the upstream MCP server process."}),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "active_connections",
			Help: "Open client connections (WebSocket, SSE streams) by transport."}, []string{"transport"}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "active_sessions",
			Help: "Open MCP sessions by transport."}, []string{"transport"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "messages_dropped_total",
			Help: "Messages to clients dropped because the client did not read them in time."}, []string{"transport"}),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.httpRequests, m.httpDuration, m.httpInFlight, m.rpcRequests, m.rpcDuration,
		m.authDecisions, m.originRejects, m.rateLimited, m.validation, m.upstreamRestarts,
		m.connections, m.sessions, m.dropped,
	)
	return m
}

// Registry gives access to the registry, e.g. to add collectors.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the metrics in the Prometheus text (or OpenMetrics) format. With nil
// Metrics it answers 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// ObserveRPC counts one client message and, for requests that got a response, its latency
// (pass d <= 0 for notifications and refusals before relaying).
func (m *Metrics) ObserveRPC(transport, method, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	t, meth := word(transport), Method(method)
	m.rpcRequests.WithLabelValues(t, meth, word(outcome)).Inc()
	if d > 0 {
		m.rpcDuration.WithLabelValues(t, meth).Observe(d.Seconds())
	}
}

// AuthDecision counts one authentication outcome (e.g. method "jwt", outcome "allow").
func (m *Metrics) AuthDecision(method, outcome string) {
	if m == nil {
		return
	}
	if method == "" {
		method = "none"
	}
	m.authDecisions.WithLabelValues(word(method), word(outcome)).Inc()
}

// OriginRejected counts a request refused by the Origin/Host check (reason e.g. "origin",
// "missing_origin", "host").
func (m *Metrics) OriginRejected(reason string) {
	if m == nil {
		return
	}
	m.originRejects.WithLabelValues(word(reason)).Inc()
}

// RateLimited counts a refusal by a limit (scope e.g. "client", "tool", "connections").
func (m *Metrics) RateLimited(scope string) {
	if m == nil {
		return
	}
	m.rateLimited.WithLabelValues(word(scope)).Inc()
}

// ValidationFailure counts a refused message (reason e.g. "parse", "envelope", "batch",
// "unknown_tool", "scope", "arguments", "schema_unavailable").
func (m *Metrics) ValidationFailure(reason string) {
	if m == nil {
		return
	}
	m.validation.WithLabelValues(word(reason)).Inc()
}

// UpstreamRestart counts a restart of the upstream process.
func (m *Metrics) UpstreamRestart() {
	if m == nil {
		return
	}
	m.upstreamRestarts.Inc()
}

// ConnOpened and ConnClosed track open client connections per transport.
func (m *Metrics) ConnOpened(transport string) {
	if m != nil {
		m.connections.WithLabelValues(word(transport)).Inc()
	}
}

// ConnClosed: see ConnOpened.
func (m *Metrics) ConnClosed(transport string) {
	if m != nil {
		m.connections.WithLabelValues(word(transport)).Dec()
	}
}

// SessionOpened and SessionClosed track open MCP sessions per transport.
func (m *Metrics) SessionOpened(transport string) {
	if m != nil {
		m.sessions.WithLabelValues(word(transport)).Inc()
	}
}

// SessionClosed: see SessionOpened.
func (m *Metrics) SessionClosed(transport string) {
	if m != nil {
		m.sessions.WithLabelValues(word(transport)).Dec()
	}
}

// MessageDropped counts a message to a client dropped for a slow reader.
func (m *Metrics) MessageDropped(transport string) {
	if m != nil {
		m.dropped.WithLabelValues(word(transport)).Inc()
	}
}

// LineSource is what WatchAudit and WatchLog read (audit.Logger and logbatch.Writer
// implement it).
type LineSource interface {
	Dropped() uint64
	Errors() uint64
}

// WatchAudit exports the audit log's drop and error counters. Call it once.
func (m *Metrics) WatchAudit(a LineSource) error {
	return m.watchLines(a, "audit", "Audit lines dropped because the audit writer could not keep up.",
		"Audit lines that failed to encode or write.")
}

// WatchLog exports the drop and error counters of the runtime's own log (stderr). Call it
// once.
func (m *Metrics) WatchLog(l LineSource) error {
	return m.watchLines(l, "log", "Log lines (access log included) dropped because stderr could not keep up.",
		"Log lines that failed to write to stderr.")
}

// watchLines registers <what>_lines_dropped_total and <what>_write_errors_total for src.
func (m *Metrics) watchLines(src LineSource, what, droppedHelp, errorsHelp string) error {
	if m == nil || src == nil {
		return nil
	}
	return errors.Join(
		m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: what + "_lines_dropped_total",
			Help: droppedHelp}, func() float64 { return float64(src.Dropped()) })),
		m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: what + "_write_errors_total",
			Help: errorsHelp}, func() float64 { return float64(src.Errors()) })),
	)
}

// mcpMethods are the methods of the MCP revisions the runtime serves; others count as "other".
var mcpMethods = map[string]bool{}

func init() {
	for _, s := range []string{
		"initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read",
		"resources/templates/list", "resources/subscribe", "resources/unsubscribe", "prompts/list",
		"prompts/get", "completion/complete", "logging/setLevel", "roots/list",
		"sampling/createMessage", "elicitation/create", "tasks/get", "tasks/list", "tasks/result",
		"tasks/cancel", "server/discover",
		"notifications/initialized", "notifications/cancelled", "notifications/progress",
		"notifications/message", "notifications/roots/list_changed", "notifications/tools/list_changed",
		"notifications/resources/list_changed", "notifications/resources/updated",
		"notifications/prompts/list_changed", "notifications/elicitation/complete",
		"notifications/tasks/status",
	} {
		mcpMethods[s] = true
	}
}

// Method maps a JSON-RPC method to its label: itself for MCP methods, "response" for
// responses (no method), "other" for anything else.
func Method(method string) string {
	switch {
	case method == "":
		return "response"
	case mcpMethods[method]:
		return method
	}
	return "other"
}

// word keeps short lowercase words as label values; anything else becomes "other".
func word(s string) string {
	if s == "" {
		return "none"
	}
	if len(s) > 32 {
		return "other"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return "other"
		}
	}
	return s
}

func httpMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodOptions, http.MethodHead, http.MethodPut:
		return m
	}
	return "other"
}

// Middleware counts HTTP requests by status code and method, tracks requests in flight and
// observes the duration of requests that are not streams (an SSE response or a hijacked
// WebSocket lasts as long as the client stays, which would swamp the histogram).
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.httpInFlight.Inc()
		rw := &recorder{ResponseWriter: w}
		defer func() {
			m.httpInFlight.Dec()
			code := rw.status
			switch {
			case rw.hijacked:
				code = http.StatusSwitchingProtocols
			case code == 0:
				code = http.StatusOK
			}
			method := httpMethod(r.Method)
			m.httpRequests.WithLabelValues(strconv.Itoa(code), method).Inc()
			if !rw.hijacked && !rw.stream {
				m.httpDuration.WithLabelValues(method).Observe(time.Since(start).Seconds())
			}
		}()
		next.ServeHTTP(rw, r)
	})
}

// recorder notes the status and whether the response became a stream. It implements
// Flusher and Hijacker (through http.ResponseController, so wrapped writers still work)
// and Unwrap for everything else.
type recorder struct {
	http.ResponseWriter
	status   int
	stream   bool
	hijacked bool
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
		r.stream = strings.HasPrefix(r.Header().Get("Content-Type"), "text/event-stream")
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.hijacked = true
	}
	return c, rw, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
