// Package inlinehttp is an HTTP/1.1 client transport that runs each exchange on the
// caller's goroutine.
//
// net/http's Transport keeps a reader and a writer goroutine per connection and hands every
// request and response between them and the caller over channels: four goroutine hand-offs
// per exchange, each a wake-up of an idle thread when the machine is not saturated. For the
// runtime's hop to an MCP server on localhost that scheduling cost is a large share of the
// hop's CPU. This transport writes the request and reads the response with net/http's own
// wire code (Request.Write, ReadResponse) on the calling goroutine and pools the idle
// connections itself. It speaks plain HTTP/1.1 only; anything else goes to Fallback.
package inlinehttp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// Defaults for the zero values of Transport's fields.
const (
	DefaultMaxIdlePerHost = 512
	DefaultIdleTimeout    = 90 * time.Second
	bufferSize            = 4 << 10
	// maxResponseHead bounds a response's status line and headers, 1xx responses included
	// (net/http's Transport allows 10 MB; an MCP server has no use for more than a little).
	maxResponseHead = 1 << 20
	max1xxResponses = 5 // as net/http's Transport
	// earlyAnswerWait is how long a request whose body could not be written waits for the
	// answer the server may have sent before closing (golang/go#40747).
	earlyAnswerWait = time.Second
)

// Transport is an http.RoundTripper for plain-HTTP/1.1 servers, typically on localhost.
// Its zero value is not usable: Fallback must be set (it serves https and any request this
// transport does not handle). Safe for concurrent use.
type Transport struct {
	// Fallback serves requests that are not plain http (https, other schemes).
	Fallback http.RoundTripper
	// Dial opens a connection; default: a net.Dialer with a 5 s timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxIdlePerHost bounds the idle connections kept per host (default 512).
	MaxIdlePerHost int
	// IdleTimeout closes connections idle for longer (default 90 s).
	IdleTimeout time.Duration

	mu      sync.Mutex
	idle    map[string][]*conn // per host:port, most recently used last
	pruning bool               // a prune is scheduled
}

// conn is one connection with its buffers; owned by one exchange at a time.
type conn struct {
	nc        net.Conn
	br        *bufio.Reader // reads through budget
	bw        *bufio.Writer
	budget    *headBudget
	key       string
	idleSince time.Time
	peek      *peeker // made at the first reuse
}

// headBudget limits what the reader may take from the socket while a response head is
// read; it is lifted for the body.
type headBudget struct {
	r       io.Reader
	left    int64
	limited bool
}

var errHeadTooLarge = errors.New("inlinehttp: the server's response headers are too large")

func (h *headBudget) Read(p []byte) (int, error) {
	if !h.limited {
		return h.r.Read(p)
	}
	if h.left <= 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > h.left {
		p = p[:h.left]
	}
	n, err := h.r.Read(p)
	h.left -= int64(n)
	return n, err
}

var errClosedBody = errors.New("inlinehttp: read on closed response body")

// RoundTrip sends req and reads the response head; the body is read from the connection as
// the caller reads it. Closing the body before its end closes the connection.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Scheme != "http" || req.URL.Host == "" || req.Method == http.MethodConnect {
		return t.Fallback.RoundTrip(req)
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeRequestBody(req)
		return nil, err
	}
	key := canonicalAddr(req)
	c, err := t.get(ctx, key)
	if err != nil {
		closeRequestBody(req)
		return nil, err
	}
	// Cancelling the request's context unblocks whatever this exchange waits for on the
	// socket; the connection is then not reused.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		_ = c.nc.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	werr := req.Write(c.bw)
	if werr == nil {
		werr = c.bw.Flush()
	}
	if werr != nil {
		// A server may answer before it has read the whole body and close the connection
		// (a 413, say): that answer is the one to return, as net/http's Transport does.
		_ = c.nc.SetReadDeadline(time.Now().Add(earlyAnswerWait))
		resp, err := c.readHead(req)
		if err != nil {
			return fail(werr)
		}
		req.Close = true // the connection is not reusable
		return t.withBody(ctx, resp, req, c, stop), nil
	}
	resp, err := c.readHead(req)
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		stop()
		_ = c.nc.Close()
		return nil, errors.New("inlinehttp: the server switched protocols, which this transport does not support")
	}
	return t.withBody(ctx, resp, req, c, stop), nil
}

// readHead reads the response head within its budget, skipping up to max1xxResponses
// informational answers (e.g. 103 Early Hints).
func (c *conn) readHead(req *http.Request) (*http.Response, error) {
	c.budget.left, c.budget.limited = maxResponseHead, true
	defer func() { c.budget.limited = false }()
	for range max1xxResponses + 1 {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 100 || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
	return nil, errors.New("inlinehttp: too many 1xx responses")
}

// withBody arranges for the connection to go back to the pool (or be closed) when the
// response body ends.
func (t *Transport) withBody(ctx context.Context, resp *http.Response, req *http.Request, c *conn, stop func() bool) *http.Response {
	reuse := !resp.Close && !req.Close
	if resp.Body == http.NoBody || resp.Body == nil {
		t.finish(c, stop, reuse)
		return resp
	}
	resp.Body = &body{rc: resp.Body, t: t, c: c, stop: stop, reuse: reuse, ctx: ctx}
	return resp
}

// finish ends an exchange: the connection goes back to the pool when the server allows it
// and the context did not cancel the exchange midway (that leaves a past deadline on it).
func (t *Transport) finish(c *conn, stop func() bool, reuse bool) {
	if stop() && reuse {
		t.put(c)
		return
	}
	_ = c.nc.Close()
}

// body hands the connection back at the end of the response body.
type body struct {
	rc    io.ReadCloser
	t     *Transport
	c     *conn
	stop  func() bool
	reuse bool
	ctx   context.Context

	mu     sync.Mutex
	done   bool // the connection was released or closed
	atEOF  bool // the body was read to its end (further reads keep saying io.EOF)
	closed bool // Close was called
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	atEOF, closed := b.atEOF, b.closed
	b.mu.Unlock()
	switch {
	case atEOF:
		return 0, io.EOF
	case closed:
		return 0, errClosedBody
	}
	n, err := b.rc.Read(p)
	switch {
	case errors.Is(err, io.EOF):
		b.mu.Lock()
		b.atEOF = true
		b.mu.Unlock()
		b.release(true)
	case err != nil && b.ctx.Err() != nil:
		err = b.ctx.Err() // the deadline that ended the read was the context's doing
	}
	return n, err
}

// Close may run while another goroutine is in Read (that is how an HTTP client aborts a
// stream): closing the socket ends that Read.
func (b *body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.release(false)
	return nil
}

func (b *body) release(atEOF bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	if atEOF {
		b.t.finish(b.c, b.stop, b.reuse)
		return
	}
	b.stop()
	_ = b.c.nc.Close()
}

// get returns a live idle connection to key, or dials one.
func (t *Transport) get(ctx context.Context, key string) (*conn, error) {
	for {
		c := t.popIdle(key)
		if c == nil {
			break
		}
		if c.alive() {
			return c, nil
		}
		_ = c.nc.Close()
	}
	dial := t.Dial
	if dial == nil {
		dial = defaultDialer.DialContext
	}
	nc, err := dial(ctx, "tcp", key)
	if err != nil {
		return nil, err
	}
	budget := &headBudget{r: nc}
	return &conn{nc: nc, br: bufio.NewReaderSize(budget, bufferSize), bw: bufio.NewWriterSize(nc, bufferSize), budget: budget, key: key}, nil
}

var defaultDialer = &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}

func (t *Transport) popIdle(key string) *conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.idle[key]
	for len(list) > 0 {
		c := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if time.Since(c.idleSince) < t.idleTimeout() {
			t.idle[key] = list
			return c
		}
		_ = c.nc.Close()
	}
	delete(t.idle, key)
	return nil
}

func (t *Transport) put(c *conn) {
	if c.br.Buffered() > 0 { // bytes the server sent beyond the response: not a clean state
		_ = c.nc.Close()
		return
	}
	max := t.MaxIdlePerHost
	if max <= 0 {
		max = DefaultMaxIdlePerHost
	}
	c.idleSince = time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.idle[c.key]) >= max {
		_ = c.nc.Close()
		return
	}
	if t.idle == nil {
		t.idle = map[string][]*conn{}
	}
	t.idle[c.key] = append(t.idle[c.key], c)
	if !t.pruning {
		t.pruning = true
		time.AfterFunc(t.idleTimeout(), t.prune)
	}
}

// prune closes the connections idle for longer than IdleTimeout, so that an unused pool
// does not keep sockets the server has long given up on.
func (t *Transport) prune() {
	t.mu.Lock()
	defer t.mu.Unlock()
	cutoff := time.Now().Add(-t.idleTimeout())
	for key, list := range t.idle {
		kept := list[:0]
		for _, c := range list {
			if c.idleSince.After(cutoff) {
				kept = append(kept, c)
			} else {
				_ = c.nc.Close()
			}
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(t.idle, key)
		} else {
			t.idle[key] = kept
		}
	}
	t.pruning = len(t.idle) > 0
	if t.pruning {
		time.AfterFunc(t.idleTimeout(), t.prune)
	}
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleTimeout > 0 {
		return t.IdleTimeout
	}
	return DefaultIdleTimeout
}

// CloseIdleConnections closes the pooled connections (http.Client.CloseIdleConnections calls
// it) and those of Fallback.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			_ = c.nc.Close()
		}
	}
	if ci, ok := t.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// IdleConnections reports how many connections the pool holds (for tests and metrics).
func (t *Transport) IdleConnections() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, list := range t.idle {
		n += len(list)
	}
	return n
}

// alive reports whether an idle connection is still open with nothing to read: a server
// that closed it while it sat in the pool (idle timeout, restart) must not get the next
// request, which would then fail after being written. One non-blocking peek, no waiting.
func (c *conn) alive() bool {
	if c.peek == nil {
		sc, ok := c.nc.(syscall.Conn)
		if !ok {
			return true
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		c.peek = newPeeker(raw)
	}
	return c.peek.quiet()
}

// peeker is a connection's peek, built once: built per reuse, its RawConn, callback and
// buffer were three allocations on every request.
type peeker struct {
	raw  syscall.RawConn
	peek func(fd uintptr) bool
	buf  [1]byte
	open bool
}

func newPeeker(raw syscall.RawConn) *peeker {
	p := &peeker{raw: raw}
	p.peek = func(fd uintptr) bool {
		// EAGAIN: open and quiet. 0 bytes: the server closed it. Data: the server sent
		// something nobody asked for; either way the connection is not reusable.
		_, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		p.open = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true // never wait
	}
	return p
}

func (p *peeker) quiet() bool {
	p.open = false
	return p.raw.Read(p.peek) == nil && p.open
}

// canonicalAddr is host:port of req's URL, port 80 when absent.
func canonicalAddr(req *http.Request) string {
	if req.URL.Port() != "" {
		return req.URL.Host
	}
	return net.JoinHostPort(req.URL.Hostname(), "80")
}

func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

var aLongTimeAgo = time.Unix(1, 0)
