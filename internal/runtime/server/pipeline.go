package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/ratelimit"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/tools"
)

// JSON-RPC error codes the runtime itself answers with (beside the -32700..-32603 set).
const (
	codeRateLimited    = -32000 // data.retryAfterSeconds says when to retry
	codeTimeout        = -32001
	codeBatchRefused   = -32002 // a valid request not relayed because its batch was refused
	codeHeaderMismatch = -32020 // MCP 2026-07-28: HTTP headers disagree with the body
	// MCP 2026-07-28 (SEP-2575): a request needs client capabilities the client did not declare.
	codeMissingCapabilities = -32021
	// MCP 2026-07-28 (SEP-2575): data.supported lists the versions, data.requested echoes it.
	codeUnsupportedVersion = -32022
	codeUpstream           = jsonrpc.CodeInternalError
)

// upstreamDepth bounds nesting of upstream messages: the upstream is trusted more than a
// client, but its output is still parsed with a bound.
const upstreamDepth = 1000

// refusal is the answer to a client payload the pipeline does not relay.
type refusal struct {
	status     int           // HTTP status on HTTP transports
	retryAfter time.Duration // rate limits: Retry-After
	body       []byte        // JSON-RPC error response (or an array of them for a batch)
	reason     string        // metrics/audit label
	scopes     []string      // insufficient scope: the step-up challenge's scopes
}

func refuse(status int, id json.RawMessage, e *jsonrpc.Error, reason string) *refusal {
	return &refusal{status: status, body: jsonrpc.ErrorResponse(id, e), reason: reason}
}

// write sends a refusal on an HTTP transport.
func (r *refusal) write(w http.ResponseWriter, req *http.Request, a *auth.Authenticator) {
	if r.status == http.StatusForbidden && r.scopes != nil {
		a.WriteInsufficientScope(w, req, r.scopes, r.body)
		return
	}
	if r.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfterSeconds(r.retryAfter)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body)
}

func rateLimitError(retry time.Duration, what string) *jsonrpc.Error {
	e := jsonrpc.NewError(codeRateLimited, "rate limit exceeded for "+what)
	e.Data = map[string]any{"retryAfterSeconds": ratelimit.RetryAfterSeconds(retry)}
	return e
}

// parse is the first pipeline step: strict JSON-RPC with the configured depth; batches
// only for the protocol revisions that had them. A batch refused for its revision still
// has its tools/calls audited (refused:batch_not_allowed); c sent it.
func (s *Server) parse(raw []byte, version string, c caller, requestID string) ([]jsonrpc.Message, bool, *refusal) {
	allowBatch := jsonrpc.BatchAllowed(version)
	msgs, batch, err := jsonrpc.Parse(raw, jsonrpc.Options{
		MaxDepth:   s.cfg.Limits.MaxDepth,
		AllowBatch: allowBatch,
	})
	if err != nil {
		if !allowBatch && s.refusedBeforeAdmission(c, raw, requestID, "batch_not_allowed") {
			return nil, batch, refuse(http.StatusBadRequest, nil, err, "batch_not_allowed")
		}
		s.obs.refused("", "", "invalid_message")
		return nil, batch, refuse(http.StatusBadRequest, nil, err, "invalid_message")
	}
	return msgs, batch, nil
}

// refusedBeforeAdmission records the requests of a body refused before its messages were
// admitted (unknown session or protocol version, a batch its revision does not allow) in
// metrics, and its tools/calls in the audit log: every tools/call attempt has its line. It
// reports false, recording nothing, when the body is no well-formed message or batch.
func (s *Server) refusedBeforeAdmission(c caller, raw []byte, requestID, reason string) bool {
	msgs, _, err := jsonrpc.Parse(raw, jsonrpc.Options{MaxDepth: s.cfg.Limits.MaxDepth, AllowBatch: true})
	if err != nil {
		return false
	}
	for i := range msgs {
		if msgs[i].IsRequest() {
			s.refusedUnadmitted(c, &msgs[i], requestID, reason)
		}
	}
	return true
}

// admitOptions say what the transport already enforced.
type admitOptions struct {
	// perMessageLimit applies the per-principal rate limit to each message: sockets and
	// streams see one HTTP request for many messages.
	perMessageLimit bool
	// reply is where responses to the admitted requests go (streamable POST); nil: stream.
	reply     *replyTo
	requestID string
	// from is the sender when it differs per request (HTTP transports: the session's
	// creator may be on another connection); nil: the session's caller.
	from *caller
	// header is the request's HTTP header when its Mcp-Param-* headers must agree with the
	// tool arguments (2026-07-28 POST); nil: no such headers exist.
	header http.Header
}

// admit runs the per-message checks on parsed messages and registers the requests as
// pending on sess. Either every message is admitted, or none is and a refusal says why
// (a batch is all-or-nothing, so nothing of a refused batch reaches the upstream; each of
// its requests is answered, the ones that passed their checks with codeBatchRefused).
func (s *Server) admit(ctx context.Context, sess *session, msgs []jsonrpc.Message, batch bool, opt admitOptions) *refusal {
	var tracked []*pendingCall
	var refusals [][]byte
	var first *refusal
	for i := range msgs {
		m := &msgs[i]
		// The HTTP request of a batch paid the rate limit for one message: the rest pay here.
		limit := opt.perMessageLimit || batch && i > 0
		p, r := s.check(ctx, sess, m, limit, opt)
		if r != nil {
			if first == nil {
				first = r
			}
			refusals = append(refusals, r.body)
			continue
		}
		if p != nil {
			tracked = append(tracked, p)
		}
	}
	if first == nil {
		for i, p := range tracked {
			if e := sess.track(p); e != nil {
				// Only what this call tracked is let go: the id may be another request's,
				// still in flight, whose answer must still find it.
				for _, q := range tracked[:i] {
					sess.untrack(q.id)
				}
				first = refuse(http.StatusConflict, p.id, e, "duplicate_or_busy")
				s.obs.refused(p.from.transport, p.method, first.reason)
				if p.method == "tools/call" {
					s.audit(sess, p, "refused:"+first.reason, 0)
				}
				refusals = append(refusals, first.body)
				tracked = append(tracked[:i:i], tracked[i+1:]...)
				break
			}
		}
		if first == nil {
			return nil
		}
	}
	if batch {
		for _, p := range tracked {
			s.obs.refused(p.from.transport, p.method, "batch_refused")
			if p.method == "tools/call" {
				s.audit(sess, p, "refused:batch_refused", 0)
			}
			refusals = append(refusals, jsonrpc.ErrorResponse(p.id,
				jsonrpc.NewError(codeBatchRefused, "not relayed: another message of this batch was refused")))
		}
		first.body = joinBatch(refusals)
	}
	return first
}

// check is one message through rate limit and tool policy. It returns the pending record
// for a request that may go upstream.
// limit applies the per-principal rate limit to this message (see admitOptions).
func (s *Server) check(ctx context.Context, sess *session, m *jsonrpc.Message, limit bool, opt admitOptions) (*pendingCall, *refusal) {
	c := sess.caller
	if opt.from != nil {
		c = *opt.from
	}
	var p *pendingCall
	var cerr *tools.CallError
	if m.IsRequest() {
		p = &pendingCall{id: m.ID, method: m.Method, requestID: opt.requestID, start: time.Now(), bytesIn: len(m.Raw), reply: opt.reply, from: c}
		if m.Method == "tools/list" {
			p.listGen = s.deps.Tools.Generation()
		}
		if m.Method == "tools/call" {
			p.tool, p.args, cerr = tools.ReadCallParams(m.Params)
		}
	}
	if limit { // responses to the server's requests pay too: each is a message relayed upstream
		if ok, retry := s.deps.Limiter.Allow(c.rateKey); !ok {
			s.obs.rateLimited(c.transport, m.Method, "client")
			if p != nil && p.method == "tools/call" {
				s.audit(sess, p, "rate_limited", 0)
			}
			id := m.ID
			if m.IsResponse() {
				id = nil // the id is the server's: the client's own request with that id is not the one refused
			}
			r := refuse(http.StatusTooManyRequests, id, rateLimitError(retry, "this client"), "rate_limited")
			r.retryAfter = retry
			return nil, r
		}
	}
	if m.IsRequest() && strings.HasPrefix(m.Method, "notifications/") {
		// As a request it would skip the mux's notification handling (which rewrites the
		// request ids of notifications/cancelled and notifications/progress to this
		// session's), and reach a shared child with another session's ids in it.
		s.obs.refused(c.transport, m.Method, "notification_with_id")
		return nil, refuse(http.StatusBadRequest, m.ID, jsonrpc.InvalidRequest(
			fmt.Sprintf("%q is a notification: send it without an id", m.Method)), "notification_with_id")
	}
	if m.IsNotification() && !strings.HasPrefix(m.Method, "notifications/") {
		// A JSON-RPC server runs a notification, it just does not answer: a "tools/call"
		// without an id would skip the tool policy, validation and audit below. MCP
		// clients send only notifications/* without an id.
		s.refusedUnadmitted(c, m, opt.requestID, "notification_not_allowed")
		return nil, refuse(http.StatusBadRequest, nil, jsonrpc.InvalidRequest(
			fmt.Sprintf("%q was sent without an id: only notifications/* methods may be; add an id to call it", m.Method)),
			"notification_not_allowed")
	}
	if p == nil {
		return nil, nil // notifications/* and responses to server requests pass as they are
	}
	if m.Method != "tools/call" {
		return p, nil
	}
	if ok, retry := s.deps.Limiter.AllowTool(c.rateKey, p.tool); !ok {
		s.obs.rateLimited(c.transport, m.Method, "tool")
		s.audit(sess, p, "rate_limited", 0)
		r := refuse(http.StatusTooManyRequests, m.ID, rateLimitError(retry, "tool "+strconv.Quote(p.tool)), "rate_limited")
		r.retryAfter = retry
		return nil, r
	}
	if cerr == nil {
		cerr = s.deps.Tools.CheckArguments(c.principal, p.tool, p.args)
		if cerr != nil && cerr.SchemaUnknown {
			// A client may call a tool without listing first: learn the schemas, then decide.
			s.ensureSchemas(ctx)
			cerr = s.deps.Tools.CheckArguments(c.principal, p.tool, p.args)
		}
	}
	if cerr != nil {
		reason := "invalid_arguments"
		if cerr.InsufficientScope {
			reason = "insufficient_scope"
		}
		s.obs.refused(c.transport, m.Method, reason)
		s.audit(sess, p, "refused:"+reason, 0)
		// A JSON-RPC error is a normal response to a valid request: 200 on HTTP, except a
		// missing scope, which HTTP clients get as a 403 step-up challenge.
		r := refuse(http.StatusOK, m.ID, cerr.RPC, reason)
		if cerr.InsufficientScope {
			r.status, r.scopes = http.StatusForbidden, cerr.MissingScopes
		}
		return nil, r
	}
	if opt.header != nil {
		if r := s.checkParamHeaders(ctx, sess, p, opt.header); r != nil {
			return nil, r
		}
	}
	return p, nil
}

// checkParamHeaders refuses a tools/call whose Mcp-Param-* headers disagree with its
// arguments (SEP-2243): an intermediary that routes or limits on the headers must see
// what the upstream will execute, and a stdio upstream never sees the headers at all.
func (s *Server) checkParamHeaders(ctx context.Context, sess *session, p *pendingCall, h http.Header) *refusal {
	known, err := s.deps.Tools.CheckParamHeaders(p.tool, p.args, h.Values)
	if !known {
		s.ensureSchemas(ctx)
		known, err = s.deps.Tools.CheckParamHeaders(p.tool, p.args, h.Values)
	}
	if !known {
		// Fail closed: without the schema the headers cannot be checked (a tool the
		// upstream does not list, or a list refetched too recently after list_changed).
		s.obs.refused(p.from.transport, p.method, "unknown_tool")
		s.audit(sess, p, "refused:unknown_tool", 0)
		return refuse(http.StatusOK, p.id, jsonrpc.InvalidParams(fmt.Sprintf("unknown tool %q", p.tool)), "unknown_tool")
	}
	if err == nil {
		return nil
	}
	s.obs.refused(p.from.transport, p.method, "header_mismatch")
	s.audit(sess, p, "refused:header_mismatch", 0)
	return refuse(http.StatusBadRequest, p.id, jsonrpc.NewError(codeHeaderMismatch, err.Error()), "header_mismatch")
}

// outbound processes one upstream message: responses are matched to their pending call
// (tools/list results filtered), list_changed invalidates the schema cache. It returns the
// bytes for the client (nil: drop) and the answered call with its outcome; the caller
// passes the answer on first and then calls finish (metrics, audit), so that bookkeeping
// is not between the upstream's answer and the client.
func (s *Server) outbound(sess *session, raw []byte) (out []byte, answered *pendingCall, outcome string) {
	msgs, _, perr := jsonrpc.Parse(raw, jsonrpc.Options{MaxDepth: upstreamDepth})
	if perr != nil {
		s.log.Warn("Dropped an invalid message from the upstream", "session", sess.id, "error", perr.Message)
		return nil, nil, ""
	}
	m := msgs[0]
	if m.Method == "notifications/tools/list_changed" {
		s.deps.Tools.Invalidate()
	}
	if !m.IsResponse() {
		return raw, nil, ""
	}
	p := sess.untrack(m.ID)
	if p == nil {
		// Answered already (timed out, cancelled) or a response the client never asked for.
		return nil, nil, ""
	}
	p.answered = time.Since(p.start) // the latency recorded: not the client's reading speed
	out = raw
	switch {
	case m.Error != nil:
	case p.method == "tools/list":
		filtered, err := s.deps.Tools.FilterListAt(m.Result, p.listGen)
		if err != nil {
			s.log.Warn("Refusing an unusable tools/list result from the upstream", "error", err)
			out = jsonrpc.ErrorResponse(m.ID, jsonrpc.InternalError("upstream sent an invalid tools/list result"))
			break
		}
		out, _ = jsonrpc.Response(m.ID, filtered)
	case p.method == "initialize":
		var r struct {
			ProtocolVersion string `json:"protocolVersion"`
		}
		if json.Unmarshal(m.Result, &r) == nil {
			sess.setVersion(r.ProtocolVersion)
		}
	}
	outcome = "ok"
	if m.Error != nil {
		outcome = "error"
	}
	return out, p, outcome
}

func joinBatch(parts [][]byte) []byte {
	out := []byte{'['}
	for i, p := range parts {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, p...)
	}
	return append(out, ']')
}

// finishAnswer runs the bookkeeping an answer carries (see answer).
func (s *Server) finishAnswer(sess *session, a answer) {
	if a.call == nil {
		return
	}
	s.finish(sess, a.call, a.outcome, len(a.out))
	s.bookkeeping.Done()
}

// finish records the end of a relayed request in metrics and, for tool calls, the audit log.
func (s *Server) finish(sess *session, p *pendingCall, outcome string, bytesOut int) {
	s.obs.request(sess.caller.transport, p.method, outcome, p.latency())
	if p.method == "tools/call" {
		s.audit(sess, p, outcome, bytesOut)
	}
}

// schemaFetch bounds the tools/list fetches that learn unknown schemas: one at a time,
// bounded in time, at most one per schemaRetry (a tool that does not exist upstream must
// not turn every call into a fetch).
type schemaFetch struct {
	mu      sync.Mutex
	lastTry time.Time
}

const schemaRetry = 5 * time.Second

func (s *Server) ensureSchemas(ctx context.Context) {
	s.schemas.mu.Lock()
	defer s.schemas.mu.Unlock()
	if time.Since(s.schemas.lastTry) < schemaRetry {
		return
	}
	s.schemas.lastTry = time.Now()
	ctx, cancel := context.WithTimeout(ctx, min(10*time.Second, s.cfg.Upstream.RequestTimeout.Duration))
	defer cancel()
	if err := s.fetchTools(ctx); err != nil {
		s.log.Warn("Could not list the upstream's tools for argument validation", "error", err)
	}
}

// fetchTools lists the upstream's tools on an internal session (initialize, initialized,
// tools/list pages) and feeds every page to the tool policy.
func (s *Server) fetchTools(ctx context.Context) error {
	up, err := s.deps.Upstream.NewSession(ctx)
	if err != nil {
		return fmt.Errorf("opening an upstream session: %w", err)
	}
	defer func() { _ = up.Close() }()
	call := func(id int, method string, params any) (json.RawMessage, error) {
		msg, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
		if err := up.Send(ctx, msg); err != nil {
			return nil, fmt.Errorf("sending %s: %w", method, err)
		}
		for {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for %s: %w", method, ctx.Err())
			case raw, ok := <-up.Messages():
				if !ok {
					return nil, errors.New("upstream session ended")
				}
				var r struct {
					ID     json.RawMessage `json:"id"`
					Result json.RawMessage `json:"result"`
					Error  *jsonrpc.Error  `json:"error"`
				}
				if json.Unmarshal(raw, &r) != nil || string(r.ID) != strconv.Itoa(id) {
					continue // notifications and server requests are not for us
				}
				if r.Error != nil {
					return nil, fmt.Errorf("%s: %w", method, r.Error)
				}
				return r.Result, nil
			}
		}
	}
	if _, err := call(1, "initialize", map[string]any{
		"protocolVersion": "2025-11-25", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "mcp-runtime", "version": "internal"},
	}); err != nil {
		return err
	}
	initialized, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})
	if err := up.Send(ctx, initialized); err != nil {
		return fmt.Errorf("sending notifications/initialized: %w", err)
	}
	cursor := ""
	for page := 0; page < 20; page++ {
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		gen := s.deps.Tools.Generation()
		res, err := call(2+page, "tools/list", params)
		if err != nil {
			return err
		}
		if _, err := s.deps.Tools.FilterListAt(res, gen); err != nil {
			return fmt.Errorf("reading tools/list: %w", err)
		}
		var next struct {
			NextCursor string `json:"nextCursor"`
		}
		_ = json.Unmarshal(res, &next)
		if next.NextCursor == "" {
			return nil
		}
		cursor = next.NextCursor
	}
	return nil
}
