// Package upstream relays JSON-RPC messages between client sessions and the MCP server
// behind the runtime: a stdio child process (one shared child with sessions multiplexed
// onto it, or a process per session from a pre-warmed pool) or a Streamable HTTP server
// on localhost.
//
// Contract of a Session, whatever the upstream:
//   - Send accepts one JSON-RPC message from the client. It returns an error only when the
//     message was not accepted (malformed, session closed, ctx done); the caller then
//     answers a request itself.
//   - Every request Send accepted gets exactly one response on Messages(): the server's,
//     or a JSON-RPC error (-32603) when the upstream cannot answer (not ready in time,
//     request timeout, process exit, HTTP failure). Nothing hangs on a dead upstream.
//   - Messages() is bounded (Options.SessionQueue). A session whose reader falls that far
//     behind is closed (its channel is closed) instead of stalling the shared child's
//     output for every other session.
package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// Upstream is the MCP server behind the runtime.
type Upstream interface {
	// Start starts the child (stdio) or begins probing the server (http). It does not wait
	// for the server to be initialized: Ready reports that.
	Start(ctx context.Context) error
	// Ready reports whether the upstream is running and initialized (for /readyz).
	Ready() bool
	// NewSession opens a client session.
	NewSession(ctx context.Context) (Session, error)
	// Close ends every session and stops the upstream: SIGTERM to the child's process
	// group, ShutdownGrace (or ctx, whichever ends first), then SIGKILL.
	Close(ctx context.Context) error
}

// StatelessSessions is implemented by upstreams that serve requests of the stateless
// protocol revision (2026-07-28 and later) from a process of their own. A stdio server that
// sees one such request may treat its whole stdio session as that revision and refuse, for
// instance, to ask the session-era clients multiplexed onto it for elicitation; with the
// revisions on separate processes each keeps its own rules.
type StatelessSessions interface {
	// NewStatelessSession opens a session for stateless-revision requests (the process is
	// started on first use).
	NewStatelessSession(ctx context.Context) (Session, error)
}

// Session is one client session on the upstream.
type Session interface {
	ID() string
	// Send relays one validated JSON-RPC message from the client.
	Send(ctx context.Context, msg []byte) error
	// Messages carries responses, notifications and server→client requests for this
	// session; it is closed when the session ends.
	Messages() <-chan []byte
	// Close ends the session; responses still on their way are dropped.
	Close() error
}

// Receiver is implemented by sessions that can pass each message to a function on the
// goroutine that produced it (the stdio reader, the HTTP exchange) instead of queueing it
// on Messages() for a reader goroutine of the caller's: one hand-off, a wake-up and a
// context switch, less per message.
type Receiver interface {
	// Receive passes every message of the session to fn, in the order it would have
	// reached Messages(), and calls end once after the last one when the session ends.
	// Call it at most once, before the first Send; messages already queued are passed on
	// first, and Messages() then carries nothing (it is still closed at the end). Calls
	// of fn and end are never concurrent with each other. fn must not block: it runs on
	// the upstream's own goroutines, and on a caller's inside Send or Close.
	Receive(fn func(msg []byte), end func())
}

// Exchanger is implemented by sessions whose upstream answers each request on a stream of
// its own (Streamable HTTP): the caller can then relay one message on its own goroutine,
// as a plain reverse proxy does, instead of handing it to a goroutine of the session's.
type Exchanger interface {
	// Exchange relays msg and passes every message the upstream sends on that message's
	// stream to fn, in order, on the calling goroutine; it returns when the stream has
	// ended. A request gets exactly one response through fn (the server's, or an error
	// when the server cannot answer), as with Send and Messages(), unless ctx ends first
	// (the caller gave up: the upstream request is abandoned and nothing more is passed)
	// or the session closes. An error means msg was not accepted (as from Send) and fn
	// was not called. fn gets copies it may keep; messages that do not belong to this
	// stream still go to Messages() or the Receiver.
	Exchange(ctx context.Context, msg []byte, fn func(msg []byte)) error
}

// receiver is the Receiver state of a session.
type receiver struct {
	mu    sync.Mutex
	fn    func([]byte)
	end   func()
	ended bool
}

func (r *receiver) deliver(msg []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.ended {
		r.fn(msg)
	}
}

func (r *receiver) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.ended {
		r.ended = true
		r.end()
	}
}

// Errors returned by Send and NewSession (wrapped; test with errors.Is).
var (
	ErrSessionClosed   = errors.New("upstream session closed")
	ErrClosed          = errors.New("upstream closed")
	ErrInvalidMessage  = errors.New("invalid JSON-RPC message")
	ErrTooManySessions = errors.New("too many upstream sessions")
	ErrNotReady        = errors.New("upstream not ready")
)

// Backoff bounds the delays between restarts of a crashing child.
type Backoff struct {
	// Min is the first delay. Default 250ms.
	Min time.Duration
	// Max caps the doubling delay. Default 30s.
	Max time.Duration
	// ResetAfter: a child that stayed up this long restarts after Min again. Default 60s.
	ResetAfter time.Duration
}

// Options tune an Upstream. The zero value is safe.
type Options struct {
	// Logger for lifecycle events and dropped messages. Default slog.Default().
	Logger *slog.Logger
	// Stderr receives the child's stderr line by line (each line bounded to 16 KiB).
	// Default: each line is logged through Logger at Info level.
	Stderr io.Writer
	// OnRestart is called each time a crashed stdio child is started again (metrics).
	OnRestart func()
	// OnToolsChanged is called when a shared stdio child may have other tools than before:
	// it sent notifications/tools/list_changed (whether or not a client session is open to
	// receive it) or it was restarted. The runtime drops its cached tool schemas.
	OnToolsChanged func()
	// Backoff between child restarts.
	Backoff Backoff
	// HTTPClient for an HTTP upstream. Default: a client with a pooled transport sized
	// for one busy localhost server, no proxy, no overall timeout (streams are long).
	HTTPClient *http.Client
	// MaxMessageBytes bounds one message read from the upstream (a stdio line, an HTTP
	// body or an SSE event). Longer ones are dropped and the request they answer gets
	// an error. Default 4 MiB.
	MaxMessageBytes int
	// SessionQueue is the capacity of each session's Messages channel. Default 16: the
	// reader (the runtime's pump or WebSocket writer) drains it at once, so it only fills
	// when the client stops reading, and every idle session pays for its slots.
	SessionQueue int
	// InitializeParams are the params of the runtime's own initialize request to a stdio
	// child. The child is initialized once, ahead of any client (so Ready can turn true
	// and stateless clients that never initialize work); every client's initialize is
	// answered from the cached result. Default: protocol 2025-11-25, client
	// "mcp-runtime", capabilities roots, sampling and elicitation (relayed to clients).
	InitializeParams json.RawMessage
}

const defaultSessionQueue = 16

// DefaultInitializeParams is used when Options.InitializeParams is empty.
var DefaultInitializeParams = json.RawMessage(`{"protocolVersion":"2025-11-25","capabilities":{"roots":{"listChanged":true},"sampling":{},"elicitation":{}},"clientInfo":{"name":"mcp-runtime","version":"1.0.0"}}`)

// settings are Options with defaults applied plus the config fields used here.
type settings struct {
	log            *slog.Logger
	stderr         io.Writer
	onRestart      func()
	onToolsChanged func()
	backoff        Backoff
	maxMsg         int
	queue          int
	initParams     json.RawMessage
	grace          time.Duration
	requestTimeout time.Duration
}

func resolve(cfg config.Upstream, o Options) settings {
	s := settings{
		log:            o.Logger,
		stderr:         o.Stderr,
		onRestart:      o.OnRestart,
		onToolsChanged: o.OnToolsChanged,
		backoff:        o.Backoff,
		maxMsg:         o.MaxMessageBytes,
		queue:          o.SessionQueue,
		initParams:     o.InitializeParams,
		grace:          cfg.ShutdownGrace.Duration,
		requestTimeout: cfg.RequestTimeout.Duration,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.onRestart == nil {
		s.onRestart = func() {}
	}
	if s.onToolsChanged == nil {
		s.onToolsChanged = func() {}
	}
	if s.backoff.Min <= 0 {
		s.backoff.Min = 250 * time.Millisecond
	}
	if s.backoff.Max < s.backoff.Min {
		s.backoff.Max = max(30*time.Second, s.backoff.Min)
	}
	if s.backoff.ResetAfter <= 0 {
		s.backoff.ResetAfter = time.Minute
	}
	if s.maxMsg <= 0 {
		s.maxMsg = 4 << 20
	}
	if s.queue <= 0 {
		s.queue = defaultSessionQueue
	}
	if len(s.initParams) == 0 {
		s.initParams = DefaultInitializeParams
	}
	if s.grace <= 0 {
		s.grace = 10 * time.Second
	}
	if s.requestTimeout <= 0 {
		s.requestTimeout = time.Minute
	}
	return s
}
