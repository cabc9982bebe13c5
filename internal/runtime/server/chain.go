package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/logbatch"
)

type ctxKey int

const requestIDKey ctxKey = iota

// RequestID returns the id the access log and the audit log share for this request.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// recoverMiddleware turns a panic in a handler into a 500 (and a log line) instead of a
// crashed connection goroutine with a stack trace on stderr.
func recoverMiddleware(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler { //nolint:errorlint // sentinel comparison is the documented use
						panic(v)
					}
					log.Error("Handler panic", "panic", v, "path", r.URL.Path, "stack", string(debug.Stack()))
					http.Error(w, `{"error":"internal_error"}`, http.StatusInternalServerError)
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// answerWriteTimeout bounds each write to a client: one that stops reading (say, after
// pipelining requests) must not hold a handler, its answer and a connection slot forever.
// A variable for the tests.
var answerWriteTimeout = 30 * time.Second

// writeDeadlines gives every write of a response — its header, each Write, each Flush —
// answerWriteTimeout (less at most 1/32 of it) from the moment it starts, so a stream may
// stay open for hours while no single write waits longer. A flush that got through lifts the deadline again: on
// HTTP/2 a write deadline is a timer that resets the stream when it fires, written to or
// not, so a quiet stream (a long tool call, a subscription) must not carry one. Hijacked
// connections (WebSockets) set their own.
func writeDeadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: *http.NewResponseController(w)}, r)
	})
}

type deadlineWriter struct {
	http.ResponseWriter
	rc      http.ResponseController // by value: one allocation per request, not two
	armedAt time.Time               // when the deadline now set was set; zero: none is
}

// arm sets the write deadline unless one set moments ago still has nearly all of
// answerWriteTimeout to run: a response's header, body and flush then set one timer, not
// three (each is a timer-heap update; together ~1% of a request's CPU).
func (d *deadlineWriter) arm() {
	now := time.Now()
	if !d.armedAt.IsZero() && now.Sub(d.armedAt) < answerWriteTimeout/32 {
		return
	}
	d.armedAt = now
	_ = d.rc.SetWriteDeadline(now.Add(answerWriteTimeout))
}

func (d *deadlineWriter) WriteHeader(code int) {
	d.arm()
	d.ResponseWriter.WriteHeader(code)
}

func (d *deadlineWriter) Write(b []byte) (int, error) {
	d.arm()
	return d.ResponseWriter.Write(b)
}

func (d *deadlineWriter) Flush() {
	d.arm()
	if d.rc.Flush() == nil {
		_ = d.rc.SetWriteDeadline(time.Time{})
		d.armedAt = time.Time{}
	}
}

func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// statusRecorder remembers the status and size for the access log. It forwards Flush and
// exposes Unwrap so http.ResponseController (SSE flushes, WebSocket hijack) still works.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) Flush() { _ = http.NewResponseController(s.ResponseWriter).Flush() }

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// accessLog assigns a request id (a sane incoming X-Request-Id is kept) and writes one JSON
// line per request to out (one Write per line). It logs the path only: query strings may
// carry tickets or tokens. The line has the shape of the runtime's other log lines (slog's
// JSON handler: time, level, msg, then the fields) but is encoded here: slog's generic
// path cost ~4% of the runtime's CPU per request.
func accessLog(out io.Writer) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			id := r.Header.Get("X-Request-Id")
			if !saneRequestID(id) {
				id = newID(8)
			}
			w.Header().Set("X-Request-Id", id)
			r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
			rec := &statusRecorder{ResponseWriter: w}
			defer func() {
				status := rec.status
				if status == 0 {
					status = http.StatusOK // hijacked (WebSocket) or empty
				}
				end := time.Now()
				bp := lineBufs.Get().(*[]byte)
				line := appendAccessLine((*bp)[:0], accessEntry{
					time: end, id: id, method: r.Method, path: r.URL.Path, status: status,
					bytes: rec.bytes, duration: end.Sub(start), remote: r.RemoteAddr, proto: r.Proto,
				})
				_, _ = out.Write(line)
				if cap(line) <= 4<<10 {
					*bp = line
					lineBufs.Put(bp)
				}
			}()
			next.ServeHTTP(rec, r)
		})
	}
}

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// accessEntry is one access log line.
type accessEntry struct {
	time             time.Time
	id, method, path string
	status           int
	bytes            int64
	duration         time.Duration
	remote, proto    string
}

// appendAccessLine appends e as the line slog.NewJSONHandler writes for
// log.LogAttrs(ctx, slog.LevelInfo, "Request", requestID, method, path, status, bytes,
// duration, remote, proto) — TestAccessLineMatchesSlog holds it to that.
func appendAccessLine(b []byte, e accessEntry) []byte {
	b = append(b, `{"time":"`...)
	b = e.time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"Request","requestID":`...)
	b = logbatch.AppendJSONString(b, e.id)
	b = append(b, `,"method":`...)
	b = logbatch.AppendJSONString(b, e.method)
	b = append(b, `,"path":`...)
	b = logbatch.AppendJSONString(b, e.path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.bytes, 10)
	b = append(b, `,"duration":`...)
	b = logbatch.AppendJSONString(b, e.duration.String())
	b = append(b, `,"remote":`...)
	b = logbatch.AppendJSONString(b, e.remote)
	b = append(b, `,"proto":`...)
	b = logbatch.AppendJSONString(b, e.proto)
	return append(b, '}', '\n')
}

func saneRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c == '-' || c == '_' || c == '.' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')) {
			return false
		}
	}
	return true
}

// newID returns n random bytes, hex encoded.
func newID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// bodyLimit caps request bodies at max bytes; handlers that read past it get a
// *http.MaxBytesError and answer 413. A declared Content-Length over the limit is refused
// before any handler runs. A body must also arrive within timeout: a client that sends
// headers and then stalls would otherwise hold its connection, and a listener slot, for
// good — refused requests included, since net/http reads what is left of their body.
func bodyLimit(max int64, timeout time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > max {
				writeJSONError(w, http.StatusRequestEntityTooLarge, "message_too_large")
				return
			}
			body := r.Body
			if r.ContentLength != 0 { // -1: chunked. No body, no deadline: a GET stream has none to wait for
				rc := http.NewResponseController(w)
				if rc.SetReadDeadline(time.Now().Add(timeout)) == nil {
					body = &deadlineBody{ReadCloser: body, rc: rc}
				}
			}
			r.Body = http.MaxBytesReader(w, body, max)
			next.ServeHTTP(w, r)
		})
	}
}

// deadlineBody lifts the body's read deadline once the body is read: from then on the
// connection's reads only watch for the client going away, which must not end the request.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// isTooLarge reports a body read that hit the bodyLimit cap.
func isTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

func writeJSONError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"error":"` + code + `"}`))
}
