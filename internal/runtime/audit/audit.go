// Package audit writes the runtime's audit log: one JSON object per line for every
// tools/call and every authentication decision.
//
// Lines are encoded by the caller and written in batches (package logbatch): they never
// interleave, they reach the file at most logbatch.Interval late, and a slow or stuck
// writer never blocks requests: when logbatch.QueueSize lines wait the line is dropped and
// counted (Dropped). Write errors are counted too (Errors), never fatal. Close writes what
// is pending. Tool arguments are logged as size + SHA-256 unless LogArguments is set.
// Records have no field for tokens or tickets.
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
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/logbatch"
)

// Record kinds.
const (
	KindToolCall = "tool_call"
	KindAuth     = "auth"
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
	out     *logbatch.Writer // nil: disabled

	encodeErrors atomic.Uint64
}

// New starts a logger writing to w (the caller owns w; see OpenWriter).
func New(cfg config.Audit, w io.Writer) *Logger {
	if cfg.Disabled || w == nil {
		return &Logger{}
	}
	return &Logger{logArgs: cfg.LogArguments, now: time.Now, out: logbatch.New(w)}
}

// Log queues one line; it never blocks.
func (l *Logger) Log(r Record) {
	if l == nil || l.out == nil {
		return
	}
	bp := encodeBufs.Get().(*[]byte)
	b, err := l.encode((*bp)[:0], r)
	if err != nil {
		l.encodeErrors.Add(1)
		encodeBufs.Put(bp)
		return
	}
	l.out.Append(b)
	if cap(b) <= 64<<10 {
		*bp = b
		encodeBufs.Put(bp)
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
	b = logbatch.AppendJSONString(b, t.UTC().AppendFormat(tbuf[:0], time.RFC3339Nano))
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
	return logbatch.AppendJSONString(b, clip(value))
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
	if l == nil || l.out == nil {
		return 0
	}
	return l.out.Dropped()
}

// Errors is the number of lines that failed to encode or write.
func (l *Logger) Errors() uint64 {
	if l == nil || l.out == nil {
		return 0
	}
	return l.encodeErrors.Load() + l.out.Errors()
}

// Written is the number of lines written.
func (l *Logger) Written() uint64 {
	if l == nil || l.out == nil {
		return 0
	}
	return l.out.Written()
}

// Close stops accepting lines and waits until the pending ones are written or ctx ends (a
// stuck writer cannot hold shutdown). Later Log calls are ignored.
func (l *Logger) Close(ctx context.Context) error {
	if l == nil || l.out == nil {
		return nil
	}
	if err := l.out.Close(ctx); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
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
