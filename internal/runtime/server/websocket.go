package server

import (
	"bytes"
	"context"
	"crypto/sha1" //nolint:gosec // RFC 6455 defines Sec-WebSocket-Accept with SHA-1
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

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
	// wsCloseWait bounds waiting for the peer's close frame after sending ours.
	wsCloseWait = 5 * time.Second
	// wsSinkQueue holds messages for the socket that its writer has not written yet. A
	// client that lets it fill up has stopped reading and is disconnected.
	wsSinkQueue = 32
)

// wsTryAgainLater is close code 1013 (IANA registry; not among the library's constants).
const wsTryAgainLater ws.StatusCode = 1013

// wsGUID is the RFC 6455 key suffix for Sec-WebSocket-Accept.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

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

// serveWebSocket upgrades to an MCP WebSocket: one JSON-RPC message per text frame, binary
// frames refused (1003), messages over MaxMessageBytes refused (1009), and — when the
// upgrade carried no credentials — a first frame {"type":"auth","token":…} within the
// configured timeout (1008 otherwise). The Origin allowlist ran before this handler: a
// foreign page never gets an upgrade. No extension (permessage-deflate: compression bombs
// and CRIME-style leaks are not worth it) is negotiated.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if !headerHasToken(r.Header, "Sec-WebSocket-Protocol", wsSubprotocol) {
		writeJSONError(w, http.StatusBadRequest, "websocket_subprotocol_mcp_required")
		return
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		writeJSONError(w, http.StatusBadRequest, "websocket_version_13_required")
		return
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		writeJSONError(w, http.StatusBadRequest, "invalid_sec_websocket_key")
		return
	}
	sum := sha1.Sum([]byte(key + wsGUID)) //nolint:gosec // see the import
	h := w.Header()
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	h.Set("Sec-WebSocket-Accept", base64.StdEncoding.EncodeToString(sum[:]))
	h.Set("Sec-WebSocket-Protocol", wsSubprotocol)
	w.WriteHeader(http.StatusSwitchingProtocols)
	netConn, brw, err := http.NewResponseController(w).Hijack() // sends the 101 first
	if err != nil {
		s.log.Warn("WebSocket upgrade failed", "error", err)
		return
	}
	c := &wsConn{
		srv: s, conn: netConn, maxMsg: s.cfg.Limits.MaxMessageBytes,
		caller: s.callerOf(r, transportWebSocket), requestID: RequestID(r.Context()),
		closed: make(chan struct{}),
	}
	// Bytes the client sent right behind the upgrade request; net/http's buffers are then
	// let go (an idle socket keeps none).
	if br := brw.Reader; br.Buffered() > 0 {
		c.pending, _ = br.Peek(br.Buffered())
		c.pending = bytes.Clone(c.pending)
	}
	c.tls, _ = netConn.(*tls.Conn)
	c.raw = rawConnOf(netConn)
	if auth.FirstMessagePending(r.Context()) {
		// The auth decision is reported with the upgrade request; the request is kept only
		// until the first frame is verified.
		c.firstAuth = r.WithContext(context.WithoutCancel(r.Context()))
	}
	// Serve the socket on a goroutine of its own and return: net/http then frees what it
	// holds per connection and request (the handler's stack, the request), which every
	// idle socket would otherwise keep. The socket keeps its connection slot.
	c.releaseConn = ratelimit.KeepConn(r.Context())
	go s.runWebSocket(c)
}

// rawConnOf returns the socket under a (TLS) connection, or nil.
func rawConnOf(c net.Conn) syscall.RawConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// wsConn is one MCP WebSocket. An idle one costs a goroutine parked on its socket with a
// small stack, the TLS state and a few small structs: no read or write buffers (frames are
// read into the message they carry, written from a pooled buffer), no writer goroutine (one
// is started when there is something to write and ends when the queue is empty), no ping
// goroutine (a timer).
type wsConn struct {
	srv       *Server
	conn      net.Conn
	tls       *tls.Conn       // nil without TLS
	raw       syscall.RawConn // the socket, nil if unavailable (then reads just block)
	pending   []byte          // read ahead: bytes behind the upgrade request, a probed byte
	maxMsg    int64
	caller    caller
	requestID string
	firstAuth *http.Request // set while first-message authentication is pending
	// releaseConn frees the connection slot the socket holds (ratelimit.KeepConn): the
	// client address's while first-message authentication is pending, then the principal's.
	releaseConn func()

	sess *session
	sink *streamSink

	wmu       sync.Mutex  // one frame write at a time
	writing   atomic.Bool // a writer goroutine is draining sink
	closing   atomic.Bool // our close frame was sent (or the connection is going down)
	closeOnce sync.Once
	closed    chan struct{} // closed with the connection

	pingTimer *time.Timer
	// expiry closes the socket when its credential expires (nil: it does not); stopped
	// when the connection goes down (a timer that fires after that finds it closed).
	expiry   atomic.Pointer[time.Timer]
	pongWant atomic.Int64 // payload of the ping awaiting its pong (0: none)
	// pongDue is the payload of the latest ping from the peer not yet answered, nil when
	// none is; set while a writePongs goroutine runs.
	pongDue atomic.Pointer[[]byte]
	pingSeq atomic.Int64
}

// errWSClosing ends the read loop when the connection is being closed.
var errWSClosing = errors.New("websocket closing")

// Read implements io.Reader over the read-ahead bytes, then the connection.
func (c *wsConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.conn.Read(p)
}

// waitReadable returns once the connection has data (or an error) to read. While nothing
// is buffered above the socket it parks on the socket itself, so an idle connection's
// goroutine holds a shallow stack, not one inside a TLS read.
func (c *wsConn) waitReadable() error {
	if len(c.pending) > 0 || c.raw == nil || c.closing.Load() {
		return nil // closing: plain reads under the close deadline
	}
	if c.tls != nil {
		// A record may already sit decrypted or buffered in the TLS layer: probe with an
		// expired deadline (a timeout leaves the TLS state intact).
		var b [1]byte
		_ = c.conn.SetReadDeadline(time.Unix(1, 0))
		n, err := c.conn.Read(b[:])
		_ = c.conn.SetReadDeadline(time.Time{})
		if n > 0 {
			c.pending = append(c.pending[:0], b[0])
			return nil
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return err
		}
	}
	var peek [1]byte
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		_, _, e := syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if e == syscall.EAGAIN || e == syscall.EINTR {
			return false // park until the socket is readable
		}
		if e != nil {
			rerr = e
		}
		return true // data, EOF or an error: the real read reports it
	})
	if err != nil {
		return err
	}
	return rerr
}

// next reads the next data message, answering pings and the peer's close on the way. It
// returns the opcode (text or binary) and the whole payload.
func (c *wsConn) next() (ws.OpCode, []byte, error) {
	var msg []byte
	var op ws.OpCode
	state := ws.StateServerSide
	for {
		if err := c.waitReadable(); err != nil {
			return 0, nil, err
		}
		h, err := ws.ReadHeader(c)
		if err != nil {
			return 0, nil, err
		}
		if err := ws.CheckHeader(h, state); err != nil {
			c.close(ws.StatusProtocolError, err.Error())
			return 0, nil, err
		}
		if !h.OpCode.IsControl() && int64(len(msg))+h.Length > c.maxMsg {
			c.close(ws.StatusMessageTooBig, "message exceeds "+strconv.FormatInt(c.maxMsg, 10)+" bytes")
			return 0, nil, errWSClosing
		}
		payload, err := readPayload(c, h.Length)
		if err != nil {
			return 0, nil, err
		}
		ws.Cipher(payload, h.Mask, 0)
		switch h.OpCode {
		case ws.OpPing:
			if !c.closing.Load() && c.pongDue.Swap(&payload) == nil {
				go c.writePongs() // never block the reader on a write
			}
			continue
		case ws.OpPong:
			if want := c.pongWant.Load(); want != 0 && string(payload) == strconv.FormatInt(want, 10) {
				c.pongWant.CompareAndSwap(want, 0)
			}
			continue
		case ws.OpClose:
			code, reason := ws.StatusNoStatusRcvd, ""
			if len(payload) >= 2 {
				code, reason = ws.ParseCloseFrameData(payload)
				if ws.CheckCloseFrameData(code, reason) != nil {
					code = ws.StatusProtocolError
				}
			}
			if code == ws.StatusNoStatusRcvd {
				code = ws.StatusNormalClosure
			}
			c.close(code, "") // echo it (a no-op if ours went first), then hang up
			c.shutdown()
			return 0, nil, errWSClosing
		}
		if c.closing.Load() {
			continue // after our close frame only the peer's close counts
		}
		if h.OpCode != ws.OpContinuation {
			op = h.OpCode
		}
		msg = append(msg, payload...)
		if !h.Fin {
			state = state.Set(ws.StateFragmented)
			continue
		}
		return op, msg, nil
	}
}

// wsEagerPayload is the largest frame payload whose buffer is made before it arrives.
const wsEagerPayload = 64 << 10

// readPayload reads a frame payload of n bytes. A large one grows its buffer as its bytes
// arrive: made at the size the header declares, a peer could pin maxMessageBytes per
// socket with headers alone and send nothing after them.
func readPayload(r io.Reader, n int64) ([]byte, error) {
	if n <= wsEagerPayload {
		p := make([]byte, n)
		_, err := io.ReadFull(r, p)
		return p, err
	}
	p, err := io.ReadAll(io.LimitReader(r, n))
	if err == nil && int64(len(p)) < n {
		err = io.ErrUnexpectedEOF
	}
	return p, err
}

var wsFrameBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// writeFrame writes one unfragmented frame within wsWriteTimeout; a failed write takes the
// connection down (a TLS connection is unusable after a write timeout anyway).
func (c *wsConn) writeFrame(op ws.OpCode, payload []byte) error {
	buf := wsFrameBufs.Get().(*bytes.Buffer)
	buf.Reset()
	_ = ws.WriteHeader(buf, ws.Header{Fin: true, OpCode: op, Length: int64(len(payload))})
	buf.Write(payload)
	c.wmu.Lock()
	err := errWSClosing
	if !c.closing.Load() || op == ws.OpClose {
		_ = c.conn.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
		_, err = c.conn.Write(buf.Bytes())
	}
	c.wmu.Unlock()
	if buf.Cap() <= 64<<10 {
		wsFrameBufs.Put(buf)
	}
	if err != nil && !errors.Is(err, errWSClosing) {
		c.shutdown()
	}
	return err
}

// writePongs answers the peer's pings until none is due. A ping that comes while a pong is
// being written only replaces the payload due (RFC 6455 §5.5.3 lets an endpoint answer just
// the most recent ping), so a peer that floods pings and reads nothing costs one goroutine
// and one payload, not one of each per ping.
func (c *wsConn) writePongs() {
	for {
		p := c.pongDue.Load()
		_ = c.writeFrame(ws.OpPong, *p)
		if c.pongDue.CompareAndSwap(p, nil) {
			return
		}
	}
}

// close sends a close frame (once) and lets the peer answer within wsCloseWait, after which
// the connection is dropped; the read loop hangs up when the answer comes.
func (c *wsConn) close(code ws.StatusCode, reason string) {
	c.wmu.Lock()
	first := c.closing.CompareAndSwap(false, true)
	c.wmu.Unlock()
	if !first {
		return
	}
	if len(reason) > 123 {
		reason = reason[:123]
	}
	_ = c.writeFrame(ws.OpClose, ws.NewCloseFrameBody(code, reason))
	_ = c.conn.SetReadDeadline(time.Now().Add(wsCloseWait))
	time.AfterFunc(wsCloseWait, c.shutdown)
}

// shutdown closes the connection at once.
func (c *wsConn) shutdown() {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		_ = c.conn.Close()
		close(c.closed)
		if t := c.expiry.Load(); t != nil {
			t.Stop()
		}
	})
}

// kick starts the writer if it is not running.
func (c *wsConn) kick() {
	if c.writing.CompareAndSwap(false, true) {
		go c.flush()
	}
}

// flush writes the queued messages, one text frame each, and ends when the queue is empty.
// A nil message means the upstream session ended: the socket is closed (1011) after what
// was queued before it (the errors of calls that were in flight).
func (c *wsConn) flush() {
	for {
		for empty := false; !empty; {
			select {
			case out := <-c.sink.ch:
				if out == nil {
					c.close(ws.StatusInternalServerError, "upstream session ended")
					continue
				}
				_ = c.writeFrame(ws.OpText, out)
			default:
				empty = true
			}
		}
		c.writing.Store(false)
		if len(c.sink.ch) == 0 || !c.writing.CompareAndSwap(false, true) {
			return
		}
	}
}

// ping sends a ping; a peer that does not answer within wsPingTimeout is dropped.
func (c *wsConn) ping() {
	select {
	case <-c.closed:
		return
	default:
	}
	if c.pongWant.Load() != 0 { // the last ping went unanswered
		c.shutdown()
		return
	}
	seq := c.pingSeq.Add(1)
	c.pongWant.Store(seq)
	if c.writeFrame(ws.OpPing, []byte(strconv.FormatInt(seq, 10))) != nil {
		return
	}
	time.AfterFunc(wsPingTimeout, func() {
		if c.pongWant.Load() == seq {
			c.shutdown()
		}
	})
	c.pingTimer.Reset(wsPingInterval)
}

// runWebSocket serves one upgraded socket until it closes. Its goroutine lives as long as
// the socket, idle ones included: the setup and the read loop are functions of their own so
// that their locals are not in this long-lived frame (a deeper idle stack crosses a stack
// size class and costs every idle socket a larger stack).
func (s *Server) runWebSocket(c *wsConn) {
	defer func() { c.releaseConn() }() // the one held when the socket ends
	defer c.shutdown()
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("WebSocket handler panic", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	ctx, cancel := context.WithCancel(s.baseCtx)
	defer cancel()
	stopOnShutdown := context.AfterFunc(s.stoppingCtx, func() { c.close(ws.StatusGoingAway, "server shutting down") })
	defer stopOnShutdown()

	sess := s.openWebSocketSession(ctx, c)
	if sess == nil {
		return
	}
	defer func() {
		sess.close()
		s.obs.connClosed(transportWebSocket)
	}()
	c.pingTimer = time.AfterFunc(wsPingInterval, c.ping)
	defer c.pingTimer.Stop()
	s.readWebSocket(ctx, c, sess)
}

// openWebSocketSession authenticates a first-message socket and opens its session; nil
// when the socket was closed instead.
func (s *Server) openWebSocketSession(ctx context.Context, c *wsConn) *session {
	cl := c.caller
	if r := c.firstAuth; r != nil {
		c.firstAuth = nil
		p, ok := s.firstMessageAuth(r.Context(), ctx, c)
		if !ok {
			c.drainClose()
			return nil
		}
		cl.principal, cl.hasAuth = p, true
		cl.rateKey = ratelimit.Key(r.WithContext(auth.WithPrincipal(r.Context(), p)))
		if cl.rateKey != c.caller.rateKey {
			// Counted against the client's address until now; from here on, its principal's.
			release, ok := s.deps.Limiter.AcquireConn(cl.rateKey)
			if !ok {
				c.close(wsTryAgainLater, "too many connections")
				c.drainClose()
				return nil
			}
			c.releaseConn()
			c.releaseConn = release
		}
	}

	up, release, err := s.openUpstream(cl, false)
	if errors.Is(err, errShareUsed) {
		c.close(wsTryAgainLater, "too many sessions")
		c.drainClose()
		return nil
	}
	if err != nil {
		s.log.Warn("Opening an upstream session failed", "error", err)
		c.close(wsTryAgainLater, "upstream unavailable")
		c.drainClose()
		return nil
	}
	c.sink = &streamSink{ch: make(chan []byte, wsSinkQueue), notify: c.kick, overflow: c.shutdown}
	sess := newSessionThen(s, newID(16), up, cl, func() {
		select {
		case c.sink.ch <- nil: // close once what is queued is written
			c.kick()
		default:
			c.shutdown()
		}
	})
	sess.release = release
	c.sess = sess
	sess.setStream(c.sink)
	s.obs.connOpened(transportWebSocket)
	if exp := cl.principal.Expires; !exp.IsZero() {
		// Each HTTP request is authenticated anew; a socket is authenticated once, so it
		// ends with its credential: the client reconnects with a fresh one.
		t := time.AfterFunc(time.Until(exp), func() {
			c.close(ws.StatusPolicyViolation, "credentials expired: reconnect with a fresh token")
		})
		c.expiry.Store(t)
		select {
		case <-c.closed: // went down meanwhile, before shutdown could see the timer
			t.Stop()
		default:
		}
	}
	if revoked := cl.principal.Revoked; revoked != nil {
		go func() {
			select {
			case <-revoked:
				c.close(ws.StatusPolicyViolation, "credentials revoked")
			case <-c.closed:
			}
		}()
	}
	return sess
}

// readWebSocket relays the socket's messages until it closes or fails.
func (s *Server) readWebSocket(ctx context.Context, c *wsConn, sess *session) {
	for {
		op, data, err := c.next()
		if err != nil {
			c.drainClose()
			return // closed, too big (closed with 1009), or shutting down
		}
		if op != ws.OpText {
			c.close(ws.StatusUnsupportedData, "binary frames are not accepted; send JSON-RPC as text")
			c.drainClose()
			return
		}
		msgs, batch, ref := s.parse(data, sess.negotiated(), sess.caller, c.requestID)
		if ref == nil {
			ref = s.admit(ctx, sess, msgs, batch, admitOptions{perMessageLimit: true, requestID: c.requestID})
		}
		if ref != nil {
			sess.answerOnStream(ref.body)
			continue
		}
		if !s.relay(ctx, sess, msgs) {
			c.close(ws.StatusInternalServerError, "upstream unavailable")
			c.drainClose()
			return
		}
	}
}

// drainClose waits (bounded by the close deadline) for the peer's close frame after ours,
// so the peer reads our close code before the connection goes down.
func (c *wsConn) drainClose() {
	if !c.closing.Load() {
		c.shutdown()
		return
	}
	for {
		select {
		case <-c.closed:
			return
		default:
		}
		if _, _, err := c.next(); err != nil {
			c.shutdown()
			return
		}
	}
}

// firstMessageAuth reads and verifies the auth frame; on failure it closes with 1008.
// authCtx carries the upgrade request for the decision hook; ctx is the socket's.
func (s *Server) firstMessageAuth(authCtx, ctx context.Context, c *wsConn) (auth.Principal, bool) {
	// Closing from a timer tells the client why (1008) instead of just dropping it.
	timer := time.AfterFunc(s.deps.Auth.FirstMessageTimeout(), func() {
		c.close(ws.StatusPolicyViolation, "authentication required")
	})
	// Unauthenticated, a socket may make the runtime hold no more than an auth frame.
	maxMsg := c.maxMsg
	c.maxMsg = min(maxMsg, auth.MaxFirstMessageBytes)
	op, frame, err := c.next()
	c.maxMsg = maxMsg
	if !timer.Stop() {
		s.deps.Auth.FirstMessageFailed(authCtx, auth.FirstMessageTimeout)
		return auth.Principal{}, false
	}
	if err != nil {
		s.deps.Auth.FirstMessageFailed(authCtx, auth.FirstMessageUnread)
		return auth.Principal{}, false
	}
	if op != ws.OpText {
		s.deps.Auth.FirstMessageFailed(authCtx, auth.FirstMessageNotText)
		c.close(ws.StatusPolicyViolation, "authentication required")
		return auth.Principal{}, false
	}
	actx, acancel := context.WithCancel(authCtx)
	defer acancel()
	stop := context.AfterFunc(ctx, acancel) // a socket closing mid-verification stops it
	defer stop()
	p, err := s.deps.Auth.FirstMessage(actx, frame)
	if err != nil {
		c.close(ws.StatusPolicyViolation, "authentication failed")
		return auth.Principal{}, false
	}
	return p, true
}
