package server

import (
	"net/http"
	"strings"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/audit"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/metrics"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/tools"
)

// observer feeds the metrics; a nil *metrics.Metrics records nothing.
type observer struct{ m *metrics.Metrics }

// refused counts a message the pipeline did not relay.
func (o observer) refused(transport, method, reason string) {
	o.m.ValidationFailure(reason)
	if method != "" {
		o.m.ObserveRPC(transport, method, "refused", 0)
	}
}

func (o observer) rateLimited(transport, method, scope string) {
	o.m.RateLimited(scope)
	if method != "" { // a response to the server's request has none
		o.m.ObserveRPC(transport, method, "rate_limited", 0)
	}
}

func (o observer) request(transport, method, outcome string, latency time.Duration) {
	o.m.ObserveRPC(transport, method, outcome, latency)
}

func (o observer) dropped(transport string)       { o.m.MessageDropped(transport) }
func (o observer) sessionOpened(transport string) { o.m.SessionOpened(transport) }
func (o observer) sessionClosed(transport string) { o.m.SessionClosed(transport) }
func (o observer) connOpened(transport string)    { o.m.ConnOpened(transport) }
func (o observer) connClosed(transport string)    { o.m.ConnClosed(transport) }

// audit writes the audit record of a tool call. outcome is "ok", "error", "timeout", … or
// "refused:<reason>" / "rate_limited".
func (s *Server) audit(sess *session, p *pendingCall, outcome string, bytesOut int) {
	if s.deps.Audit == nil {
		return
	}
	reason := ""
	if o, r, ok := strings.Cut(outcome, ":"); ok {
		outcome, reason = o, r
	}
	c := p.from
	s.deps.Audit.Log(audit.Record{
		Kind: audit.KindToolCall, RequestID: p.requestID, Principal: c.subject(),
		Origin: c.origin, RemoteAddr: c.remote, Transport: c.transport,
		Method: p.method, Tool: p.tool, Outcome: outcome, Reason: reason,
		AuthMethod: c.principal.Method, Latency: p.latency(),
		BytesIn: p.bytesIn, BytesOut: bytesOut, Arguments: p.args,
	})
}

// refusedUnadmitted records a message refused before it became a pending call: in the
// metrics, and for a tools/call in the audit log as well (every call is audited, refused
// ones too).
func (s *Server) refusedUnadmitted(c caller, m *jsonrpc.Message, requestID, reason string) {
	s.obs.refused(c.transport, m.Method, reason)
	if m.Method != "tools/call" {
		return
	}
	tool, args, _ := tools.ReadCallParams(m.Params)
	s.audit(nil, &pendingCall{id: m.ID, method: m.Method, tool: tool, args: args, requestID: requestID,
		start: time.Now(), bytesIn: len(m.Raw), from: c}, "refused:"+reason, 0)
}

// OnAuthDecision records authentication outcomes in metrics and the audit log.
func (s *Server) OnAuthDecision(r *http.Request, d auth.Decision) {
	s.obs.m.AuthDecision(d.Method, d.Outcome)
	if s.deps.Audit == nil {
		return
	}
	rec := audit.Record{
		Kind: audit.KindAuth, Principal: d.Subject, Outcome: d.Outcome, Reason: d.Reason, AuthMethod: d.Method,
	}
	if r != nil {
		rec.RequestID, rec.Origin, rec.RemoteAddr, rec.Method = RequestID(r.Context()), r.Header.Get("Origin"), r.RemoteAddr, r.Method
		rec.Transport = s.transportOf(r)
	}
	s.deps.Audit.Log(rec)
}

// transportOf names the client transport a request is for, from its path: authentication
// runs before the transports' routing. The ticket endpoint serves WebSockets only.
func (s *Server) transportOf(r *http.Request) string {
	ep := s.cfg.Endpoint.Path
	switch p := r.URL.Path; {
	case isWebSocketUpgrade(r), p == auth.TicketPath:
		return transportWebSocket
	case p == ep:
		return transportStreamable
	case s.transports[transportSSE] && (p == ep+sseStreamSuffix || p == ep+sseMessageSuffix):
		return transportSSE
	}
	return ""
}
