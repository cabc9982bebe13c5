package server

import (
	"context"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/ratelimit"
)

// wsSubprotocol is required on every MCP WebSocket.
const wsSubprotocol = "mcp"

// WebSocket timing: pings find dead peers behind idle NATs; writes to a slow peer are bounded.
const (
	wsPingInterval = 30 * time.Second
	wsPingTimeout  = 10 * time.Second
	wsWriteTimeout = 30 * time.Second
	// wsSinkQueue holds messages for the socket that do not come from the upstream session
	// (refusals, timeouts) or that wsWriter relayed and has not written yet.
	wsSinkQueue = 32
)

func isWebSocketUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && headerHasToken(r.Header, "Connection", "upgrade") &&
		headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// serveWebSocket runs one MCP WebSocket: one JSON-RPC message per text frame, binary frames
// refused (1003), frames over MaxMessageBytes refused (1009), and — when the upgrade carried
// no credentials — a first frame {"type":"auth","token":…} within the configured timeout
// (1008 otherwise). The Origin allowlist ran before this handler: a foreign page never gets
// an upgrade.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if !headerHasToken(r.Header, "Sec-WebSocket-Protocol", wsSubprotocol) {
		writeJSONError(w, http.StatusBadRequest, "websocket_subprotocol_mcp_required")
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{wsSubprotocol},
		// The origin middleware already enforced the allowlist (which may admit other
		// origins than the Host); the library's same-host check would contradict it.
		InsecureSkipVerify: true,
		// No permessage-deflate: compression bombs and CRIME-style leaks are not worth it.
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return // Accept answered the client
	}
	conn.SetReadLimit(s.cfg.Limits.MaxMessageBytes)
	ws := &wsConn{conn: conn, caller: s.callerOf(r, transportWebSocket), requestID: RequestID(r.Context())}
	if auth.FirstMessagePending(r.Context()) {
		// The auth decision is reported with the upgrade request; the request is kept only
		// until the first frame is verified.
		ws.firstAuth = r.WithContext(context.WithoutCancel(r.Context()))
	}
	// Serve the socket on a goroutine of its own and return: net/http then frees what it
	// holds per connection and request (its buffers, the handler's stack, the request),
	// which every idle socket would otherwise keep. The socket's context hangs off the
	// server's, not the request's (net/http cancels that one when the handler returns).
	go s.runWebSocket(ws)
}

// wsConn is what an accepted MCP WebSocket needs from its upgrade request.
type wsConn struct {
	conn      *websocket.Conn
	caller    caller
	requestID string
	firstAuth *http.Request // set while first-message authentication is pending
}

func (s *Server) runWebSocket(ws *wsConn) {
	conn := ws.conn
	defer func() { _ = conn.CloseNow() }()
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("WebSocket handler panic", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	ctx, cancel := context.WithCancel(s.baseCtx)
	defer cancel()

	c := ws.caller
	if r := ws.firstAuth; r != nil {
		ws.firstAuth = nil
		p, ok := s.firstMessageAuth(r.Context(), ctx, conn)
		if !ok {
			return
		}
		c.principal, c.hasAuth = p, true
		c.rateKey = ratelimit.Key(r.WithContext(auth.WithPrincipal(r.Context(), p)))
	}

	up, err := s.deps.Upstream.NewSession(s.sessionContext())
	if err != nil {
		s.log.Warn("Opening an upstream session failed", "error", err)
		_ = conn.Close(websocket.StatusTryAgainLater, "upstream unavailable")
		return
	}
	// No pump goroutine: wsWriter reads the upstream session's messages itself.
	sess := openSession(s, newID(16), up, c)
	sink := &streamSink{ch: make(chan []byte, wsSinkQueue)}
	sess.setStream(sink)
	s.obs.connOpened(transportWebSocket)
	defer func() {
		sess.close()
		s.obs.connClosed(transportWebSocket)
	}()

	go s.wsWriter(ctx, cancel, conn, sess, sink)

	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return // closed, too big (the library closed with 1009), or shutting down
		}
		if typ != websocket.MessageText {
			_ = conn.Close(websocket.StatusUnsupportedData, "binary frames are not accepted; send JSON-RPC as text")
			return
		}
		msgs, batch, ref := s.parse(data, sess.negotiated())
		if ref == nil {
			ref = s.admit(ctx, sess, msgs, batch, admitOptions{perMessageLimit: true, requestID: ws.requestID})
		}
		if ref != nil {
			sess.toStream(ref.body)
			continue
		}
		if !s.relay(ctx, sess, msgs) {
			_ = conn.Close(websocket.StatusInternalError, "upstream unavailable")
			return
		}
	}
}

// firstMessageAuth reads and verifies the auth frame; on failure it closes with 1008.
// authCtx carries the upgrade request for the decision hook; ctx is the socket's.
func (s *Server) firstMessageAuth(authCtx, ctx context.Context, conn *websocket.Conn) (auth.Principal, bool) {
	// A read context deadline would make the library drop the TCP connection without a
	// close frame; closing from a timer tells the client why (1008).
	timer := time.AfterFunc(s.deps.Auth.FirstMessageTimeout(), func() {
		_ = conn.Close(websocket.StatusPolicyViolation, "authentication required")
	})
	typ, frame, err := conn.Read(ctx)
	if !timer.Stop() || err != nil {
		return auth.Principal{}, false
	}
	if typ != websocket.MessageText {
		_ = conn.Close(websocket.StatusPolicyViolation, "authentication required")
		return auth.Principal{}, false
	}
	actx, acancel := context.WithCancel(authCtx)
	defer acancel()
	stop := context.AfterFunc(ctx, acancel) // a socket closing mid-verification stops it
	defer stop()
	p, err := s.deps.Auth.FirstMessage(actx, frame)
	if err != nil {
		_ = conn.Close(websocket.StatusPolicyViolation, "authentication failed")
		return auth.Principal{}, false
	}
	return p, true
}

// wsWriter is the socket's only other goroutine: it relays the upstream session's messages
// (the pump of other transports), writes them one text frame each, and pings the peer. It
// closes the socket when the upstream session ends (1011) or the server shuts down (1001).
// However it ends, it keeps draining the upstream session until the handler closes it, so
// requests still in flight are finished (audited) exactly as with a pump.
func (s *Server) wsWriter(ctx context.Context, cancel context.CancelFunc, conn *websocket.Conn, sess *session, sink *streamSink) {
	msgs := sess.up.Messages()
	ended := false
	defer func() {
		cancel() // the handler's Read returns, and it closes the upstream session
		if !ended {
			for raw := range msgs {
				sess.deliver(raw)
			}
			sess.upstreamEnded()
		}
	}()
	write := func(out []byte) error {
		wctx, wcancel := context.WithTimeout(ctx, wsWriteTimeout)
		defer wcancel()
		return conn.Write(wctx, websocket.MessageText, out)
	}
	ping := time.NewTicker(wsPingInterval)
	defer ping.Stop()
	var pinging atomic.Bool
	for {
		select {
		case raw, ok := <-msgs:
			if !ok {
				ended = true
				sess.upstreamEnded() // queues errors for in-flight calls on the sink
				// Deliver them before closing.
				for {
					select {
					case out := <-sink.ch:
						_ = write(out)
						continue
					default:
					}
					break
				}
				_ = conn.Close(websocket.StatusInternalError, "upstream session ended")
				return
			}
			sess.deliver(raw)
			// Write what it produced now: the sink only buffers while a write is slow.
			for len(sink.ch) > 0 {
				if write(<-sink.ch) != nil {
					return
				}
			}
		case out := <-sink.ch:
			if write(out) != nil {
				return
			}
		case <-ping.C:
			// Ping waits for the pong (read by the handler's loop): run it aside, one at a
			// time, so writes go on meanwhile. A peer that does not answer is dropped.
			if pinging.CompareAndSwap(false, true) {
				go func() {
					defer pinging.Store(false)
					pctx, pcancel := context.WithTimeout(ctx, wsPingTimeout)
					defer pcancel()
					if conn.Ping(pctx) != nil {
						cancel()
					}
				}()
			}
		case <-s.stopping:
			_ = conn.Close(websocket.StatusGoingAway, "server shutting down")
			return
		case <-ctx.Done():
			return
		}
	}
}
