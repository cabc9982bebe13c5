package server

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/upstream"
)

// maxInFlight bounds the requests one client session may have outstanding upstream.
const maxInFlight = 256

// caller is who sent a message and how: the audit, rate-limit and routing facts of a request.
type caller struct {
	principal auth.Principal
	hasAuth   bool
	rateKey   string // ratelimit key (subject, else client IP)
	origin    string
	remote    string
	transport string
}

func (c caller) subject() string {
	if c.hasAuth && c.principal.Subject != "" {
		return c.principal.Subject
	}
	return "anonymous"
}

// sameOwner reports whether o is the principal c is, across trust domains: the same
// subject from two issuers, or an API key's name and a token's sub, are different callers;
// all anonymous callers are one.
func (c caller) sameOwner(o caller) bool {
	named := c.hasAuth && c.principal.Subject != ""
	if named != (o.hasAuth && o.principal.Subject != "") {
		return false
	}
	return !named || (c.principal.Issuer == o.principal.Issuer && c.principal.Subject == o.principal.Subject)
}

// pendingCall is a client request relayed upstream and not yet answered.
type pendingCall struct {
	id        json.RawMessage
	method    string
	tool      string
	args      json.RawMessage
	requestID string
	start     time.Time
	answered  time.Duration // start → the upstream's answer (0 until then)
	bytesIn   int
	listGen   uint64 // tools/list: the schema cache's generation when it was sent
	timer     *time.Timer
	// reply receives the response (streamable POST); nil: the session's stream gets it.
	reply *replyTo
	from  caller // who sent it
}

// streamSink receives messages that are not responses to a waiting POST.
type streamSink struct {
	ch chan []byte
	// notify, if set, is called after a message was queued (a WebSocket starts its writer).
	notify func()
	// overflow, if set, is called instead of dropping a message this sink, the session's
	// stream, has no room for (a WebSocket whose client stopped reading is closed).
	overflow func()
}

// session is one client session bound to one upstream session. All transports use it: the
// WebSocket and legacy SSE connection own one each, a 2025 Streamable HTTP session lives in
// the registry, a 2026 stateless request gets a throwaway one.
type session struct {
	id      string
	srv     *Server
	up      upstream.Session
	caller  caller
	created time.Time
	// stateless: the session carries one request of the stateless revision, whose HTTP
	// status follows its JSON-RPC error (SEP-2575).
	stateless bool

	mu       sync.Mutex
	pending  map[string]*pendingCall
	version  string        // negotiated protocol version (from the initialize result)
	lastUsed time.Time     // for idle expiry of registered sessions
	posts    []*streamSink // in-flight streamable POSTs that accept SSE, newest last
	stream   *streamSink   // GET stream (streamable), the SSE or WebSocket connection
	closed   bool
	release  func() // gives back the caller's share of per-session processes (set once, before use)

	done chan struct{} // closed when the upstream session's messages end
}

func newSession(srv *Server, id string, up upstream.Session, c caller) *session {
	return newSessionThen(srv, id, up, c, nil)
}

// newSessionThen is newSession with a function called once the upstream session ended and
// its in-flight requests were failed (after done is closed).
func newSessionThen(srv *Server, id string, up upstream.Session, c caller, ended func()) *session {
	s := openSession(srv, id, up, c)
	end := s.upstreamEnded
	if ended != nil {
		end = func() { s.upstreamEnded(); ended() }
	}
	if r, ok := up.(upstream.Receiver); ok {
		// deliver never blocks (replies are buffered, streams drop when full), so it may run
		// on the upstream's goroutine: no pump, and one hand-off less per response.
		r.Receive(s.deliver, end)
	} else {
		go s.pump(end)
	}
	return s
}

// openSession creates the session without connecting it to the upstream's messages.
func openSession(srv *Server, id string, up upstream.Session, c caller) *session {
	s := &session{
		id: id, srv: srv, up: up, caller: c, created: time.Now(), lastUsed: time.Now(),
		pending: map[string]*pendingCall{}, done: make(chan struct{}),
	}
	srv.obs.sessionOpened(c.transport)
	return s
}

// pump relays everything the upstream sends for this session until it ends, then calls end.
func (s *session) pump(end func()) {
	for raw := range s.up.Messages() {
		s.deliver(raw)
	}
	end()
}

// upstreamEnded fails the requests still waiting so no client hangs on a dead upstream,
// forgets the session if it is registered, then closes done. Call it once, after the last
// message was delivered.
func (s *session) upstreamEnded() {
	defer close(s.done)
	s.mu.Lock()
	calls := make([]*pendingCall, 0, len(s.pending))
	for k, p := range s.pending {
		calls = append(calls, p)
		delete(s.pending, k)
	}
	s.mu.Unlock()
	for _, p := range calls {
		s.fail(p, jsonrpc.NewError(codeUpstream, "upstream connection closed before the response"), "upstream_closed")
	}
	// The upstream session is gone for good (in per-session mode, its process died; a
	// shared child's restart keeps its sessions): the id now gets 404, the client's signal
	// to initialize a new session, instead of 502 on every retry, each of which would also
	// keep the session from expiring.
	if s.srv.sessions.drop(s) {
		s.srv.log.Info("Session ended: its upstream session is gone", "session", s.id)
		s.close()
	}
}

// deliver processes one upstream message and routes it to its reader.
func (s *session) deliver(raw []byte) {
	out, p, outcome := s.srv.outbound(s, raw)
	if out == nil {
		return
	}
	if p == nil {
		s.toStream(out)
		return
	}
	// Counted before the answer is handed on, so that Close waits for its audit line
	// even when the client has its answer and the server is shutting down.
	s.srv.bookkeeping.Add(1)
	a := answer{out: out, call: p, outcome: outcome}
	if p.reply != nil && p.reply.offer(s, a) {
		return // the POST's handler finishes it once the answer is written
	}
	if p.reply == nil {
		s.answerOnStream(out)
	}
	s.srv.finishAnswer(s, a)
}

// answer is a response for a POST waiting on its replyTo. With call set it carries the
// request's bookkeeping (metrics, audit: Server.finishAnswer), which whoever takes the
// answer runs once it is on its way to the client.
type answer struct {
	out     []byte
	call    *pendingCall
	outcome string
}

// replyTo is where the responses to one streamable POST's requests go: a channel with room
// for all of them, so that offering never blocks, and whether the POST's handler is gone.
type replyTo struct {
	ch   chan answer
	gone bool // guarded by the session's mu
}

func newReplyTo(requests int) *replyTo { return &replyTo{ch: make(chan answer, requests)} }

// offer queues a for the POST's handler; false once the handler is gone (the caller then
// finishes the answer itself).
func (r *replyTo) offer(sess *session, a answer) bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if r.gone {
		return false
	}
	r.ch <- a
	return true
}

// leave is the handler's last word: nothing is offered any more, and the answers it did not
// take are finished here, so no request misses its audit line.
func (r *replyTo) leave(sess *session) {
	sess.mu.Lock()
	r.gone = true
	sess.mu.Unlock()
	for {
		select {
		case a := <-r.ch:
			sess.srv.finishAnswer(sess, a)
		default:
			return
		}
	}
}

// toStream hands a server message (a notification or a request) to the newest POST that
// streams, else the session's stream; with neither, or when they are full, it is dropped
// and counted.
func (s *session) toStream(out []byte) { s.toStreamAs(out, false) }

// answerOnStream hands a response to the session's streams as toStream does, but never
// drops it for a full queue: a client waits for every answer, so one that is reading is
// given time to catch up (answerWriteTimeout, off the upstream's reader) before its stream
// counts as stuck. The number waiting is bounded by the requests the client may send.
func (s *session) answerOnStream(out []byte) { s.toStreamAs(out, true) }

func (s *session) toStreamAs(out []byte, response bool) {
	s.mu.Lock()
	sinks := make([]*streamSink, 0, 2)
	if n := len(s.posts); n > 0 {
		sinks = append(sinks, s.posts[n-1])
	}
	if s.stream != nil {
		sinks = append(sinks, s.stream)
	}
	s.mu.Unlock()
	for _, k := range sinks {
		select {
		case k.ch <- out:
			if k.notify != nil {
				k.notify()
			}
			return
		default: // full: a slow reader must not stall the upstream pump
		}
	}
	if n := len(sinks); response && n > 0 {
		go s.awaitRoom(sinks[n-1], out)
		return
	}
	s.srv.log.Debug("Dropped a server message with no open stream", "session", s.id)
	s.srv.obs.dropped(s.caller.transport)
	if n := len(sinks); n > 0 && sinks[n-1].overflow != nil {
		sinks[n-1].overflow()
	}
}

// awaitRoom queues a response once k has room, for at most answerWriteTimeout; a stream
// that takes nothing for that long is stuck (its writes would have timed out too).
func (s *session) awaitRoom(k *streamSink, out []byte) {
	t := time.NewTimer(answerWriteTimeout)
	defer t.Stop()
	select {
	case k.ch <- out:
		if k.notify != nil {
			k.notify()
		}
		return
	case <-t.C:
	case <-s.done:
	}
	s.srv.log.Debug("Dropped a response for a stream that stopped taking them", "session", s.id)
	s.srv.obs.dropped(s.caller.transport)
	if k.overflow != nil {
		k.overflow()
	}
}

// track registers a relayed request. It refuses a duplicate id or too many in flight.
func (s *session) track(p *pendingCall) *jsonrpc.Error {
	key := jsonrpc.IDKey(p.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return jsonrpc.NewError(codeUpstream, "session closed")
	}
	if _, dup := s.pending[key]; dup {
		return jsonrpc.InvalidRequest("a request with this id is still in flight")
	}
	if len(s.pending) >= maxInFlight {
		return jsonrpc.NewError(codeRateLimited, "too many requests in flight on this session")
	}
	s.pending[key] = p
	s.lastUsed = time.Now()
	if p.method == "subscriptions/listen" {
		return nil // a subscription stream is answered when it ends, not within a timeout
	}
	timeout := s.srv.cfg.Upstream.RequestTimeout.Duration
	p.timer = time.AfterFunc(timeout, func() {
		if s.untrack(p.id) != nil {
			s.cancelUpstream(p.id, "request timed out")
			s.fail(p, jsonrpc.NewError(codeTimeout, "upstream did not answer within "+timeout.String()), "timeout")
		}
	})
	return nil
}

// latency is how long the upstream took to answer, or so far when it has not (refused,
// timed out, cancelled).
func (p *pendingCall) latency() time.Duration {
	if p.answered > 0 {
		return p.answered
	}
	return time.Since(p.start)
}

// untrack removes and returns the pending call for id (nil if already answered).
func (s *session) untrack(id json.RawMessage) *pendingCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := jsonrpc.IDKey(id)
	p := s.pending[key]
	if p != nil {
		delete(s.pending, key)
		if p.timer != nil {
			p.timer.Stop()
		}
	}
	return p
}

// fail answers a pending call with a JSON-RPC error on its own path and audits it.
func (s *session) fail(p *pendingCall, e *jsonrpc.Error, outcome string) {
	s.srv.finish(s, p, outcome, 0)
	out := jsonrpc.ErrorResponse(p.id, e)
	if p.reply != nil {
		p.reply.offer(s, answer{out: out}) // dropped when the POST's handler is gone
		return
	}
	s.answerOnStream(out)
}

// abandon gives up on calls whose client went away: the upstream is told to cancel them.
func (s *session) abandon(ids []json.RawMessage) {
	for _, id := range ids {
		if p := s.untrack(id); p != nil {
			s.srv.finish(s, p, "cancelled", 0)
			s.cancelUpstream(id, "client disconnected")
		}
	}
}

func (s *session) cancelUpstream(id json.RawMessage, reason string) {
	msg, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "method": "notifications/cancelled",
		"params": map[string]any{"requestId": id, "reason": reason},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.up.Send(ctx, msg)
}

func (s *session) addPost(k *streamSink) {
	s.mu.Lock()
	s.posts = append(s.posts, k)
	s.mu.Unlock()
}

func (s *session) removePost(k *streamSink) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.posts {
		if x == k {
			s.posts = append(s.posts[:i], s.posts[i+1:]...)
			return
		}
	}
}

// setStream attaches the session stream; false if one is attached already.
func (s *session) setStream(k *streamSink) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream != nil && k != nil {
		return false
	}
	s.stream = k
	s.lastUsed = time.Now()
	return true
}

// clearStream detaches k if it is still the session stream.
func (s *session) clearStream(k *streamSink) {
	s.mu.Lock()
	if s.stream == k {
		s.stream = nil
	}
	s.lastUsed = time.Now()
	s.mu.Unlock()
}

func (s *session) negotiated() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

func (s *session) setVersion(v string) {
	s.mu.Lock()
	s.version = v
	s.mu.Unlock()
}

// idle reports a registered session nobody used for d and with no open stream.
func (s *session) idle(d time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stream == nil && len(s.posts) == 0 && len(s.pending) == 0 && time.Since(s.lastUsed) > d
}

func (s *session) touch() {
	s.mu.Lock()
	s.lastUsed = time.Now()
	s.mu.Unlock()
}

// close ends the upstream session; pump then fails anything still pending.
func (s *session) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.srv.obs.sessionClosed(s.caller.transport)
	_ = s.up.Close()
	if s.release != nil {
		s.release()
	}
}

// processShare caps the upstream processes one principal holds in per-session mode
// (upstream.maxSessionsPerPrincipal): the pool (upstream.maxSessions) is small, and one
// caller must not be able to take all of it from the others. The session caps of the
// registry and the connection caps are far larger (they bound memory, not processes). In
// shared mode a session costs no process and max is 0: no cap.
type processShare struct {
	mu   sync.Mutex
	max  int
	held map[string]int // by caller.rateKey
}

// take claims one process for key, unless key holds max already; release gives it back
// (once, however often it is called).
func (p *processShare) take(key string) (release func(), ok bool) {
	if p.max == 0 {
		return func() {}, true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[key] >= p.max {
		return nil, false
	}
	p.held[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.held[key]--; p.held[key] <= 0 {
				delete(p.held, key)
			}
		})
	}, true
}

// registry holds the Streamable HTTP (2025) and legacy SSE sessions by id, bounded.
type registry struct {
	mu        sync.Mutex
	max       int // sessions overall (limits.maxConnections)
	maxPerKey int // sessions per principal (limits.maxConnectionsPerPrincipal); 0: no cap
	sessions  map[string]*session
	perKey    map[string]int // by caller.rateKey
}

func newRegistry(max, maxPerKey int) *registry {
	return &registry{max: max, maxPerKey: maxPerKey, sessions: map[string]*session{}, perKey: map[string]int{}}
}

// add registers s unless the runtime (503) or s's principal (429) has as many sessions as
// allowed; 0 when registered. A session holds upstream state (in per-session mode a
// process) until it ends or expires, so one principal must not be able to take them all.
func (r *registry) add(s *session) (refusedStatus int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := s.caller.rateKey
	switch {
	case len(r.sessions) >= r.max:
		return http.StatusServiceUnavailable
	case r.maxPerKey > 0 && r.perKey[key] >= r.maxPerKey:
		return http.StatusTooManyRequests
	}
	r.sessions[s.id] = s
	r.perKey[key]++
	return 0
}

// forgetLocked unregisters the session under id, if any, and returns it.
func (r *registry) forgetLocked(id string) *session {
	s := r.sessions[id]
	if s == nil {
		return nil
	}
	delete(r.sessions, id)
	if r.perKey[s.caller.rateKey]--; r.perKey[s.caller.rateKey] <= 0 {
		delete(r.perKey, s.caller.rateKey)
	}
	return s
}

// get returns the session only to the principal that created it: a leaked session id is
// useless to anyone else (and looks exactly like an unknown one).
func (r *registry) get(id string, c caller) *session {
	r.mu.Lock()
	s := r.sessions[id]
	r.mu.Unlock()
	if s == nil || !s.caller.sameOwner(c) || s.caller.transport != c.transport {
		return nil
	}
	return s
}

// drop forgets s if it is still registered under its id, and reports whether it was.
func (r *registry) drop(s *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[s.id] != s {
		return false
	}
	r.forgetLocked(s.id)
	return true
}

func (r *registry) remove(id string) *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.forgetLocked(id)
}

// expire closes sessions idle for longer than d.
func (r *registry) expire(d time.Duration) {
	r.mu.Lock()
	var old []*session
	for id, s := range r.sessions {
		if s.idle(d) {
			old = append(old, r.forgetLocked(id))
		}
	}
	r.mu.Unlock()
	for _, s := range old {
		s.close()
	}
}

func (r *registry) closeAll() {
	r.mu.Lock()
	all := make([]*session, 0, len(r.sessions))
	for id := range r.sessions {
		all = append(all, r.forgetLocked(id))
	}
	r.mu.Unlock()
	for _, s := range all {
		s.close()
	}
}
