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
	br        *bufio.Reader
	bw        *bufio.Writer
	key       string
	idleSince time.Time
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
	if err := req.Write(c.bw); err != nil {
		return fail(err)
	}
	if err := c.bw.Flush(); err != nil {
		return fail(err)
	}
	resp, err := http.ReadResponse(c.br, req)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(c.br, req) // 1xx (e.g. 103 Early Hints): the answer follows
	}
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		stop()
		_ = c.nc.Close()
		_ = resp.Body.Close()
		return nil, errors.New("inlinehttp: the server switched protocols, which this transport does not support")
	}
	reuse := !resp.Close && !req.Close
	if resp.Body == http.NoBody || resp.Body == nil {
		t.finish(c, stop, reuse)
		return resp, nil
	}
	resp.Body = &body{rc: resp.Body, t: t, c: c, stop: stop, reuse: reuse}
	return resp, nil
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

	mu   sync.Mutex
	done bool // the connection was released or closed
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	done := b.done
	b.mu.Unlock()
	if done {
		return 0, errClosedBody
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.release(true)
	}
	return n, err
}

// Close may run while another goroutine is in Read (that is how an HTTP client aborts a
// stream): closing the socket ends that Read.
func (b *body) Close() error {
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
		if alive(c.nc) {
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
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, bufferSize), bw: bufio.NewWriterSize(nc, bufferSize), key: key}, nil
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
func alive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		// EAGAIN: open and quiet. 0 bytes: the server closed it. Data: the server sent
		// something nobody asked for; either way the connection is not reusable.
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait
	})
	return err == nil && ok
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
