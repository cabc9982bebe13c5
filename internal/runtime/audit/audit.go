// Package audit writes the runtime's audit log: one JSON object per line for every
// tools/call and every authentication decision.
//
// Lines are encoded by the caller and appended to an in-memory batch; one writer goroutine
// writes each batch with a single Write, at most FlushInterval after its first line (sooner
// when the batch grows to flushLines lines or flushBytes bytes), so lines never interleave,
// a busy runtime makes one write syscall per batch instead of one per line, and a slow or
// stuck writer (a full pipe, a hung disk) never blocks requests: when QueueSize lines wait
// the line is dropped and counted (Dropped). Write errors are counted too (Errors), never
// fatal. Close writes what is pending. Tool arguments are logged as size + SHA-256 unless
// LogArguments is set. Records have no field for tokens or tickets.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
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

// QueueSize is the number of lines waiting for the writer before lines are dropped.
const QueueSize = 4096

// FlushInterval bounds how long a line waits in memory before it is written.
const FlushInterval = 50 * time.Millisecond

// A batch this large is written at once instead of waiting for FlushInterval.
const (
	flushLines = QueueSize / 4
	flushBytes = 256 << 10
)

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

// Logger is safe for concurrent use. A nil *Logger, and one from a disabled config, log
// nothing.
type Logger struct {
	logArgs bool
	now     func() time.Time

	mu      sync.Mutex
	closed  bool
	batch   []byte        // encoded lines not yet taken by the writer
	lines   int           // lines in batch
	pending int           // lines in batch plus lines the writer took and has not written yet
	kick    chan struct{} // cap 1: the batch has its first line
	full    chan struct{} // cap 1: the batch should be written now
	closing chan struct{} // closed by Close: write what is left and stop
	done    chan struct{}

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
		kick:    make(chan struct{}, 1),
		full:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go l.run(w)
	return l
}

// run writes batches: it waits for a first line, lets the batch fill for at most
// FlushInterval (or until it is full or the logger closes), then writes it whole.
func (l *Logger) run(w io.Writer) {
	defer close(l.done)
	timer := time.NewTimer(FlushInterval)
	timer.Stop()
	var spare []byte
	for {
		closing := false
		select {
		case <-l.kick:
			timer.Reset(FlushInterval)
			select {
			case <-timer.C:
			case <-l.full:
				timer.Stop()
			case <-l.closing:
				timer.Stop()
				closing = true
			}
		case <-l.closing:
			closing = true
		}
		l.mu.Lock()
		batch, n := l.batch, l.lines
		l.batch, l.lines = spare[:0], 0
		l.mu.Unlock()
		select { // a full signal for the batch just taken is stale
		case <-l.full:
		default:
		}
		if n > 0 {
			if _, err := w.Write(batch); err != nil {
				l.errors.Add(uint64(n))
			} else {
				l.written.Add(uint64(n))
			}
			l.mu.Lock()
			l.pending -= n
			l.mu.Unlock()
		}
		spare = batch
		if cap(spare) > 4*flushBytes {
			spare = nil // one burst of huge lines must not pin its buffer
		}
		if closing {
			l.mu.Lock()
			left := l.lines
			l.mu.Unlock()
			if left == 0 {
				return
			}
		}
	}
}

// Log queues one line; it never blocks.
func (l *Logger) Log(r Record) {
	if l == nil || l.done == nil { // nil or disabled
		return
	}
	bp := encodeBufs.Get().(*[]byte)
	b, err := l.encode((*bp)[:0], r)
	if err != nil {
		l.errors.Add(1)
		encodeBufs.Put(bp)
		return
	}
	l.mu.Lock()
	switch {
	case l.closed:
	case l.pending >= QueueSize:
		l.dropped.Add(1)
	default:
		first := l.lines == 0
		l.batch = append(l.batch, b...)
		l.lines++
		l.pending++
		switch {
		case first:
			signal(l.kick)
		case l.lines >= flushLines || len(l.batch) >= flushBytes:
			signal(l.full)
		}
	}
	l.mu.Unlock()
	if cap(b) <= 64<<10 {
		*bp = b
		encodeBufs.Put(bp)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

var encodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// encode appends the JSON line of r (with its newline) to dst.
func (l *Logger) encode(dst []byte, r Record) ([]byte, error) {
	t := r.Time
	if t.IsZero() {
		t = l.now()
	}
	var tbuf [64]byte
	b := append(dst, `{"time":`...)
	b = appendString(b, t.UTC().AppendFormat(tbuf[:0], time.RFC3339Nano))
	b = appendField(b, "kind", r.Kind, false)
	b = appendField(b, "requestId", r.RequestID, false)
	b = appendField(b, "principal", r.Principal, false)
	b = appendField(b, "origin", r.Origin, true)
	b = appendField(b, "remoteAddr", r.RemoteAddr, true)
	b = appendField(b, "transport", r.Transport, true)
	b = appendField(b, "method", r.Method, true)
	b = appendField(b, "tool", r.Tool, true)
	b = appendField(b, "outcome", r.Outcome, false)
	b = appendField(b, "reason", r.Reason, true)
	b = appendField(b, "authMethod", r.AuthMethod, true)
	b = append(b, `,"latencyMs":`...)
	b = appendFloat(b, float64(r.Latency.Microseconds())/1000)
	b = append(b, `,"bytesIn":`...)
	b = strconv.AppendInt(b, int64(r.BytesIn), 10)
	b = append(b, `,"bytesOut":`...)
	b = strconv.AppendInt(b, int64(r.BytesOut), 10)
	if r.Arguments != nil {
		sum := sha256.Sum256(r.Arguments)
		var hbuf [2 * sha256.Size]byte
		hex.Encode(hbuf[:], sum[:])
		b = append(b, `,"argsSize":`...)
		b = strconv.AppendInt(b, int64(len(r.Arguments)), 10)
		b = append(b, `,"argsSHA256":"`...)
		b = append(b, hbuf[:]...)
		b = append(b, '"')
		if l.logArgs {
			var args []byte
			var err error
			if json.Valid(r.Arguments) {
				args, err = json.Marshal(r.Arguments) // compacted onto the one line
			} else {
				args, err = json.Marshal(string(r.Arguments))
			}
			if err != nil {
				return dst, fmt.Errorf("audit: encoding record: %w", err)
			}
			b = append(b, `,"arguments":`...)
			b = append(b, args...)
		}
	}
	return append(b, '}', '\n'), nil
}

// appendField appends ,"key":"value" with value clipped; omitempty skips an empty value.
func appendField(b []byte, key, value string, omitempty bool) []byte {
	if omitempty && value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendString(b, clip(value))
}

// appendFloat formats f as encoding/json does.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' { // e-09 → e-9, as encoding/json writes it
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string escaped exactly as encoding/json escapes it
// (HTML characters, control characters, U+2028/U+2029; invalid UTF-8 becomes U+FFFD).
func appendString[S []byte | string](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		n := min(len(s)-i, utf8.UTFMax)
		r, size := utf8.DecodeRuneInString(string(s[i : i+n]))
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
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

// Close stops accepting lines and waits until the pending ones are written or ctx ends (a
// stuck writer cannot hold shutdown). Later Log calls are ignored.
func (l *Logger) Close(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		if l.closing != nil {
			close(l.closing)
		}
	}
	l.mu.Unlock()
	if l.done == nil {
		return nil
	}
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		n := l.pending
		l.mu.Unlock()
		return fmt.Errorf("audit: %d lines not flushed: %w", n, ctx.Err())
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
