// Package audit writes the runtime's audit log: one JSON object per line for every
// tools/call and every authentication decision.
//
// Lines go through a bounded queue to one writer goroutine, so lines never interleave and a
// slow or stuck writer (a full pipe, a hung disk) never blocks requests: when the queue is
// full the line is dropped and counted (Dropped). Write errors are counted too (Errors),
// never fatal. Tool arguments are logged as size + SHA-256 unless LogArguments is set.
// Records have no field for tokens or tickets.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// Record kinds.
const (
	KindToolCall = "tool_call"
	KindAuth     = "auth"
)

// QueueSize is the number of lines buffered for the writer before lines are dropped.
const QueueSize = 4096

// maxField bounds client-supplied text (Origin, request id…) in a line.
const maxField = 512

// Record is one audited event. Zero fields are omitted, except the always-present core.
type Record struct {
	Time       time.Time // zero: now
	Kind       string    // KindToolCall or KindAuth
	RequestID  string
	Principal  string // subject; empty for refused or anonymous callers
	Origin     string
	RemoteAddr string
	Transport  string // streamable-http, sse, websocket
	Method     string // JSON-RPC method (tools/call), or the HTTP method for auth records
	Tool       string
	Outcome    string // e.g. ok, error, denied, invalid, rate_limited
	Reason     string // why, for refusals (never a credential)
	AuthMethod string // jwt, apikey, ticket, first-message, anonymous
	Latency    time.Duration
	BytesIn    int
	BytesOut   int
	// Arguments of a tool call, as received. Logged as argsSize + argsSHA256 unless
	// config.Audit.LogArguments.
	Arguments json.RawMessage
}

type line struct {
	Time       string          `json:"time"`
	Kind       string          `json:"kind"`
	RequestID  string          `json:"requestId"`
	Principal  string          `json:"principal"`
	Origin     string          `json:"origin,omitempty"`
	RemoteAddr string          `json:"remoteAddr,omitempty"`
	Transport  string          `json:"transport,omitempty"`
	Method     string          `json:"method,omitempty"`
	Tool       string          `json:"tool,omitempty"`
	Outcome    string          `json:"outcome"`
	Reason     string          `json:"reason,omitempty"`
	AuthMethod string          `json:"authMethod,omitempty"`
	LatencyMS  float64         `json:"latencyMs"`
	BytesIn    int             `json:"bytesIn"`
	BytesOut   int             `json:"bytesOut"`
	ArgsSize   *int            `json:"argsSize,omitempty"`
	ArgsSHA256 string          `json:"argsSHA256,omitempty"`
	Arguments  json.RawMessage `json:"arguments,omitempty"`
}

// Logger is safe for concurrent use. A nil *Logger, and one from a disabled config, log
// nothing.
type Logger struct {
	logArgs bool
	now     func() time.Time

	mu     sync.RWMutex // guards closed against sends on a closed queue
	closed bool
	queue  chan []byte
	done   chan struct{}

	dropped, errors, written atomic.Uint64
}

// New starts a logger writing to w (the caller owns w; see OpenWriter).
func New(cfg config.Audit, w io.Writer) *Logger {
	if cfg.Disabled || w == nil {
		return &Logger{closed: true}
	}
	l := &Logger{
		logArgs: cfg.LogArguments,
		now:     time.Now,
		queue:   make(chan []byte, QueueSize),
		done:    make(chan struct{}),
	}
	go l.run(w)
	return l
}

func (l *Logger) run(w io.Writer) {
	defer close(l.done)
	for b := range l.queue {
		if _, err := w.Write(b); err != nil {
			l.errors.Add(1)
			continue
		}
		l.written.Add(1)
	}
}

// Log queues one line; it never blocks.
func (l *Logger) Log(r Record) {
	if l == nil {
		return
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return
	}
	b, err := l.encode(r)
	if err != nil {
		l.errors.Add(1)
		return
	}
	select {
	case l.queue <- b:
	default:
		l.dropped.Add(1)
	}
}

func (l *Logger) encode(r Record) ([]byte, error) {
	t := r.Time
	if t.IsZero() {
		t = l.now()
	}
	ln := line{
		Time:       t.UTC().Format(time.RFC3339Nano),
		Kind:       clip(r.Kind),
		RequestID:  clip(r.RequestID),
		Principal:  clip(r.Principal),
		Origin:     clip(r.Origin),
		RemoteAddr: clip(r.RemoteAddr),
		Transport:  clip(r.Transport),
		Method:     clip(r.Method),
		Tool:       clip(r.Tool),
		Outcome:    clip(r.Outcome),
		Reason:     clip(r.Reason),
		AuthMethod: clip(r.AuthMethod),
		LatencyMS:  float64(r.Latency.Microseconds()) / 1000,
		BytesIn:    r.BytesIn,
		BytesOut:   r.BytesOut,
	}
	if r.Arguments != nil {
		n := len(r.Arguments)
		sum := sha256.Sum256(r.Arguments)
		ln.ArgsSize, ln.ArgsSHA256 = &n, hex.EncodeToString(sum[:])
		if l.logArgs {
			if json.Valid(r.Arguments) {
				ln.Arguments = r.Arguments // encoding/json compacts it onto the one line
			} else {
				q, _ := json.Marshal(string(r.Arguments))
				ln.Arguments = q
			}
		}
	}
	b, err := json.Marshal(ln)
	if err != nil {
		return nil, fmt.Errorf("audit: encoding record: %w", err)
	}
	return append(b, '\n'), nil
}

// clip bounds client-supplied text without splitting a UTF-8 sequence.
func clip(s string) string {
	if len(s) <= maxField {
		return s
	}
	cut := maxField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Dropped is the number of lines dropped because the writer could not keep up.
func (l *Logger) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// Errors is the number of lines that failed to encode or write.
func (l *Logger) Errors() uint64 {
	if l == nil {
		return 0
	}
	return l.errors.Load()
}

// Written is the number of lines written.
func (l *Logger) Written() uint64 {
	if l == nil {
		return 0
	}
	return l.written.Load()
}

// Close stops accepting lines and waits until the queued ones are written or ctx ends (a
// stuck writer cannot hold shutdown). Later Log calls are ignored.
func (l *Logger) Close(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		if l.done == nil {
			return nil
		}
	} else {
		l.closed = true
		close(l.queue)
		l.mu.Unlock()
	}
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: %d lines not flushed: %w", len(l.queue), ctx.Err())
	}
}

// OpenWriter returns the configured destination: the file (appended, created 0600) or
// stdout when cfg.File is empty. Closing the stdout writer does nothing.
func OpenWriter(cfg config.Audit) (io.WriteCloser, error) {
	if cfg.File == "" {
		return nopCloser{os.Stdout}, nil
	}
	f, err := os.OpenFile(cfg.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
