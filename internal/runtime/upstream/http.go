package upstream

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/inlinehttp"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/mediatype"
)

const (
	headerSessionID       = "Mcp-Session-Id"
	headerProtocolVersion = "MCP-Protocol-Version"
	// maxPostsPerSession bounds concurrent POSTs (and their goroutines) per session.
	maxPostsPerSession = 64
	// maxResumes bounds reconnections of one request's event stream.
	maxResumes    = 5
	deleteTimeout = 5 * time.Second
	probeTimeout  = 10 * time.Second
	// healthInterval: how often a ready upstream is checked for a listening port, so
	// Ready turns false when the server dies even while no client talks to it.
	healthInterval = 5 * time.Second
)

// NewHTTP returns an upstream that relays each client session to a Streamable HTTP MCP
// server at cfg.URL (normally on localhost), one upstream session per client session.
func NewHTTP(cfg config.Upstream, opts Options) (Upstream, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("upstream: url %q must be an absolute http(s) URL such as http://127.0.0.1:8080/mcp", cfg.URL)
	}
	s := resolve(cfg, opts)
	client := opts.HTTPClient
	if client == nil {
		client = DefaultHTTPClient()
	}
	transport := client.Transport
	if transport == nil {
		transport = http.DefaultTransport
	}
	return &httpUpstream{
		url:           u.String(),
		authorization: basicAuth(u.User),
		logURL:        u.Redacted(),
		host:          hostPort(u),
		healthEvery:   healthInterval,
		client:        client,
		transport:     transport,
		s:             &s,
		sessions:      map[*httpSession]struct{}{},
		kick:          make(chan struct{}, 1),
		done:          make(chan struct{}),
	}, nil
}

// DefaultHTTPClient is sized for one busy server on localhost: plain-HTTP exchanges run on
// the caller's goroutine (inlinehttp: net/http's Transport hands each one between three
// goroutines, which cost the relay ~10% of its CPU per request), no proxy (a proxy from the
// environment must not see local traffic), many idle connections per host (Go's default
// of 2 cost ~15% throughput in the relay), no compression (on localhost it only costs
// CPU), no overall timeout (SSE streams are long; each request carries its own deadline).
// An https upstream goes through net/http's Transport.
func DefaultHTTPClient() *http.Client {
	return &http.Client{Transport: &inlinehttp.Transport{Fallback: &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}}}
}

type httpUpstream struct {
	url           string
	authorization []string // from the url's user:password; nil: none
	logURL        string   // url with its password masked (it is sent as basic auth)
	host          string   // host:port dialed by the health check
	healthEvery   time.Duration
	client        *http.Client      // for CloseIdleConnections
	transport     http.RoundTripper // every exchange: see roundTrip
	s             *settings
	ready         atomic.Bool

	mu       sync.Mutex
	sessions map[*httpSession]struct{}
	closed   bool
	started  bool
	kick     chan struct{}
	done     chan struct{}
	tasks    tasks // prober, POSTs, GET streams, DELETEs
}

// Start begins probing the server with an initialize handshake until one succeeds; Ready
// reports it. A server that is still starting is not an error.
func (u *httpUpstream) Start(context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return ErrClosed
	}
	if !u.started {
		u.started = true
		u.tasks.run(u.prober)
		u.recheck()
	}
	return nil
}

func (u *httpUpstream) Ready() bool { return u.ready.Load() }

// recheck marks the server as unverified and wakes the prober.
func (u *httpUpstream) recheck() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

func (u *httpUpstream) prober() {
	health := time.NewTicker(u.healthEvery)
	defer health.Stop()
	for {
		select {
		case <-u.kick:
		case <-health.C:
			if u.ready.Load() && !u.listening() {
				u.s.log.Warn("upstream stopped listening", "url", u.logURL)
				u.ready.Store(false)
			}
		case <-u.done:
			return
		}
		delay := u.s.backoff.Min
		for !u.ready.Load() {
			err := u.probe()
			if err == nil {
				u.ready.Store(true)
				u.s.log.Info("upstream reachable and initialized", "url", u.logURL)
				break
			}
			u.s.log.Warn("upstream probe failed", "url", u.logURL, "err", err, "retryIn", delay)
			select {
			case <-time.After(delay):
			case <-u.done:
				return
			}
			delay = min(2*delay, u.s.backoff.Max)
		}
	}
}

// listening dials the server's port: cheap, and it opens no MCP session.
func (u *httpUpstream) listening() bool {
	conn, err := net.DialTimeout("tcp", u.host, 2*time.Second)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// probe runs an initialize handshake and ends the session it opened.
func (u *httpUpstream) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), min(probeTimeout, u.s.requestTimeout))
	defer cancel()
	go func() {
		select {
		case <-u.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	msg := request(0, "initialize", u.s.initParams)
	resp, err := u.post(ctx, msg, "", "")
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("initialize answered HTTP %d", resp.StatusCode)
	}
	ok := false
	_, err = u.readMessages(resp, func(m []byte) {
		if env, err := parseEnvelope(m); err == nil && env.isResponse() && env.result.ok() {
			ok = true
		}
	})
	if sid := resp.Header.Get(headerSessionID); sid != "" {
		u.deleteSession(sid)
	}
	if !ok {
		if err == nil {
			err = errors.New("no initialize result")
		}
		return err
	}
	return nil
}

func (u *httpUpstream) post(ctx context.Context, msg []byte, sid, version string) (*http.Response, error) {
	// A fully buffered body (bytes.Reader: known length, replayable) avoids the request
	// truncation of golang/go#40747 when the server answers while the body is in flight;
	// inlinehttp then returns that answer.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.url, bytes.NewReader(msg))
	if err != nil {
		return nil, err
	}
	// Canonical keys set directly: Header.Set would allocate a slice per value.
	req.Header["Content-Type"] = postContentType
	req.Header["Accept"] = postAccept
	if sid != "" {
		req.Header[headerSessionID] = []string{sid}
	}
	if version != "" {
		req.Header[protocolVersionKey] = []string{version}
	}
	return u.roundTrip(req)
}

// roundTrip sends one request to the server as it is: redirects are not followed. The
// upstream is one configured URL; a 3xx from it must not carry a session's messages, its
// session id and the client's Last-Event-ID to another address (http.Client would follow
// it, as a GET for 301-303), so it is answered as the unexpected status it is. Skipping
// http.Client also spares each exchange its redirect bookkeeping.
func (u *httpUpstream) roundTrip(req *http.Request) (*http.Response, error) {
	if u.authorization != nil {
		req.Header["Authorization"] = u.authorization
	}
	return u.transport.RoundTrip(req)
}

// basicAuth is the Authorization header of the URL's user:password, as http.Client sends
// it (a transport does not); nil without one.
func basicAuth(user *url.Userinfo) []string {
	if user == nil {
		return nil
	}
	password, _ := user.Password()
	return []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(user.Username()+":"+password))}
}

// Shared header values of every POST; net/http only reads them.
var (
	protocolVersionKey = http.CanonicalHeaderKey(headerProtocolVersion)
	postContentType    = []string{"application/json"}
	postAccept         = []string{"application/json, text/event-stream"}
)

// readMessages reads a 200 answer: one JSON body (object or batch) or an SSE stream
// (then it returns the last event id, to resume the stream with).
func (u *httpUpstream) readMessages(resp *http.Response, fn func([]byte)) (string, error) {
	mt := mediatype.Of(resp.Header.Get("Content-Type"))
	switch mt {
	case "text/event-stream":
		return readSSE(resp.Body, u.s.maxMsg, func(data []byte, _ string) { fn(data) }, u.s)
	case "application/json":
		body, err := io.ReadAll(io.LimitReader(resp.Body, int64(u.s.maxMsg)+1))
		if err != nil {
			return "", err
		}
		if len(body) > u.s.maxMsg {
			return "", fmt.Errorf("upstream response exceeded the %d-byte message size limit", u.s.maxMsg)
		}
		body = bytes.TrimSpace(body)
		if len(body) > 0 && body[0] == '[' {
			var batch []json.RawMessage
			if err := json.Unmarshal(body, &batch); err != nil {
				return "", fmt.Errorf("upstream sent invalid JSON: %w", err)
			}
			for _, m := range batch {
				fn(m)
			}
			return "", nil
		}
		fn(body)
		return "", nil
	}
	return "", fmt.Errorf("upstream answered with unexpected content type %q", mt)
}

func (u *httpUpstream) deleteSession(sid string) {
	ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.url, nil)
	if err != nil {
		return
	}
	req.Header.Set(headerSessionID, sid)
	resp, err := u.roundTrip(req)
	if err != nil {
		u.s.log.Debug("ending upstream session failed", "err", err)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
}

func (u *httpUpstream) NewSession(context.Context) (Session, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &httpSession{
		u:      u,
		id:     newID(),
		ctx:    ctx,
		cancel: cancel,
		out:    make(chan []byte, u.s.queue),
		sem:    make(chan struct{}, maxPostsPerSession),
	}
	u.sessions[s] = struct{}{}
	return s, nil
}

// Close ends every session (DELETE upstream) and stops probing.
func (u *httpUpstream) Close(ctx context.Context) error {
	u.mu.Lock()
	if !u.closed {
		u.closed = true
		close(u.done)
	}
	sessions := make([]*httpSession, 0, len(u.sessions))
	for s := range u.sessions {
		sessions = append(sessions, s)
	}
	u.mu.Unlock()
	for _, s := range sessions {
		_ = s.Close()
	}
	u.ready.Store(false)
	err := u.tasks.wait(ctx)
	u.client.CloseIdleConnections()
	return err
}

// httpSession is one client session relayed to its own upstream session.
type httpSession struct {
	u      *httpUpstream
	id     string
	ctx    context.Context // canceled on Close: ends every POST and the GET stream
	cancel context.CancelFunc
	out    chan []byte
	sem    chan struct{}

	mu        sync.Mutex
	closed    bool
	recv      *receiver     // set by Receive: messages go there instead of out
	sessionID string        // upstream Mcp-Session-Id
	version   string        // negotiated protocol version, sent as MCP-Protocol-Version
	initWait  chan struct{} // open while an initialize is in flight
	listening bool
}

func (s *httpSession) ID() string              { return s.id }
func (s *httpSession) Messages() <-chan []byte { return s.out }

func (s *httpSession) Send(ctx context.Context, msg []byte) error {
	env, id, err := s.admit(ctx, msg)
	if err != nil {
		return err
	}
	msg = append([]byte(nil), msg...)
	s.u.tasks.run(func() { s.exchange(s.ctx, msg, id, env.method, s.deliver) })
	return nil
}

// Exchange implements Exchanger: the POST runs on the caller's goroutine, and what the
// server answers on it goes to fn instead of Messages().
func (s *httpSession) Exchange(ctx context.Context, msg []byte, fn func([]byte)) error {
	env, id, err := s.admit(ctx, msg)
	if err != nil {
		return err
	}
	s.exchange(ctx, msg, id, env.method, fn)
	return nil
}

// Receive implements Receiver. Messages queued before it was called are passed on first.
func (s *httpSession) Receive(fn func([]byte), end func()) {
	s.mu.Lock()
	if s.recv != nil {
		s.mu.Unlock()
		return
	}
	r := &receiver{fn: fn, end: end}
	// Hold r while the queued messages are passed on, so a message delivered
	// concurrently (once s.recv is set) cannot overtake them.
	r.mu.Lock()
	s.recv = r
	var queued [][]byte
	for drained := false; !drained; {
		select {
		case m, ok := <-s.out:
			if ok {
				queued = append(queued, m)
			} else {
				drained = true
			}
		default:
			drained = true
		}
	}
	closed := s.closed
	s.mu.Unlock()
	for _, m := range queued {
		fn(m)
	}
	r.mu.Unlock()
	if closed {
		r.finish()
	}
}

var errAdmitExpired = fmt.Errorf("waiting to relay: %w", context.DeadlineExceeded)

// admit checks a client message, waits for the session id an initialize in flight will
// bring, and takes a POST slot (released by exchange). It returns the request id (nil for
// other messages).
func (s *httpSession) admit(ctx context.Context, msg []byte) (envelope, []byte, error) {
	env, err := locateEnvelope(msg)
	if err != nil {
		return env, nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	if !env.isRequest() && !env.isNotification() && !env.isResponse() {
		return env, nil, fmt.Errorf("%w: neither a request, a notification nor a response", ErrInvalidMessage)
	}
	initialize := env.isRequest() && env.method == "initialize"
	// Waiting is bounded by the request timeout too (the timer exists only if one waits;
	// an unreferenced timer is collected without Stop).
	var expired <-chan time.Time
	bound := func() <-chan time.Time {
		if expired == nil {
			expired = time.NewTimer(s.u.s.requestTimeout).C
		}
		return expired
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return env, nil, ErrSessionClosed
	}
	// Messages after an initialize need the session id its answer carries.
	if wait := s.initWait; wait != nil && !initialize {
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return env, nil, ctx.Err()
		case <-s.ctx.Done():
			return env, nil, ErrSessionClosed
		case <-bound():
			return env, nil, errAdmitExpired
		}
		s.mu.Lock()
	}
	if initialize {
		s.initWait = make(chan struct{})
	}
	s.mu.Unlock()
	select {
	case s.sem <- struct{}{}:
	default:
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return env, nil, ctx.Err()
		case <-s.ctx.Done():
			return env, nil, ErrSessionClosed
		case <-bound():
			return env, nil, errAdmitExpired
		}
	}
	var id []byte
	if env.isRequest() {
		id = append([]byte(nil), env.idRaw()...)
	}
	return env, id, nil
}

// exchange POSTs one message and passes whatever the server answers on that request to
// deliver (copies it may keep). The request gets exactly one response: the server's, or an
// error when the server cannot answer — unless the session closes or, for Exchange, the
// caller gives up (base cancelled while the session lives): then nothing is answered.
func (s *httpSession) exchange(base context.Context, msg, id []byte, method string, deliver func([]byte)) {
	defer func() { <-s.sem }()
	s.mu.Lock()
	sid, version, initWait := s.sessionID, s.version, s.initWait
	s.mu.Unlock()
	initialize := method == "initialize" && id != nil
	if initialize {
		defer close(initWait)
		defer func() {
			s.mu.Lock()
			if s.initWait == initWait {
				s.initWait = nil
			}
			s.mu.Unlock()
		}()
	}
	fail := func(msg string) {
		if id == nil {
			s.u.s.log.Warn("upstream message not delivered", "reason", msg)
			return
		}
		deliver(errorResponse(id, codeInternalError, msg))
	}
	gone := func() bool { return s.ctx.Err() != nil || base.Err() != nil }
	ctx, cancel := context.WithTimeout(base, s.u.s.requestTimeout)
	if method == "subscriptions/listen" {
		// A listen stream is open until the client ends it, as on the stdio path: the
		// request timeout bounds requests that are answered, not subscriptions.
		cancel()
		ctx, cancel = context.WithCancel(base)
	}
	defer cancel()
	if base != s.ctx { // Exchange: the session closing ends it too
		stop := context.AfterFunc(s.ctx, cancel)
		defer stop()
	}
	resp, err := s.u.post(ctx, msg, sid, version)
	if err != nil {
		switch {
		case gone():
		case ctx.Err() != nil:
			fail(fmt.Sprintf("upstream request timed out after %s", s.u.s.requestTimeout))
		default:
			s.u.s.log.Warn("upstream HTTP request failed", "err", err)
			s.u.ready.Store(false)
			s.u.recheck()
			fail("upstream unreachable; request not completed")
		}
		return
	}
	defer func() { _ = resp.Body.Close() }()
	if initialize {
		if v := resp.Header.Get(headerSessionID); v != "" {
			s.mu.Lock()
			s.sessionID = v
			s.mu.Unlock()
		}
	}
	answered := false
	want := ""
	if id != nil {
		want = jsonrpc.IDKey(id)
	}
	relay := func(m []byte) {
		env, err := parseEnvelope(m)
		if err != nil {
			s.u.s.log.Warn("upstream sent an invalid message; dropped", "err", err)
			return
		}
		if want != "" && env.isResponse() && jsonrpc.IDKey(env.idRaw()) == want {
			answered = true
			if initialize && env.result.ok() {
				s.u.ready.Store(true)
				if v, ok := path(env.raw, env.result, "protocolVersion"); ok {
					if pv, err := unquote(env.get(v)); err == nil {
						s.mu.Lock()
						s.version = pv
						s.mu.Unlock()
					}
				}
			}
		}
		deliver(append([]byte(nil), m...))
	}
	switch resp.StatusCode {
	case http.StatusAccepted:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		if method == "notifications/initialized" {
			s.listen()
		}
	case http.StatusOK:
		lastEvent, err := s.u.readMessages(resp, relay)
		// A server may end a request's SSE stream early and expect the client to resume
		// it with GET + Last-Event-ID (SEP-1699); the answer then comes on that stream.
		for try := 0; try < maxResumes && id != nil && !answered && lastEvent != "" && ctx.Err() == nil; try++ {
			var next string
			if next, err = s.resume(ctx, lastEvent, relay); next != "" {
				lastEvent = next
			}
		}
		if err != nil && !gone() {
			if ctx.Err() != nil && !answered {
				fail(fmt.Sprintf("upstream request timed out after %s", s.u.s.requestTimeout))
				return
			}
			s.u.s.log.Warn("reading upstream response failed", "err", err)
		}
	default:
		// Relay a JSON-RPC error body as is; otherwise say what the server answered.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if env, err := parseEnvelope(bytes.TrimSpace(body)); err == nil && env.isResponse() && want != "" && jsonrpc.IDKey(env.idRaw()) == want {
			relay(env.raw)
		} else if resp.StatusCode == http.StatusNotFound && sid != "" {
			fail("upstream session expired; initialize a new session")
			return
		} else {
			fail(fmt.Sprintf("upstream answered HTTP %d", resp.StatusCode))
			return
		}
	}
	if id != nil && !answered && !gone() {
		fail("upstream ended the response without answering the request")
	}
}

// resume reopens a request's event stream after lastEvent.
func (s *httpSession) resume(ctx context.Context, lastEvent string, relay func([]byte)) (string, error) {
	resp, err := s.get(ctx, lastEvent)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	mt := mediatype.Of(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK || mt != "text/event-stream" {
		return "", fmt.Errorf("resuming the upstream stream: HTTP %d", resp.StatusCode)
	}
	return readSSE(resp.Body, s.u.s.maxMsg, func(data []byte, _ string) { relay(data) }, s.u.s)
}

// get opens an event stream of this session (resuming after lastEvent if set).
func (s *httpSession) get(ctx context.Context, lastEvent string) (*http.Response, error) {
	s.mu.Lock()
	sid, version := s.sessionID, s.version
	s.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.u.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if sid != "" {
		req.Header.Set(headerSessionID, sid)
	}
	if version != "" {
		req.Header.Set(headerProtocolVersion, version)
	}
	if lastEvent != "" {
		req.Header.Set("Last-Event-ID", lastEvent)
	}
	return s.u.roundTrip(req)
}

// listen opens the GET stream for server notifications and requests, once, if the
// server keeps sessions; it reconnects (with Last-Event-ID) until the session ends.
func (s *httpSession) listen() {
	s.mu.Lock()
	if s.listening || s.sessionID == "" || s.closed {
		s.mu.Unlock()
		return
	}
	s.listening = true
	s.mu.Unlock()
	s.u.tasks.run(func() {
		delay := s.u.s.backoff.Min
		lastID := ""
		for s.ctx.Err() == nil {
			resp, err := s.get(s.ctx, lastID)
			if err == nil {
				mt := mediatype.Of(resp.Header.Get("Content-Type"))
				switch {
				case resp.StatusCode == http.StatusOK && mt == "text/event-stream":
					delay = s.u.s.backoff.Min
					last, _ := readSSE(resp.Body, s.u.s.maxMsg, func(data []byte, _ string) {
						s.deliver(append([]byte(nil), data...))
					}, s.u.s)
					if last != "" {
						lastID = last
					}
					_ = resp.Body.Close()
				default:
					_ = resp.Body.Close()
					// 405: the server offers no stream; 4xx: the session is gone.
					s.u.s.log.Debug("upstream GET stream not available", "status", resp.StatusCode)
					return
				}
			}
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return
			}
			delay = min(2*delay, s.u.s.backoff.Max)
		}
	})
}

// deliver queues a message without blocking; a session whose reader falls a whole queue
// behind is closed.
func (s *httpSession) deliver(m []byte) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if r := s.recv; r != nil {
		s.mu.Unlock()
		r.deliver(m)
		return
	}
	select {
	case s.out <- m:
		s.mu.Unlock()
	default:
		s.mu.Unlock()
		s.u.s.log.Warn("closing upstream session: its client stopped reading messages", "session", s.id)
		_ = s.Close()
	}
}

// Close cancels everything in flight and ends the upstream session (DELETE).
func (s *httpSession) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.out)
	sid, r := s.sessionID, s.recv
	s.mu.Unlock()
	if r != nil {
		r.finish()
	}
	s.cancel()
	u := s.u
	u.mu.Lock()
	delete(u.sessions, s)
	u.mu.Unlock()
	if sid != "" {
		u.tasks.run(func() { u.deleteSession(sid) })
	}
	return nil
}

// readSSE reads server-sent events, calling fn with each message event's data. Lines
// and events are bounded by max; an over-long event is dropped. It returns the last
// event id seen.
func readSSE(r io.Reader, max int, fn func(data []byte, id string), s *settings) (string, error) {
	lr := getStreamReader(r, max)
	defer putStreamReader(lr)
	var data []byte
	var event, lastID string
	tooLong := false
	for {
		line, err := lr.next()
		if errors.Is(err, errLineTooLong) {
			tooLong = true
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return lastID, err
		}
		if len(line) == 0 { // dispatch
			switch {
			case tooLong:
				s.log.Error("upstream event dropped: larger than the message size limit", "limit", max)
			case len(data) > 0 && (event == "" || event == "message"):
				fn(bytes.TrimSuffix(data, []byte("\n")), lastID)
			}
			data, event, tooLong = data[:0], "", false
			continue
		}
		if line[0] == ':' {
			continue // comment / keep-alive
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if len(data)+len(value) > max {
				tooLong = true
				continue
			}
			data = append(append(data, value...), '\n')
		case "event":
			event = string(value)
		case "id":
			lastID = string(value)
		}
	}
}

// tasks tracks goroutines so Close can wait for them; unlike a sync.WaitGroup it allows
// starting one while another goroutine waits (a session closed during shutdown).
type tasks struct {
	mu   sync.Mutex
	n    int
	zero chan struct{}
}

func (t *tasks) run(f func()) {
	t.mu.Lock()
	if t.n == 0 {
		t.zero = make(chan struct{})
	}
	t.n++
	t.mu.Unlock()
	go func() {
		defer func() {
			t.mu.Lock()
			if t.n--; t.n == 0 {
				close(t.zero)
			}
			t.mu.Unlock()
		}()
		f()
	}()
}

// wait returns once no task runs, or with ctx's error.
func (t *tasks) wait(ctx context.Context) error {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return nil
	}
	zero := t.zero
	t.mu.Unlock()
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
