package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/mediatype"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/upstream"
)

// Transport labels (audit, metrics).
const (
	transportStreamable = "streamable-http"
	transportSSE        = "sse"
	transportWebSocket  = "websocket"
)

// sseKeepalive is how often an idle SSE stream carries a comment, so proxies keep it open
// and a vanished client is noticed.
const sseKeepalive = 25 * time.Second

// streamableEndpoint serves the MCP endpoint path: Streamable HTTP (POST, GET, DELETE) and,
// when enabled, the WebSocket upgrade.
func (s *Server) streamableEndpoint(w http.ResponseWriter, r *http.Request) {
	if s.transports[transportWebSocket] && isWebSocketUpgrade(r) {
		s.serveWebSocket(w, r)
		return
	}
	principalRequired(http.HandlerFunc(s.streamableHTTP)).ServeHTTP(w, r)
}

// streamableHTTP serves the endpoint's Streamable HTTP methods.
func (s *Server) streamableHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.transports[transportStreamable] {
		w.Header().Set("Allow", "GET")
		writeJSONError(w, http.StatusMethodNotAllowed, "websocket_upgrade_required")
		return
	}
	switch r.Method {
	case http.MethodPost:
		s.streamablePost(w, r)
	case http.MethodGet:
		s.streamableGet(w, r)
	case http.MethodDelete:
		s.streamableDelete(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed")
	}
}

// streamablePost relays one POSTed JSON-RPC message (or batch). A 2025-era request belongs
// to the session named by Mcp-Session-Id (initialize opens one); a 2026-07-28 request is
// stateless and gets an upstream session for its own lifetime.
func (s *Server) streamablePost(w http.ResponseWriter, r *http.Request) {
	if mt := mediatype.Of(r.Header.Get("Content-Type")); mt != "application/json" {
		writeRPCError(w, http.StatusUnsupportedMediaType, jsonrpc.InvalidRequest("Content-Type must be application/json"))
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	c := s.callerOf(r, transportStreamable)
	version := r.Header.Get(hdrProtocolVersion)
	if version != "" && !knownVersion(version) {
		supported := slices.Clone(knownVersions)
		slices.Reverse(supported) // newest first, as servers list them
		e := jsonrpc.NewError(codeUnsupportedVersion, "unsupported Mcp-Protocol-Version "+strconv.Quote(version)+"; supported: "+strings.Join(supported, ", "))
		e.Data = map[string]any{"supported": supported, "requested": version}
		s.refusedBeforeAdmission(c, body, RequestID(r.Context()), "unsupported_version")
		writeRPCError(w, http.StatusBadRequest, withID(e, s.requestIDOf(body)))
		return
	}
	var sess *session
	if sid := r.Header.Get(hdrSessionID); sid != "" && !stateless(version) {
		if sess = s.sessions.get(sid, c); sess == nil {
			s.refusedBeforeAdmission(c, body, RequestID(r.Context()), "session_not_found")
			writeRPCError(w, http.StatusNotFound, jsonrpc.InvalidRequest("session not found: start a new one with initialize"))
			return
		}
		sess.touch()
		neg := sess.negotiated()
		switch {
		case version == "":
			version = max(neg, defaultVersion)
		case neg != "" && version != neg:
			// Another supported version in an existing session is accepted (the spec refuses
			// only invalid or unsupported ones), but the session's negotiated rules apply, so a
			// header cannot unlock, say, batches the session did not negotiate.
			version = neg
		}
	}
	msgs, batch, ref := s.parse(body, version, c, RequestID(r.Context()))
	if ref != nil {
		ref.write(w, r, s.deps.Auth)
		return
	}
	if slices.ContainsFunc(msgs, func(m jsonrpc.Message) bool { return m.Method == "subscriptions/listen" }) {
		// A subscription stream lives as long as the client keeps it: like a GET stream,
		// it ends with the credential it was opened with.
		ctx, cancel := untilExpiry(r.Context(), c)
		defer cancel()
		r = r.WithContext(ctx)
	}

	ctx := r.Context()
	opened := false
	if sess == nil {
		switch {
		case !batch && msgs[0].Method == "initialize" && !stateless(version):
			opened = true
		case stateless(version):
			if !batch && msgs[0].Method == "initialize" {
				// The stateless revision has no initialize (server/discover replaces it); a
				// server would answer it from the runtime's own cached handshake.
				writeRPCError(w, http.StatusNotFound, withID(jsonrpc.NewError(jsonrpc.CodeMethodNotFound,
					"method not found: initialize is not part of protocol version "+version+"; use server/discover"), msgs[0].ID))
				return
			}
			if !batch {
				if e := checkStatelessHeaders(r.Header, &msgs[0]); e != nil {
					s.refusedUnadmitted(c, &msgs[0], RequestID(ctx), "header_mismatch")
					writeRPCError(w, http.StatusBadRequest, withID(e, msgs[0].ID))
					return
				}
			}
		default:
			s.refusedBeforeAdmission(c, body, RequestID(ctx), "session_required")
			writeRPCError(w, http.StatusBadRequest, jsonrpc.InvalidRequest("Mcp-Session-Id header required: send initialize first"))
			return
		}
		up, release, err := s.openUpstream(c, stateless(version))
		if err != nil {
			status, reason, msg := http.StatusServiceUnavailable, "upstream_unavailable", "upstream unavailable"
			if errors.Is(err, errShareUsed) {
				status, reason, msg = http.StatusTooManyRequests, "too_many_sessions", "too many sessions"
				w.Header().Set("Retry-After", "1")
			} else {
				s.log.Warn("Opening an upstream session failed", "error", err)
			}
			// A stateless request may be a tools/call, which is audited refused or not.
			for i := range msgs {
				if msgs[i].IsRequest() {
					s.refusedUnadmitted(c, &msgs[i], RequestID(ctx), reason)
				}
			}
			writeRPCError(w, status, jsonrpc.NewError(codeUpstream, msg))
			return
		}
		sess = newSession(s, newID(16), up, c)
		sess.release = release
		sess.stateless = stateless(version)
		if opened {
			if status := s.sessions.add(sess); status != 0 {
				sess.close()
				w.Header().Set("Retry-After", "1")
				writeRPCError(w, status, jsonrpc.NewError(codeUpstream, "too many sessions"))
				return
			}
		} else {
			defer sess.close() // a stateless request's upstream session ends with it
		}
	}

	requests := 0
	for i := range msgs {
		if msgs[i].IsRequest() {
			requests++
		}
	}
	reply := newReplyTo(requests)
	// Whichever way this POST ends (a failed relay of a batch included), answers that come
	// for it later are finished by their deliverer, not left in a channel nobody reads.
	defer reply.leave(sess)
	ex, inline := sess.up.(upstream.Exchanger)
	inline = inline && len(msgs) == 1 && requests == 1
	var sink *streamSink
	if acceptsStream(r) && requests > 0 && !inline {
		sink = &streamSink{ch: make(chan []byte, 64)}
		sess.addPost(sink)
		defer sess.removePost(sink)
	}
	opt := admitOptions{reply: reply, requestID: RequestID(ctx), from: &c}
	if sess.stateless {
		opt.header = r.Header
	}
	if ref := s.admit(ctx, sess, msgs, batch, opt); ref != nil {
		if opened {
			s.sessions.remove(sess.id)
			sess.close()
		}
		if sess.stateless && !batch && ref.status == http.StatusOK {
			if status := statelessErrorStatus(ref.body); status != 0 {
				ref.status = status
			}
		}
		ref.write(w, r, s.deps.Auth)
		return
	}
	if opened {
		// A client gone before anything of its initialize's answer was written never learnt
		// the session id: the session would hold its slot (and in per-session mode a
		// process) until idle expiry.
		tw := &writeTracker{ResponseWriter: w}
		w = tw
		defer func() {
			if !tw.wrote && r.Context().Err() != nil {
				s.sessions.remove(sess.id)
				sess.close()
			}
		}()
	}
	if inline {
		s.exchangePost(w, r, sess, ex, msgs, reply, opened)
		return
	}
	if !s.relay(ctx, sess, msgs) {
		if opened {
			s.sessions.remove(sess.id)
			sess.close()
		}
		writeRPCError(w, http.StatusBadGateway, jsonrpc.NewError(codeUpstream, "upstream unavailable"))
		return
	}
	if opened {
		w.Header().Set(hdrSessionID, sess.id)
	}
	if requests == 0 {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	s.awaitResponses(w, r, sess, msgs, batch, requests, reply, sink, nil)
}

// exchangePost relays a POST that carries one request on this goroutine, as a plain
// reverse proxy does, when the upstream answers each request on a stream of its own
// (Streamable HTTP): no goroutine per request and no hand-offs. What the upstream sends on
// the request's stream is processed and written as it arrives: the response as a JSON body
// when it comes first, otherwise an SSE stream (if the client accepts one) with the
// server's notifications and requests before it. Messages on other upstream streams keep
// going to the session's streams. Anything that ends the exchange unanswered (the client
// leaving, a write failing, the server shutting down during a stream, the session
// closing) continues as awaitResponses would.
func (s *Server) exchangePost(w http.ResponseWriter, r *http.Request, sess *session, ex upstream.Exchanger, msgs []jsonrpc.Message, reply *replyTo, opened bool) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	streamOK := acceptsStream(r)
	var sse *sseWriter
	answered, broken := false, false
	// At shutdown a stream ends (as in awaitResponses); a plain request keeps draining.
	stopWatch := func() bool { return false }
	defer func() { stopWatch() }()
	fn := func(raw []byte) {
		out, p, outcome := s.outbound(sess, raw)
		if p != nil {
			defer s.finish(sess, p, outcome, len(out)) // once the answer is on its way
		}
		switch {
		case out == nil || broken:
			return
		case p != nil && p.reply == reply:
			answered = true
			if sse == nil {
				if opened {
					w.Header().Set(hdrSessionID, sess.id)
				}
				writeResponse(w, out, sess.stateless)
				return
			}
		case p != nil && p.reply != nil:
			p.reply.offer(sess, answer{out: out}) // another POST's response (never blocks)
			return
		case !streamOK || answered:
			sess.toStreamAs(out, p != nil)
			return
		}
		if sse == nil {
			if opened {
				w.Header().Set(hdrSessionID, sess.id)
			}
			sse = startSSE(w)
			stopWatch = context.AfterFunc(s.stoppingCtx, cancel)
		}
		if sse.event("message", out) != nil {
			broken = true
			cancel()
		}
	}
	if err := ex.Exchange(ctx, msgs[0].Raw, fn); err != nil {
		s.log.Warn("Relaying to the upstream failed", "session", sess.id, "error", err)
		if p := sess.untrack(msgs[0].ID); p != nil {
			s.finish(sess, p, "upstream_error", 0)
		}
		if opened {
			s.sessions.remove(sess.id)
			sess.close()
		}
		writeRPCError(w, http.StatusBadGateway, jsonrpc.NewError(codeUpstream, "upstream unavailable"))
		return
	}
	switch {
	case answered:
		return
	case broken || ctx.Err() != nil:
		s.abandonRequests(sess, msgs)
		return
	}
	// Unanswered on its stream (a timeout or the session's end answers it on reply).
	if opened && sse == nil {
		w.Header().Set(hdrSessionID, sess.id)
	}
	s.awaitResponses(w, r, sess, msgs, false, 1, reply, nil, sse)
}

// awaitResponses answers a POST: one JSON body when the response comes first, else an SSE
// stream that carries the server's notifications and requests before the response(s).
// sse is the stream already started for it, if any. The answers' bookkeeping (metrics,
// audit) runs here once they are written, after the client has them; what this POST does
// not take is finished when streamablePost returns (replyTo.leave).
func (s *Server) awaitResponses(w http.ResponseWriter, r *http.Request, sess *session, msgs []jsonrpc.Message, batch bool, want int, reply *replyTo, sink *streamSink, sse *sseWriter) {
	var sinkCh chan []byte
	if sink != nil {
		sinkCh = sink.ch
	}
	var held []answer // taken from reply: finished once written (or when this returns)
	defer func() {
		for _, a := range held {
			s.finishAnswer(sess, a)
		}
	}()
	stopping := s.stopping
	if sse != nil {
		select {
		case <-stopping: // a stream ends at shutdown
			s.abandonRequests(sess, msgs)
			return
		default:
		}
	}
	got := 0
	for got < want {
		select {
		case a := <-reply.ch:
			got++
			held = append(held, a)
			if sse == nil {
				continue
			}
			err := sse.event("message", a.out)
			s.finishAnswer(sess, a)
			held = held[:0]
			if err != nil {
				s.abandonRequests(sess, msgs)
				return
			}
		case out := <-sinkCh:
			if sse == nil {
				sse = startSSE(w)
				for _, a := range held {
					_ = sse.event("message", a.out)
					s.finishAnswer(sess, a)
				}
				held = held[:0]
			}
			if sse.event("message", out) != nil {
				s.abandonRequests(sess, msgs)
				return
			}
		case <-r.Context().Done():
			s.abandonRequests(sess, msgs)
			return
		case <-stopping:
			if sse != nil { // a long-lived stream (subscriptions/listen) ends at shutdown
				s.abandonRequests(sess, msgs)
				return
			}
			stopping = nil // keep draining plain requests; session timers bound them
		}
	}
	// Server messages queued for this POST before its last answer was taken still go out
	// (select picks at random among ready cases), ahead of any answer not yet written.
	for drained := sinkCh == nil; !drained; {
		select {
		case out := <-sinkCh:
			if sse == nil {
				sse = startSSE(w)
			}
			if sse.event("message", out) != nil {
				return
			}
		default:
			drained = true
		}
	}
	if sse != nil {
		for _, a := range held {
			err := sse.event("message", a.out)
			s.finishAnswer(sess, a)
			if err != nil {
				held = nil
				return
			}
		}
		held = held[:0]
		return
	}
	if batch {
		w.Header().Set("Content-Type", "application/json")
		outs := make([][]byte, len(held))
		for i, a := range held {
			outs[i] = a.out
		}
		_, _ = w.Write(joinBatch(outs))
		return
	}
	writeResponse(w, held[0].out, sess.stateless)
}

// writeResponse writes one JSON-RPC response as a POST's body. Under the stateless revision
// the HTTP status follows the error, as SEP-2575 requires of servers (a stdio server cannot
// set it): method not found 404; invalid params, unsupported version and missing client
// capabilities 400.
func writeResponse(w http.ResponseWriter, out []byte, statelessRevision bool) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// A known length spares a large answer the chunked encoding (one write, no trailer).
	h.Set("Content-Length", strconv.Itoa(len(out)))
	if statelessRevision {
		if status := statelessErrorStatus(out); status != 0 {
			w.WriteHeader(status)
		}
	}
	_, _ = w.Write(out)
	// Out now, not after the handler chain returns: the access log and the rest of the
	// request's bookkeeping then run while the client already has its answer.
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// statelessErrorStatus is the HTTP status SEP-2575 gives a JSON-RPC error response (0: the
// usual 200).
func statelessErrorStatus(resp []byte) int {
	var r struct {
		Error *struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(resp, &r) != nil || r.Error == nil {
		return 0
	}
	switch r.Error.Code {
	case jsonrpc.CodeMethodNotFound:
		return http.StatusNotFound
	case jsonrpc.CodeInvalidParams, codeUnsupportedVersion, codeMissingCapabilities:
		return http.StatusBadRequest
	}
	return 0
}

// requestIDOf reads the id of a single JSON-RPC request for an error sent before the body
// is parsed under its protocol version's rules (nil when there is none).
func (s *Server) requestIDOf(body []byte) json.RawMessage {
	msgs, batch, err := jsonrpc.Parse(body, jsonrpc.Options{MaxDepth: s.cfg.Limits.MaxDepth})
	if err != nil || batch || len(msgs) != 1 {
		return nil
	}
	return msgs[0].ID
}

func (s *Server) abandonRequests(sess *session, msgs []jsonrpc.Message) {
	ids := make([]json.RawMessage, 0, len(msgs))
	for i := range msgs {
		if msgs[i].IsRequest() {
			ids = append(ids, msgs[i].ID)
		}
	}
	sess.abandon(ids)
}

// streamableGet opens the 2025-era server→client stream of a session.
func (s *Server) streamableGet(w http.ResponseWriter, r *http.Request) {
	if stateless(r.Header.Get(hdrProtocolVersion)) {
		w.Header().Set("Allow", "POST")
		writeJSONError(w, http.StatusMethodNotAllowed, "no_get_stream_in_stateless_protocol")
		return
	}
	if !acceptsStream(r) {
		writeJSONError(w, http.StatusNotAcceptable, "accept_text_event_stream_required")
		return
	}
	sid := r.Header.Get(hdrSessionID)
	if sid == "" {
		writeJSONError(w, http.StatusBadRequest, "mcp_session_id_required")
		return
	}
	c := s.callerOf(r, transportStreamable)
	sess := s.sessions.get(sid, c)
	if sess == nil {
		writeJSONError(w, http.StatusNotFound, "session_not_found")
		return
	}
	sink := &streamSink{ch: make(chan []byte, 64)}
	if !sess.setStream(sink) {
		writeJSONError(w, http.StatusConflict, "stream_already_open")
		return
	}
	defer sess.clearStream(sink)
	s.obs.connOpened(transportStreamable)
	defer s.obs.connClosed(transportStreamable)
	ctx, cancel := untilExpiry(r.Context(), c)
	defer cancel()
	s.pumpStream(ctx, startSSE(w), sess, sink)
}

// untilExpiry bounds a stream by its caller's credential: each request is authenticated
// anew, a stream only when it opens, so it ends when the credential expires or is revoked
// and the client reconnects with a valid one.
func untilExpiry(ctx context.Context, c caller) (context.Context, context.CancelFunc) {
	if !c.hasAuth {
		return ctx, func() {}
	}
	var cancel context.CancelFunc
	if exp := c.principal.Expires; !exp.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, exp)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	if revoked := c.principal.Revoked; revoked != nil {
		go func() {
			select {
			case <-revoked:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel
}

// pumpStream writes a session stream as SSE "message" events until the client, the
// session or the server ends it.
func (s *Server) pumpStream(ctx context.Context, sse *sseWriter, sess *session, sink *streamSink) {
	keep := time.NewTicker(sseKeepalive)
	defer keep.Stop()
	for {
		select {
		case out := <-sink.ch:
			if sse.event("message", out) != nil {
				return
			}
		case <-keep.C:
			if sse.comment("keepalive") != nil {
				return
			}
		case <-ctx.Done():
			return
		case <-sess.done:
			return
		case <-s.stopping:
			return
		}
	}
}

func (s *Server) streamableDelete(w http.ResponseWriter, r *http.Request) {
	sid := r.Header.Get(hdrSessionID)
	if sid == "" || s.sessions.get(sid, s.callerOf(r, transportStreamable)) == nil {
		writeJSONError(w, http.StatusNotFound, "session_not_found")
		return
	}
	if sess := s.sessions.remove(sid); sess != nil {
		sess.close()
	}
	w.WriteHeader(http.StatusNoContent)
}

// relay sends admitted messages upstream. On failure the requests among them are answered
// with errors (the waiting reader gets them) and false is returned.
func (s *Server) relay(ctx context.Context, sess *session, msgs []jsonrpc.Message) bool {
	sendCtx, cancel := context.WithTimeout(ctx, s.cfg.Upstream.RequestTimeout.Duration)
	defer cancel()
	for i := range msgs {
		if err := sess.up.Send(sendCtx, msgs[i].Raw); err != nil {
			s.log.Warn("Relaying to the upstream failed", "session", sess.id, "error", err)
			for j := i; j < len(msgs); j++ {
				if msgs[j].IsRequest() {
					if p := sess.untrack(msgs[j].ID); p != nil {
						s.finish(sess, p, "upstream_error", 0)
					}
				}
			}
			return false
		}
	}
	return true
}

// presizedBody is the largest announced body readBody allocates whole before it arrives.
const presizedBody = 64 << 10

// readBody reads the whole (size-limited) body: the relay buffers before it forwards.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	var body []byte
	var err error
	if n := r.ContentLength; n > 0 && n <= presizedBody {
		// One allocation of the announced size instead of ReadAll's growing buffer (net/http
		// ends the body after n bytes, and a shorter one fails). Only for small bodies: a
		// client announcing a large one and sending it slowly must not pin its full size.
		body = make([]byte, n)
		if _, err = io.ReadFull(r.Body, body); err == nil {
			// Read on to the end as ReadAll would: the body's read deadline is lifted there
			// (HTTP/2 reports the end only on a read after the last byte).
			var one [1]byte
			if _, rerr := r.Body.Read(one[:]); rerr != nil && rerr != io.EOF {
				err = rerr
			}
		}
	} else {
		body, err = io.ReadAll(r.Body)
	}
	if err != nil {
		if isTooLarge(err) {
			s.obs.refused("", "", "message_too_large")
			writeRPCError(w, http.StatusRequestEntityTooLarge, jsonrpc.InvalidRequest("message exceeds "+strconv.FormatInt(s.cfg.Limits.MaxMessageBytes, 10)+" bytes"))
			return nil, false
		}
		writeJSONError(w, http.StatusBadRequest, "unreadable_body")
		return nil, false
	}
	return body, true
}

func writeRPCError(w http.ResponseWriter, status int, e *jsonrpc.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(jsonrpc.ErrorResponse(nil, e))
}

func withID(e *jsonrpc.Error, id json.RawMessage) *jsonrpc.Error {
	e.ID = id
	return e
}

// acceptsStream reports whether the client accepts an SSE response: one of the Accept
// header's media ranges is text/event-stream (parameters and letter case aside). Scanned in
// place; this runs for every POST.
func acceptsStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for v != "" {
			part, rest, _ := strings.Cut(v, ",")
			mt, _, _ := strings.Cut(part, ";")
			if equalFoldASCII(strings.TrimSpace(mt), "text/event-stream") {
				return true
			}
			v = rest
		}
	}
	return false
}

// equalFoldASCII is strings.EqualFold for ASCII letters only, as media types compare
// (strings.EqualFold would also match the Kelvin sign or the long s).
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// sseWriter writes Server-Sent Events, flushing each, with a write deadline per event.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func startSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	_ = s.rc.Flush()
	return s
}

func (s *sseWriter) event(name string, data []byte) error {
	var b strings.Builder
	b.WriteString("event: ")
	b.WriteString(name)
	b.WriteByte('\n')
	// A JSON text may contain raw newlines only as whitespace; one data line each keeps
	// the event well-formed and the joined data identical.
	for _, line := range strings.Split(string(data), "\n") {
		b.WriteString("data: ")
		b.WriteString(strings.TrimSuffix(line, "\r"))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	if _, err := io.WriteString(s.w, b.String()); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *sseWriter) comment(text string) error {
	if _, err := io.WriteString(s.w, ": "+text+"\n\n"); err != nil {
		return err
	}
	return s.rc.Flush()
}

// errShareUsed: the caller holds upstream.maxSessionsPerPrincipal per-session processes.
var errShareUsed = errors.New("the principal holds as many upstream sessions as it may")

// openUpstream opens the upstream session for a new client session of c (or a stateless
// request of the 2026 revision), within c's share of per-session processes: checked before
// a process is taken from the pool. The session's close calls release.
func (s *Server) openUpstream(c caller, statelessRevision bool) (up upstream.Session, release func(), err error) {
	release, ok := s.shares.take(c.rateKey)
	if !ok {
		return nil, nil, errShareUsed
	}
	if st, ok := s.deps.Upstream.(upstream.StatelessSessions); ok && statelessRevision {
		up, err = st.NewStatelessSession(s.sessionContext())
	} else {
		up, err = s.deps.Upstream.NewSession(s.sessionContext())
	}
	if err != nil {
		release()
		return nil, nil, err
	}
	return up, release, nil
}

// writeTracker records whether anything of a response (its header included) was written.
type writeTracker struct {
	http.ResponseWriter
	wrote bool
}

func (t *writeTracker) WriteHeader(code int) {
	t.wrote = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *writeTracker) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

func (t *writeTracker) Flush() { _ = http.NewResponseController(t.ResponseWriter).Flush() }

func (t *writeTracker) Unwrap() http.ResponseWriter { return t.ResponseWriter }
