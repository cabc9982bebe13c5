package server

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
)

// Legacy HTTP+SSE transport (protocol 2024-11-05): GET <path>/sse opens the stream and
// names, in its first "endpoint" event, the URL to POST messages to:
// <path>/message?sessionId=<id>. Responses and server messages arrive on the stream.
const (
	sseStreamSuffix  = "/sse"
	sseMessageSuffix = "/message"
)

func (s *Server) sseStream(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed")
		return
	}
	c := s.callerOf(r, transportSSE)
	up, release, err := s.openUpstream(c, false)
	if errors.Is(err, errShareUsed) {
		w.Header().Set("Retry-After", "1")
		writeJSONError(w, http.StatusTooManyRequests, "too_many_sessions")
		return
	}
	if err != nil {
		s.log.Warn("Opening an upstream session failed", "error", err)
		writeJSONError(w, http.StatusServiceUnavailable, "upstream_unavailable")
		return
	}
	sess := newSession(s, newID(16), up, c)
	sess.release = release
	sink := &streamSink{ch: make(chan []byte, 64)}
	sess.setStream(sink)
	if status := s.sessions.add(sess); status != 0 {
		sess.close()
		w.Header().Set("Retry-After", "1")
		writeJSONError(w, status, "too_many_sessions")
		return
	}
	s.obs.connOpened(transportSSE)
	defer func() {
		s.sessions.remove(sess.id)
		sess.close()
		s.obs.connClosed(transportSSE)
	}()
	sse := startSSE(w)
	endpoint := s.cfg.Endpoint.Path + sseMessageSuffix + "?sessionId=" + url.QueryEscape(sess.id)
	if sse.event("endpoint", []byte(endpoint)) != nil {
		return
	}
	ctx, cancel := untilExpiry(r.Context(), c)
	defer cancel()
	s.pumpStream(ctx, sse, sess, sink)
}

// sseMessage takes one POSTed message of a legacy SSE session. Refusals of well-formed
// messages are JSON-RPC errors on the stream, like every other answer on this transport;
// the POST itself is 202 Accepted.
func (s *Server) sseMessage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed")
		return
	}
	c := s.callerOf(r, transportSSE)
	sess := s.sessions.get(r.URL.Query().Get("sessionId"), c)
	if sess == nil {
		writeJSONError(w, http.StatusNotFound, "session_not_found")
		return
	}
	sess.touch()
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	version := sess.negotiated()
	if version == "" {
		version = legacySSEVersion
	}
	msgs, batch, ref := s.parse(body, version, c, RequestID(r.Context()))
	if ref != nil {
		ref.write(w, r, s.deps.Auth)
		return
	}
	if ref := s.admit(r.Context(), sess, msgs, batch, admitOptions{requestID: RequestID(r.Context()), from: &c}); ref != nil {
		sess.answerOnStream(ref.body)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if !s.relay(r.Context(), sess, msgs) {
		writeRPCError(w, http.StatusBadGateway, jsonrpc.NewError(codeUpstream, "upstream unavailable"))
		return
	}
	w.WriteHeader(http.StatusAccepted)
}
