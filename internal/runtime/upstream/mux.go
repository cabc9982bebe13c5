package upstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
)

const (
	msgExited   = "upstream process exited; request not completed"
	msgNotReady = "upstream not ready: the MCP server is starting or restarting"
)

// mux multiplexes client sessions onto one stdio child: every request gets a fresh
// upstream id, and responses, progress, cancellations and server→client requests are
// mapped back to the session and the ids it used. With restart set, a child that dies is
// started again with exponential backoff and re-initialized before requests go through.
type mux struct {
	argv    []string
	s       *settings
	restart bool
	private bool // per-session mode: the child's one session gets all its log messages
	log     *slog.Logger
	onDead  func() // called once the mux has stopped for good

	mu         sync.Mutex
	child      *child
	gen        uint64
	ready      bool
	readyCh    chan struct{} // closed while ready (or closed)
	initResult []byte
	sessions   map[*session]struct{}
	pending    map[string]*pending          // by upstream id key
	progress   map[string]*progressRoute    // by upstream progress token key
	srvReqs    map[string]*serverReq        // by the id given to the client
	srvByOrig  map[string]*serverReq        // by the child's own id
	subs       map[string]map[*session]bool // resource uri → subscribed sessions
	elicits    map[string]*session          // URL elicitation id → the session asked
	logLevel   string                       // the child's logging level, set for clients
	seq        int64
	outbox     []delivery // for sessions with a receiver; dispatched by unlock
	closed     bool
	closing    chan struct{}
	stopped    chan struct{}
	startOnce  sync.Once
}

type pending struct {
	sess      *session // nil for the runtime's own requests
	origID    []byte
	clientKey string
	upKey     string
	upID      int64
	gen       uint64
	progKey   string
	method    string
	subURI    string // resources/subscribe: undone if the child refuses it
	logLevel  string // logging/setLevel: the level this request sets the child to
	timer     *time.Timer
	reply     chan []byte // runtime's own requests that wait for the answer
}

// delivery is a message (or, with end, the end) for a session with a receiver, queued
// while m.mu is held and passed on by unlock.
type delivery struct {
	r   *receiver
	msg []byte
	end bool
}

// unlock releases m.mu, then hands the deliveries queued under it to their receivers, in
// order, on this goroutine: receivers never run under m.mu.
func (m *mux) unlock() {
	out := m.outbox
	m.outbox = nil
	m.mu.Unlock()
	for _, d := range out {
		if d.end {
			d.r.finish()
		} else {
			d.r.deliver(d.msg)
		}
	}
}

type progressRoute struct {
	sess  *session
	token []byte
}

type serverReq struct {
	sess      *session
	gen       uint64
	origID    []byte
	origKey   string
	clientID  []byte
	clientKey string
	timer     *time.Timer
}

// metaSubscriptionID is the params._meta key naming the subscriptions/listen request a
// notification was sent for (MCP 2026-07-28).
const metaSubscriptionID = "io.modelcontextprotocol/subscriptionId"

func newMux(argv []string, s *settings, restart bool) *mux {
	return &mux{
		argv:      argv,
		s:         s,
		restart:   restart,
		log:       s.log.With("upstream", argv[0]),
		readyCh:   make(chan struct{}),
		sessions:  map[*session]struct{}{},
		pending:   map[string]*pending{},
		progress:  map[string]*progressRoute{},
		srvReqs:   map[string]*serverReq{},
		srvByOrig: map[string]*serverReq{},
		subs:      map[string]map[*session]bool{},
		elicits:   map[string]*session{},
		closing:   make(chan struct{}),
		stopped:   make(chan struct{}),
	}
}

// start spawns the first child; a command that cannot be started is an error here, later
// failures are retried in the background.
func (m *mux) start() error {
	err := ErrClosed
	m.startOnce.Do(func() {
		var c *child
		c, err = m.spawn()
		if err != nil {
			close(m.stopped)
			return
		}
		go m.run(c)
	})
	return err
}

func (m *mux) spawn() (*child, error) {
	m.mu.Lock()
	defer m.unlock()
	if m.closed {
		return nil, ErrClosed
	}
	gen := m.gen + 1
	c, err := startChild(m.argv, m.s,
		func(line []byte) { m.handleLine(gen, line) },
		func(prefix, tail []byte) { m.handleTooLong(gen, prefix, tail) })
	if err != nil {
		return nil, err
	}
	m.gen, m.child = gen, c
	m.log.Info("upstream process started", "pid", c.pid)
	return c, nil
}

func (m *mux) run(c *child) {
	defer func() {
		m.shutdownSessions()
		close(m.stopped)
		if m.onDead != nil {
			m.onDead()
		}
	}()
	delay := m.s.backoff.Min
	for {
		go m.initialize(c)
		<-c.done
		m.detach(c)
		up := time.Since(c.started)
		if m.isClosed() {
			return
		}
		m.log.Warn("upstream process exited", "pid", c.pid, "err", c.exitErr, "uptime", up.Round(time.Millisecond))
		if !m.restart {
			return
		}
		if up >= m.s.backoff.ResetAfter {
			delay = m.s.backoff.Min
		}
		for {
			select {
			case <-time.After(delay):
			case <-m.closing:
				return
			}
			delay = min(2*delay, m.s.backoff.Max)
			nc, err := m.spawn()
			if err == nil {
				c = nc
				m.s.onRestart()
				m.s.onToolsChanged()
				break
			}
			if errors.Is(err, ErrClosed) {
				return
			}
			m.log.Error("restarting upstream failed", "err", err, "retryIn", delay)
		}
	}
}

// initialize sends the runtime's initialize to a fresh child, caches the result and
// opens the gate for client requests; a child that will not initialize is killed (and
// restarted with backoff).
func (m *mux) initialize(c *child) {
	m.mu.Lock()
	if m.child != c {
		m.unlock()
		return
	}
	p := m.newPendingLocked(nil, nil, "")
	p.reply = make(chan []byte, 1)
	m.unlock()
	c.tryEnqueue(request(p.upID, "initialize", m.s.initParams))

	t := time.NewTimer(m.s.requestTimeout)
	defer t.Stop()
	var raw []byte
	select {
	case raw = <-p.reply:
	case <-t.C:
		m.mu.Lock()
		m.finishLocked(p)
		m.unlock()
		m.log.Error("upstream did not answer initialize in time; restarting it", "timeout", m.s.requestTimeout)
		c.kill()
		return
	case <-c.done:
		return
	}
	env, err := parseEnvelope(raw)
	if err != nil || !env.result.ok() {
		msg := "malformed response"
		if err == nil && env.errv.ok() {
			msg = string(env.get(env.errv))
		}
		m.log.Error("upstream refused initialize; restarting it", "error", msg)
		c.kill()
		return
	}
	m.mu.Lock()
	defer m.unlock()
	if m.child != c || m.closed {
		return
	}
	c.tryEnqueue(notification("notifications/initialized", nil))
	m.initResult = append([]byte(nil), env.get(env.result)...)
	// Subscriptions made on the previous child are renewed on this one.
	for uri := range m.subs {
		m.internalRequestLocked(c, "resources/subscribe", uriParams(uri))
	}
	if m.logLevel != "" {
		m.setChildLogLevelLocked(c)
	}
	m.ready = true
	close(m.readyCh)
	m.log.Info("upstream initialized", "pid", c.pid)
}

func uriParams(uri string) []byte {
	b, _ := json.Marshal(map[string]string{"uri": uri})
	return b
}

// setChildLogLevelLocked sends the runtime's own logging/setLevel for m.logLevel.
func (m *mux) setChildLogLevelLocked(c *child) {
	b, _ := json.Marshal(map[string]string{"level": m.logLevel})
	p := m.newPendingLocked(nil, nil, "")
	p.method, p.logLevel = "logging/setLevel", m.logLevel
	c.tryEnqueue(request(p.upID, p.method, b))
}

// logSeverity orders the MCP logging levels (RFC 5424 names), debug lowest; -1: unknown.
func logSeverity(level string) int {
	switch level {
	case "debug":
		return 0
	case "info":
		return 1
	case "notice":
		return 2
	case "warning":
		return 3
	case "error":
		return 4
	case "critical":
		return 5
	case "alert":
		return 6
	case "emergency":
		return 7
	}
	return -1
}

// detach fails every request the dead child left unanswered.
func (m *mux) detach(c *child) {
	m.mu.Lock()
	defer m.unlock()
	if m.ready {
		m.ready = false
		m.readyCh = make(chan struct{})
	}
	for _, p := range m.pending {
		if p.gen != m.gen {
			continue
		}
		m.finishLocked(p)
		if p.sess != nil {
			m.deliverLocked(p.sess, errorResponse(p.origID, codeInternalError, msgExited))
		}
	}
	for _, r := range m.srvReqs {
		m.dropServerReqLocked(r)
	}
	clear(m.elicits) // the next child never completes this one's elicitations
	if m.child == c {
		m.child = nil
	}
}

func (m *mux) isClosed() bool {
	m.mu.Lock()
	defer m.unlock()
	return m.closed
}

func (m *mux) isReady() bool {
	m.mu.Lock()
	defer m.unlock()
	return m.ready && !m.closed
}

// waitReady blocks until the child is initialized, the mux is closed, or done is closed.
func (m *mux) waitReady(done <-chan struct{}) bool {
	for {
		m.mu.Lock()
		ready, closed, ch := m.ready, m.closed, m.readyCh
		m.unlock()
		if ready || closed {
			return ready && !closed
		}
		select {
		case <-ch:
		case <-m.stopped:
			return false
		case <-done:
			return false
		}
	}
}

// close stops the child (SIGTERM, grace, SIGKILL; ctx ending cuts the grace short) and
// ends every session.
func (m *mux) close(ctx context.Context) error {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.closing)
		if !m.ready {
			close(m.readyCh) // wake waiters; they see closed
		}
	}
	c := m.child
	m.unlock()
	m.startOnce.Do(func() { close(m.stopped) })
	if c != nil {
		c.stop(m.s.grace, ctx.Done())
	}
	select {
	case <-m.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *mux) shutdownSessions() {
	m.mu.Lock()
	defer m.unlock()
	for s := range m.sessions {
		m.closeSessionLocked(s, "upstream stopped")
	}
}

func (m *mux) newSession(onClose func()) (*session, error) {
	m.mu.Lock()
	defer m.unlock()
	select {
	case <-m.stopped:
		return nil, ErrClosed
	default:
	}
	if m.closed {
		return nil, ErrClosed
	}
	s := &session{
		id:       newID(),
		m:        m,
		out:      make(chan []byte, m.s.queue),
		inflight: map[string]*pending{},
		subs:     map[string]bool{},
		onClose:  onClose,
	}
	m.sessions[s] = struct{}{}
	return s, nil
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newPendingLocked registers an upstream request id for sess (nil: the runtime's own).
func (m *mux) newPendingLocked(sess *session, origID []byte, clientKey string) *pending {
	m.seq++
	p := &pending{sess: sess, origID: origID, clientKey: clientKey, upID: m.seq, gen: m.gen}
	p.upKey = "n" + strconv.FormatInt(p.upID, 10)
	m.pending[p.upKey] = p
	if sess != nil {
		sess.inflight[clientKey] = p
	}
	p.timer = time.AfterFunc(m.s.requestTimeout, func() { m.timeout(p) })
	return p
}

// finishLocked forgets a request (answered, timed out, cancelled or abandoned).
func (m *mux) finishLocked(p *pending) {
	if m.pending[p.upKey] != p {
		return
	}
	delete(m.pending, p.upKey)
	p.timer.Stop()
	if p.progKey != "" {
		delete(m.progress, p.progKey)
	}
	if p.sess != nil && p.sess.inflight[p.clientKey] == p {
		delete(p.sess.inflight, p.clientKey)
	}
}

func (m *mux) timeout(p *pending) {
	m.mu.Lock()
	defer m.unlock()
	if m.pending[p.upKey] != p {
		return
	}
	m.finishLocked(p)
	if c := m.child; c != nil && p.gen == m.gen {
		c.tryEnqueue(cancelled(p.upID, "request timed out"))
	}
	if p.sess != nil {
		m.deliverLocked(p.sess, errorResponse(p.origID, codeInternalError,
			fmt.Sprintf("upstream request timed out after %s", m.s.requestTimeout)))
	}
}

func cancelled(upID int64, reason string) []byte {
	r, _ := json.Marshal(reason)
	return notification("notifications/cancelled",
		fmt.Appendf(nil, `{"requestId":%d,"reason":%s}`, upID, r))
}

// internalRequestLocked sends a request of the runtime's own whose answer is ignored.
func (m *mux) internalRequestLocked(c *child, method string, params []byte) {
	p := m.newPendingLocked(nil, nil, "")
	c.tryEnqueue(request(p.upID, method, params))
}

// deliverLocked queues msg for s without blocking; a session that is that far behind is
// closed, so one slow client cannot stall the child's output for everyone else.
func (m *mux) deliverLocked(s *session, msg []byte) {
	if s.closed {
		return
	}
	if s.recv != nil {
		m.outbox = append(m.outbox, delivery{r: s.recv, msg: msg})
		return
	}
	select {
	case s.out <- msg:
	default:
		m.log.Warn("closing upstream session: its client stopped reading messages", "session", s.id, "queue", cap(s.out))
		m.closeSessionLocked(s, "client too slow")
	}
}

func (m *mux) closeSessionLocked(s *session, reason string) {
	if s.closed {
		return
	}
	s.closed = true
	delete(m.sessions, s)
	close(s.out)
	if s.recv != nil {
		m.outbox = append(m.outbox, delivery{r: s.recv, end: true})
	}
	c := m.child
	if !m.ready {
		c = nil
	}
	for _, p := range s.inflight {
		m.finishLocked(p)
		if c != nil && p.gen == m.gen {
			c.tryEnqueue(cancelled(p.upID, "client session closed"))
		}
	}
	for _, r := range m.srvReqs {
		if r.sess == s {
			if c != nil && r.gen == m.gen {
				c.tryEnqueue(errorResponse(r.origID, codeInternalError, "client session closed"))
			}
			m.dropServerReqLocked(r)
		}
	}
	for uri := range s.subs {
		set := m.subs[uri]
		delete(set, s)
		if len(set) == 0 {
			delete(m.subs, uri)
			if c != nil {
				m.internalRequestLocked(c, "resources/unsubscribe", uriParams(uri))
			}
		}
	}
	for id, es := range m.elicits {
		if es == s {
			delete(m.elicits, id)
		}
	}
	if s.onClose != nil {
		go s.onClose()
	}
	m.log.Debug("upstream session closed", "session", s.id, "reason", reason)
}

func (m *mux) dropServerReqLocked(r *serverReq) {
	r.timer.Stop()
	if m.srvReqs[r.clientKey] == r {
		delete(m.srvReqs, r.clientKey)
	}
	if m.srvByOrig[r.origKey] == r {
		delete(m.srvByOrig, r.origKey)
	}
}

// --- client → child ---

func (m *mux) send(ctx context.Context, s *session, msg []byte) error {
	line, err := oneLine(msg)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	env, err := locateEnvelope(line)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	switch {
	case env.isRequest():
		return m.sendRequest(ctx, s, &env)
	case env.isNotification():
		return m.sendNotification(ctx, s, &env)
	case env.isResponse():
		return m.sendResponse(ctx, s, &env)
	}
	return fmt.Errorf("%w: neither a request, a notification nor a response", ErrInvalidMessage)
}

// lockReady takes m.mu once the child is initialized. On false the lock is not held and
// err says why; a nil err means the request was answered with a "not ready" error.
func (m *mux) lockReady(ctx context.Context, s *session, id []byte) (bool, error) {
	var expired <-chan time.Time
	for {
		m.mu.Lock()
		switch {
		case s.closed:
			m.unlock()
			return false, ErrSessionClosed
		case m.closed:
			m.unlock()
			return false, ErrClosed
		case m.ready:
			return true, nil
		}
		ch := m.readyCh
		m.unlock()
		if expired == nil {
			t := time.NewTimer(m.s.requestTimeout)
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-ch:
		case <-m.stopped:
		case <-ctx.Done():
			return false, ctx.Err()
		case <-expired:
			if id == nil {
				return false, ErrNotReady
			}
			m.mu.Lock()
			m.deliverLocked(s, errorResponse(id, codeInternalError, msgNotReady))
			m.unlock()
			return false, nil
		}
	}
}

func (m *mux) sendRequest(ctx context.Context, s *session, env *envelope) error {
	id := append([]byte(nil), env.idRaw()...)
	ok, err := m.lockReady(ctx, s, id)
	if !ok {
		return err
	}
	clientKey := jsonrpc.IDKey(id)
	if _, dup := s.inflight[clientKey]; dup {
		m.unlock()
		return fmt.Errorf("%w: request id %s is already in flight", ErrInvalidMessage, id)
	}
	var subURI, logLevel string
	switch env.method {
	case "initialize":
		// The child was initialized by the runtime; every client gets the cached answer.
		m.deliverLocked(s, resultResponse(id, initResultFor(env, m.initResult)))
		m.unlock()
		return nil
	case "resources/subscribe", "resources/unsubscribe":
		uri, ok := stringAt(env, "uri")
		if !ok {
			break
		}
		others := len(m.subs[uri]) - boolInt(m.subs[uri][s])
		if env.method == "resources/subscribe" {
			if !s.subs[uri] && len(s.subs) >= MaxSubscriptionsPerSession {
				// The mux keeps every subscription until its session ends, and renews them
				// all when the child restarts: one session must not make that unbounded.
				m.deliverLocked(s, errorResponse(id, codeInvalidParams, fmt.Sprintf(
					"this session holds %d resource subscriptions, the most it may: unsubscribe from one first", MaxSubscriptionsPerSession)))
				m.unlock()
				return nil
			}
			if m.subs[uri] == nil {
				m.subs[uri] = map[*session]bool{}
			}
			m.subs[uri][s], s.subs[uri] = true, true
			subURI = uri
		} else {
			delete(m.subs[uri], s)
			delete(s.subs, uri)
			if len(m.subs[uri]) == 0 {
				delete(m.subs, uri)
			}
		}
		if others > 0 {
			// The child already sends updates for this uri (and must keep doing so).
			m.deliverLocked(s, resultResponse(id, []byte("{}")))
			m.unlock()
			return nil
		}
	case "logging/setLevel":
		// The child has one level for every session: each session's log messages are
		// filtered to its own level here, and the child is only ever made more verbose, so
		// no session's setLevel quiets another's logs.
		level, ok := stringAt(env, "level")
		if !ok || logSeverity(level) < 0 {
			break // the child answers what it makes of it
		}
		s.logLevel = level
		if !m.private && m.logLevel != "" && logSeverity(m.logLevel) <= logSeverity(level) {
			m.deliverLocked(s, resultResponse(id, []byte("{}")))
			m.unlock()
			return nil
		}
		m.logLevel, logLevel = level, level
	}
	p := m.newPendingLocked(s, id, clientKey)
	p.method, p.subURI, p.logLevel = env.method, subURI, logLevel
	if env.method == "subscriptions/listen" {
		p.timer.Stop() // a subscription stream is answered when the client ends it, not within a timeout
	}
	out := env.raw
	// Rewrite the later span first so the earlier offsets stay valid.
	edits := []struct {
		sp   span
		repl []byte
	}{{env.id, strconv.AppendInt(nil, p.upID, 10)}}
	if tok, ok := path(env.raw, env.params, "_meta", "progressToken"); ok {
		m.seq++
		up := strconv.AppendInt(nil, m.seq, 10)
		p.progKey = "n" + string(up)
		m.progress[p.progKey] = &progressRoute{sess: s, token: append([]byte(nil), env.get(tok)...)}
		edits = append(edits, struct {
			sp   span
			repl []byte
		}{tok, up})
		if tok.start > env.id.start {
			edits[0], edits[1] = edits[1], edits[0]
		}
	}
	for _, e := range edits {
		out = splice(out, e.sp, e.repl)
	}
	c := m.child
	m.unlock()

	if err := c.enqueue(out, ctx.Done()); err != nil {
		if errors.Is(err, errChildGone) {
			return nil // the exit handler answers the request with an error
		}
		m.mu.Lock()
		m.finishLocked(p)
		m.unlock()
		return err
	}
	return nil
}

// olderProtocolVersions are the dated MCP revisions a client may still ask for.
var olderProtocolVersions = map[string]bool{"2024-11-05": true, "2025-03-26": true, "2025-06-18": true}

// initResultFor adapts the cached initialize result to a client that asked for an older
// known protocol revision: it gets its own version back (later revisions only add to the
// wire format) instead of one it would refuse to speak.
func initResultFor(env *envelope, cached []byte) []byte {
	asked, ok := stringAt(env, "protocolVersion")
	if !ok || !olderProtocolVersions[asked] {
		return cached
	}
	sp, ok := member(cached, span{0, len(cached)}, "protocolVersion")
	if !ok || cached[sp.start] != '"' {
		return cached
	}
	if have, err := unquote(cached[sp.start:sp.end]); err != nil || have <= asked {
		return cached
	}
	return splice(cached, sp, []byte(`"`+asked+`"`))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func stringAt(env *envelope, key string) (string, bool) {
	sp, ok := path(env.raw, env.params, key)
	if !ok || env.raw[sp.start] != '"' {
		return "", false
	}
	s, err := unquote(env.get(sp))
	return s, err == nil
}

func (m *mux) sendNotification(ctx context.Context, s *session, env *envelope) error {
	if env.method == "notifications/initialized" {
		return nil // the child was initialized by the runtime, once
	}
	m.mu.Lock()
	if s.closed {
		m.unlock()
		return ErrSessionClosed
	}
	c := m.child
	if !m.ready || c == nil {
		m.unlock()
		m.log.Debug("notification dropped: upstream not ready", "method", env.method)
		return nil
	}
	out := env.raw
	if env.method == "notifications/cancelled" {
		rid, ok := path(env.raw, env.params, "requestId")
		if !ok {
			m.unlock()
			return nil
		}
		p := s.inflight[jsonrpc.IDKey(env.get(rid))]
		if p == nil || p.gen != m.gen {
			m.unlock()
			return nil // finished already, or another child's
		}
		m.finishLocked(p) // a late answer is dropped
		out = splice(out, rid, strconv.AppendInt(nil, p.upID, 10))
	}
	m.unlock()
	if err := c.enqueue(out, ctx.Done()); err != nil && !errors.Is(err, errChildGone) {
		return err
	}
	return nil
}

func (m *mux) sendResponse(ctx context.Context, s *session, env *envelope) error {
	m.mu.Lock()
	if s.closed {
		m.unlock()
		return ErrSessionClosed
	}
	r := m.srvReqs[jsonrpc.IDKey(env.idRaw())]
	if r == nil || r.sess != s {
		m.unlock()
		m.log.Debug("client response dropped: no such server request", "session", s.id)
		return nil
	}
	m.dropServerReqLocked(r)
	c := m.child
	if c == nil || r.gen != m.gen {
		m.unlock()
		return nil // the child that asked is gone
	}
	m.unlock()
	out := splice(env.raw, env.id, r.origID)
	if err := c.enqueue(out, ctx.Done()); err != nil && !errors.Is(err, errChildGone) {
		return err
	}
	return nil
}

// --- child → clients ---

func (m *mux) handleLine(gen uint64, line []byte) {
	if line[0] == '[' { // a batch from an older server
		var batch []json.RawMessage
		if err := json.Unmarshal(line, &batch); err != nil {
			m.log.Warn("upstream sent invalid JSON; dropped", "err", err)
			return
		}
		for _, msg := range batch {
			m.handleMessage(gen, msg)
		}
		return
	}
	m.handleMessage(gen, line)
}

func (m *mux) handleMessage(gen uint64, msg []byte) {
	env, err := parseEnvelope(msg)
	if err != nil {
		m.log.Warn("upstream sent an invalid message; dropped", "err", err)
		return
	}
	m.mu.Lock()
	defer m.unlock()
	if gen != m.gen || m.child == nil {
		return
	}
	switch {
	case env.isResponse():
		m.routeResponse(&env)
	case env.isRequest():
		m.routeServerRequest(&env)
	case env.isNotification():
		m.routeNotification(&env)
	default:
		m.log.Warn("upstream sent a message that is neither request, response nor notification; dropped")
	}
}

func (m *mux) routeResponse(env *envelope) {
	p := m.pending[jsonrpc.IDKey(env.idRaw())]
	if p == nil {
		m.log.Debug("upstream response dropped: request no longer pending")
		return
	}
	m.finishLocked(p)
	if p.reply != nil {
		p.reply <- env.raw
		return
	}
	switch {
	case p.logLevel == "":
	case env.errv.ok() && p.logLevel == m.logLevel:
		m.logLevel = "" // the child refused it (no logging capability): it has no level
	case env.result.ok() && p.logLevel != m.logLevel:
		// Another session's more verbose level was sent meanwhile and may have been
		// overtaken by this one: set the child to the level it must have.
		m.setChildLogLevelLocked(m.child)
	}
	if p.sess == nil {
		return
	}
	if env.errv.ok() {
		m.trackURLElicitationsLocked(p.sess, env)
	}
	if p.subURI != "" && env.errv.ok() { // the child refused the subscription
		delete(m.subs[p.subURI], p.sess)
		delete(p.sess.subs, p.subURI)
		if len(m.subs[p.subURI]) == 0 {
			delete(m.subs, p.subURI)
		}
	}
	m.deliverLocked(p.sess, splice(env.raw, env.id, p.origID))
}

func (m *mux) routeServerRequest(env *envelope) {
	target := m.requesterLocked()
	c := m.child
	if target == nil {
		if env.method == "ping" {
			c.tryEnqueue(resultResponse(env.idRaw(), []byte("{}")))
			return
		}
		c.tryEnqueue(errorResponse(env.idRaw(), codeInternalError,
			fmt.Sprintf("no client session has a request in flight to relay %q to", env.method)))
		return
	}
	m.seq++
	r := &serverReq{
		sess:     target,
		gen:      m.gen,
		origID:   append([]byte(nil), env.idRaw()...),
		origKey:  jsonrpc.IDKey(env.idRaw()),
		clientID: strconv.AppendInt(nil, m.seq, 10),
	}
	r.clientKey = jsonrpc.IDKey(r.clientID)
	if env.method == "elicitation/create" {
		if eid, ok := stringAt(env, "elicitationId"); ok {
			m.trackElicitationLocked(eid, target)
		}
	}
	if old := m.srvByOrig[r.origKey]; old != nil {
		m.dropServerReqLocked(old)
	}
	m.srvReqs[r.clientKey], m.srvByOrig[r.origKey] = r, r
	// A client that never answers must not pin the entry forever.
	r.timer = time.AfterFunc(m.s.requestTimeout, func() {
		m.mu.Lock()
		defer m.unlock()
		if m.srvReqs[r.clientKey] == r {
			m.dropServerReqLocked(r)
		}
	})
	m.deliverLocked(target, splice(env.raw, env.id, r.clientID))
}

// requesterLocked guesses which session a server→client request belongs to: stdio
// carries no link from it to the client request being served, so it goes to the session
// with the most recent request in flight, preferring calls that can ask the client
// something (tools/call, prompts/get, resources/read, completion/complete). With several
// such calls in flight at once the guess can be wrong: per-session mode avoids that.
func (m *mux) requesterLocked() *session {
	var best *pending
	bestRank := -1
	for _, p := range m.pending {
		if p.sess == nil || p.sess.closed || p.gen != m.gen {
			continue
		}
		rank := 0
		switch p.method {
		case "tools/call", "prompts/get", "resources/read", "completion/complete":
			rank = 1
		}
		if rank > bestRank || (rank == bestRank && p.upID > best.upID) {
			best, bestRank = p, rank
		}
	}
	if best == nil {
		return nil
	}
	return best.sess
}

// MaxSubscriptionsPerSession bounds the resources one session may subscribe to on a
// shared child.
const MaxSubscriptionsPerSession = 256

// maxElicitations bounds the URL elicitations a mux remembers until they complete.
const maxElicitations = 1024

// trackElicitationLocked remembers which session a URL elicitation was sent to, so that
// its notifications/elicitation/complete reaches that session only.
func (m *mux) trackElicitationLocked(id string, s *session) {
	if len(m.elicits) < maxElicitations || m.elicits[id] != nil {
		m.elicits[id] = s
	}
}

// trackURLElicitationsLocked remembers the URL elicitations a URLElicitationRequired
// error (-32042) asked session s to complete.
func (m *mux) trackURLElicitationsLocked(s *session, env *envelope) {
	code, ok := path(env.raw, env.errv, "code")
	if !ok || string(env.get(code)) != "-32042" {
		return
	}
	var e struct {
		Data struct {
			Elicitations []struct {
				ElicitationID string `json:"elicitationId"`
			} `json:"elicitations"`
		} `json:"data"`
	}
	if json.Unmarshal(env.get(env.errv), &e) != nil {
		return
	}
	for _, el := range e.Data.Elicitations {
		if el.ElicitationID != "" {
			m.trackElicitationLocked(el.ElicitationID, s)
		}
	}
}

// ownerLocked is the session of a per-session child (nil for a shared one, or none yet).
func (m *mux) ownerLocked() *session {
	if !m.private {
		return nil
	}
	for s := range m.sessions {
		return s
	}
	return nil
}

// routeLogLocked passes a log message to the session it was logged for: in per-session
// mode the child's one session; otherwise the session whose call is in flight, picked as
// for server→client requests (stdio carries no link from a notification to a request).
// A line logged while no call is in flight is no client's business and is dropped.
func (m *mux) routeLogLocked(env *envelope) {
	target := m.senderOfLocked()
	if target == nil {
		m.log.Debug("upstream log message dropped: no client session has a request in flight")
		return
	}
	if level, ok := stringAt(env, "level"); ok && target.logLevel != "" && logSeverity(level) < logSeverity(target.logLevel) {
		return // below the level this session asked for
	}
	m.deliverLocked(target, env.raw)
}

// senderOfLocked is the session a message from the child that names no request is for:
// a per-session child's one session, else the session whose call is in flight
// (requesterLocked); nil when there is none.
func (m *mux) senderOfLocked() *session {
	if m.private {
		return m.ownerLocked()
	}
	return m.requesterLocked()
}

func (m *mux) routeNotification(env *envelope) {
	switch env.method {
	case "notifications/message":
		m.routeLogLocked(env)
		return
	case "notifications/elicitation/complete":
		id, _ := stringAt(env, "elicitationId")
		s := m.elicits[id]
		if s == nil {
			s = m.ownerLocked()
		}
		if s == nil {
			m.log.Debug("upstream elicitation completion dropped: no session was sent that elicitation")
			return
		}
		delete(m.elicits, id)
		m.deliverLocked(s, env.raw)
		return
	case "notifications/progress":
		tok, ok := path(env.raw, env.params, "progressToken")
		if !ok {
			return
		}
		if r := m.progress[jsonrpc.IDKey(env.get(tok))]; r != nil {
			m.deliverLocked(r.sess, splice(env.raw, tok, r.token))
		}
		return
	case "notifications/resources/updated":
		uri, ok := stringAt(env, "uri")
		if !ok {
			return
		}
		for s := range m.subs[uri] {
			m.deliverLocked(s, env.raw)
		}
		return
	case "notifications/cancelled":
		// The child gave up on one of its own requests to a client.
		rid, ok := path(env.raw, env.params, "requestId")
		if !ok {
			return
		}
		if r := m.srvByOrig[jsonrpc.IDKey(env.get(rid))]; r != nil {
			m.dropServerReqLocked(r)
			m.deliverLocked(r.sess, splice(env.raw, rid, r.clientID))
		}
		return
	}
	if sub, ok := path(env.raw, env.params, "_meta", metaSubscriptionID); ok {
		// A subscriptions/listen stream's notification (2026-07-28): its subscriptionId is
		// the listen request's id, which the runtime rewrote. It belongs to that request's
		// session alone (the client chose what it listens to), with the client's id back.
		if p := m.pending[jsonrpc.IDKey(env.get(sub))]; p != nil && p.sess != nil {
			m.deliverLocked(p.sess, splice(env.raw, sub, p.origID))
		}
		return
	}
	switch env.method {
	case "notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed":
		if env.method == "notifications/tools/list_changed" {
			m.s.onToolsChanged() // also when no session is open to pass it on
		}
		for s := range m.sessions { // what the server offers changed for everyone
			m.deliverLocked(s, env.raw)
		}
		return
	}
	// Any other notification (a task's status, a kind of the server's own) concerns the
	// call it was sent during, not every user: it goes where a log line would.
	if target := m.senderOfLocked(); target != nil {
		m.deliverLocked(target, env.raw)
		return
	}
	m.log.Debug("upstream notification dropped: no client session has a request in flight", "method", env.method)
}

func (m *mux) handleTooLong(gen uint64, prefix, tail []byte) {
	id, ok := idPrefix(prefix)
	if !ok {
		if id, ok = idSuffix(tail); !ok {
			return
		}
	}
	m.mu.Lock()
	defer m.unlock()
	p := m.pending[jsonrpc.IDKey(id)]
	if gen != m.gen || p == nil {
		return
	}
	m.finishLocked(p)
	if p.sess != nil {
		m.deliverLocked(p.sess, errorResponse(p.origID, codeInternalError,
			fmt.Sprintf("upstream response exceeded the %d-byte message size limit", m.s.maxMsg)))
	}
}

// session is one client's view of a mux.
type session struct {
	id      string
	m       *mux
	out     chan []byte
	onClose func()
	// guarded by m.mu
	recv     *receiver // set by Receive: messages go there instead of out
	closed   bool
	inflight map[string]*pending // by the client's id key
	subs     map[string]bool
	logLevel string // the level of the client's last logging/setLevel ("": none)
}

func (s *session) ID() string              { return s.id }
func (s *session) Messages() <-chan []byte { return s.out }

func (s *session) Send(ctx context.Context, msg []byte) error { return s.m.send(ctx, s, msg) }

// Receive implements Receiver. Messages queued before it was called are passed on first.
func (s *session) Receive(fn func([]byte), end func()) {
	m := s.m
	m.mu.Lock()
	if s.recv != nil {
		m.unlock()
		return
	}
	s.recv = &receiver{fn: fn, end: end}
	for drained := false; !drained; {
		select {
		case msg, ok := <-s.out:
			if !ok {
				drained = true
				break
			}
			m.outbox = append(m.outbox, delivery{r: s.recv, msg: msg})
		default:
			drained = true
		}
	}
	if s.closed {
		m.outbox = append(m.outbox, delivery{r: s.recv, end: true})
	}
	m.unlock()
}

func (s *session) Close() error {
	s.m.mu.Lock()
	defer s.m.unlock()
	s.m.closeSessionLocked(s, "closed by client")
	return nil
}
