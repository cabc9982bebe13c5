// Package logbatch writes log lines in batches: lines are appended to an in-memory batch
// and one writer goroutine writes each batch with a single Write, at most Interval after its
// first line (sooner when the batch grows to QueueSize/4 lines or 256 KiB). A busy runtime
// then makes one write syscall per batch instead of one per line — the syscall cost more
// CPU than encoding the line — lines never interleave, and a slow or stuck destination (a
// full pipe, a hung disk) never blocks a request for long: while QueueSize lines or
// MaxQueueBytes wait, further lines are dropped and counted, and a caller waiting for its
// line to be written (Sync) waits a bounded time. Write errors are counted too, never fatal.
package logbatch

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// QueueSize is the number of lines waiting for the destination before lines are dropped.
const QueueSize = 4096

// MaxQueueBytes bounds the memory of the waiting lines (a stdio server's stderr lines can
// be large): beyond it lines are dropped.
const MaxQueueBytes = 8 << 20

// Interval bounds how long a line waits in memory before it is written.
const Interval = 50 * time.Millisecond

// urgentWait bounds how long a WARN or ERROR record waits for its line to be written.
const urgentWait = 250 * time.Millisecond

// A batch this large is written at once instead of waiting for Interval.
const (
	flushLines = QueueSize / 4
	flushBytes = 256 << 10
)

// Writer batches lines for w. It is safe for concurrent use.
type Writer struct {
	w        io.Writer
	interval time.Duration

	spare []byte // the buffer of the last batch written, reused (writer goroutine only)

	mu           sync.Mutex
	closed       bool
	batch        []byte        // lines not yet taken
	lines        int           // lines in batch
	queued       uint64        // lines ever queued
	finished     uint64        // lines ever taken and written (or failed): batches finish in order
	pendingBytes int           // size of the lines queued and not finished
	progress     chan struct{} // closed and replaced when a batch finished

	kick    chan struct{} // cap 1: the batch has its first line
	full    chan struct{} // cap 1: the batch should be written now
	closing chan struct{} // closed by Close: write what is left and stop
	done    chan struct{}

	dropped, errors, written atomic.Uint64
}

// New starts a Writer for w; the caller keeps owning w (Close does not close it).
func New(w io.Writer) *Writer { return newWriter(w, Interval) }

func newWriter(w io.Writer, interval time.Duration) *Writer {
	b := &Writer{
		w:        w,
		interval: interval,
		progress: make(chan struct{}),
		kick:     make(chan struct{}, 1),
		full:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	go b.run()
	return b
}

// run waits for a first line, lets the batch fill for at most Interval (or until it is
// full or the Writer closes), then writes it.
func (b *Writer) run() {
	defer close(b.done)
	timer := time.NewTimer(b.interval)
	timer.Stop()
	for {
		closing := false
		select {
		case <-b.kick:
			timer.Reset(b.interval)
			select {
			case <-timer.C:
			case <-b.full:
				timer.Stop()
			case <-b.closing:
				timer.Stop()
				closing = true
			}
		case <-b.closing:
			closing = true
		}
		b.flush()
		if closing {
			b.mu.Lock()
			left := b.lines
			b.mu.Unlock()
			if left == 0 {
				return
			}
		}
	}
}

// Append queues p, one whole line ending in a newline; it never blocks. It reports false
// when the line was dropped (queue full) or the Writer is closed.
func (b *Writer) Append(p []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return false
	case b.queued-b.finished >= QueueSize || b.pendingBytes+len(p) > MaxQueueBytes:
		b.dropped.Add(1)
		return false
	}
	first := b.lines == 0
	b.batch = append(b.batch, p...)
	b.lines++
	b.queued++
	b.pendingBytes += len(p)
	switch {
	case first:
		signal(b.kick)
	case b.lines >= flushLines || len(b.batch) >= flushBytes:
		signal(b.full)
	}
	return true
}

// Write queues p as one line, for loggers that write one record per call (slog's
// handlers do). A dropped line is counted, not returned as an error: a log line must not
// fail the request it describes.
func (b *Writer) Write(p []byte) (int, error) {
	b.Append(p)
	return len(p), nil
}

// flush writes what is queued now. Only the writer goroutine calls it, so batches reach w
// in order.
func (b *Writer) flush() {
	b.mu.Lock()
	batch, n := b.batch, b.lines
	b.batch, b.lines = b.spare[:0], 0
	b.mu.Unlock()
	select { // a full signal for the batch just taken is stale
	case <-b.full:
	default:
	}
	if n <= 0 {
		b.spare = batch
		return
	}
	if _, err := b.w.Write(batch); err != nil {
		b.errors.Add(uint64(n))
	} else {
		b.written.Add(uint64(n))
	}
	b.mu.Lock()
	b.pendingBytes -= len(batch)
	b.finished += uint64(n)
	close(b.progress)
	b.progress = make(chan struct{})
	b.mu.Unlock()
	b.spare = batch
	if cap(b.spare) > 4*flushBytes {
		b.spare = nil // one burst of huge lines must not pin its buffer
	}
}

// Sync asks for what is queued to be written now and waits until it is, at most max: a
// stuck destination holds the caller no longer than that.
func (b *Writer) Sync(max time.Duration) {
	b.mu.Lock()
	target := b.queued
	b.mu.Unlock()
	signal(b.full)
	timer := time.NewTimer(max)
	defer timer.Stop()
	for {
		b.mu.Lock()
		if b.finished >= target {
			b.mu.Unlock()
			return
		}
		progress := b.progress
		b.mu.Unlock()
		select {
		case <-progress:
		case <-b.done:
			return
		case <-timer.C:
			return
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Dropped is the number of lines dropped because the destination could not keep up.
func (b *Writer) Dropped() uint64 { return b.dropped.Load() }

// Errors is the number of lines whose write failed.
func (b *Writer) Errors() uint64 { return b.errors.Load() }

// Written is the number of lines written.
func (b *Writer) Written() uint64 { return b.written.Load() }

// Close stops accepting lines and waits until the queued ones are written or ctx ends (a
// stuck destination cannot hold shutdown). Later lines are ignored.
func (b *Writer) Close(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.closing)
	}
	b.mu.Unlock()
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		n := b.queued - b.finished
		b.mu.Unlock()
		return fmt.Errorf("%d log lines not written: %w", n, ctx.Err())
	}
}

// NewJSONLogger returns the runtime's logger: slog JSON lines to w, batched. A record at
// Warn or above is written at once, with every line queued before it, so what led to a
// failure is out before the process can crash — unless w is stuck: then the call returns
// after urgentWait and the line stays queued. Close the Writer at exit.
func NewJSONLogger(w io.Writer) (*slog.Logger, *Writer) {
	b := New(w)
	return slog.New(urgentHandler{Handler: slog.NewJSONHandler(b, nil), out: b}), b
}

// urgentHandler flushes the batch after a record at Warn or above.
type urgentHandler struct {
	slog.Handler
	out *Writer
}

func (h urgentHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.out.Sync(urgentWait)
	}
	return err
}

func (h urgentHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return urgentHandler{Handler: h.Handler.WithAttrs(attrs), out: h.out}
}

func (h urgentHandler) WithGroup(name string) slog.Handler {
	return urgentHandler{Handler: h.Handler.WithGroup(name), out: h.out}
}
