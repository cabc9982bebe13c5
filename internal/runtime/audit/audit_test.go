package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// lockedBuffer records each Write call separately.
type lockedBuffer struct {
	mu     sync.Mutex
	writes [][]byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes = append(b.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, w := range b.writes {
		if bytes.Count(w, []byte("\n")) != 1 || w[len(w)-1] != '\n' {
			t.Fatalf("write is not exactly one line: %q", w)
		}
		var m map[string]any
		if err := json.Unmarshal(w, &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", w, err)
		}
		out = append(out, m)
	}
	return out
}

func closeNow(t *testing.T, l *Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

const secretArgs = `{"path": "/etc/shadow",
  "token": "s3cr3t-value"}`

func TestToolCallLineWithoutArguments(t *testing.T) {
	g := NewWithT(t)
	var buf lockedBuffer
	l := New(config.Audit{}, &buf)
	l.Log(Record{
		Time:       time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("CET", 3600)),
		Kind:       KindToolCall,
		RequestID:  "req-1",
		Principal:  "alice",
		Origin:     "https://app.example.com",
		RemoteAddr: "10.0.0.7:5555",
		Transport:  "websocket",
		Method:     "tools/call",
		Tool:       "read_file",
		Outcome:    "ok",
		Latency:    1500 * time.Microsecond,
		BytesIn:    120,
		BytesOut:   4096,
		Arguments:  json.RawMessage(secretArgs),
	})
	closeNow(t, l)

	lines := buf.lines(t)
	g.Expect(lines).To(HaveLen(1))
	sum := sha256.Sum256([]byte(secretArgs))
	g.Expect(lines[0]).To(Equal(map[string]any{
		"time":       "2026-01-02T02:04:05.0000006Z",
		"kind":       "tool_call",
		"requestId":  "req-1",
		"principal":  "alice",
		"origin":     "https://app.example.com",
		"remoteAddr": "10.0.0.7:5555",
		"transport":  "websocket",
		"method":     "tools/call",
		"tool":       "read_file",
		"outcome":    "ok",
		"latencyMs":  1.5,
		"bytesIn":    float64(120),
		"bytesOut":   float64(4096),
		"argsSize":   float64(len(secretArgs)),
		"argsSHA256": hex.EncodeToString(sum[:]),
	}))
	g.Expect(string(buf.writes[0])).NotTo(ContainSubstring("s3cr3t"))
	g.Expect(string(buf.writes[0])).NotTo(ContainSubstring("shadow"))
	g.Expect(l.Written()).To(BeEquivalentTo(1))
}

func TestLogArgumentsOnOneLine(t *testing.T) {
	g := NewWithT(t)
	var buf lockedBuffer
	l := New(config.Audit{LogArguments: true}, &buf)
	l.Log(Record{Kind: KindToolCall, Tool: "read_file", Outcome: "ok", Arguments: json.RawMessage(secretArgs)})
	l.Log(Record{Kind: KindToolCall, Tool: "x", Outcome: "invalid", Arguments: json.RawMessage("{not json\n")})
	closeNow(t, l)
	lines := buf.lines(t) // each write is exactly one line: multi-line arguments were compacted
	g.Expect(lines).To(HaveLen(2))
	g.Expect(lines[0]["arguments"]).To(Equal(map[string]any{"path": "/etc/shadow", "token": "s3cr3t-value"}))
	g.Expect(lines[0]).To(HaveKey("argsSHA256"))
	g.Expect(lines[1]["arguments"]).To(Equal("{not json\n"))
	ts, err := time.Parse(time.RFC3339Nano, lines[0]["time"].(string))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(time.Since(ts)).To(BeNumerically("<", time.Minute), "zero Time means now")
	g.Expect(lines[0]["time"]).To(HaveSuffix("Z"))
}

func TestAuthLine(t *testing.T) {
	g := NewWithT(t)
	var buf lockedBuffer
	l := New(config.Audit{}, &buf)
	l.Log(Record{Kind: KindAuth, RequestID: "r2", Method: "POST", AuthMethod: "jwt", Outcome: "deny",
		Reason: "token expired", Origin: strings.Repeat("o", 5000) + "\n\"injected\":1", RemoteAddr: "[::1]:1"})
	closeNow(t, l)
	lines := buf.lines(t)
	g.Expect(lines).To(HaveLen(1))
	g.Expect(lines[0]).To(HaveKeyWithValue("kind", "auth"))
	g.Expect(lines[0]).To(HaveKeyWithValue("principal", ""))
	g.Expect(lines[0]).To(HaveKeyWithValue("authMethod", "jwt"))
	g.Expect(lines[0]).To(HaveKeyWithValue("reason", "token expired"))
	g.Expect(lines[0]).NotTo(HaveKey("argsSHA256"))
	g.Expect(lines[0]).NotTo(HaveKey("injected"))
	g.Expect(len(lines[0]["origin"].(string))).To(BeNumerically("<=", maxField+len("…")))
}

func TestConcurrentLinesNeverInterleave(t *testing.T) {
	g := NewWithT(t)
	var buf lockedBuffer
	l := New(config.Audit{LogArguments: true}, &buf)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 50 {
				l.Log(Record{Kind: KindToolCall, RequestID: strings.Repeat("r", w*10+i%7), Tool: "t", Outcome: "ok",
					Arguments: json.RawMessage(`{"n":` + strings.Repeat("1", i+1) + `}`)})
			}
		})
	}
	wg.Wait()
	closeNow(t, l)
	g.Expect(buf.lines(t)).To(HaveLen(800))
	g.Expect(l.Dropped() + l.Errors()).To(BeZero())
}

// blockingWriter blocks every Write until released.
type blockingWriter struct{ release chan struct{} }

func (b blockingWriter) Write(p []byte) (int, error) { <-b.release; return len(p), nil }

func TestStuckWriterDoesNotBlockRequests(t *testing.T) {
	g := NewWithT(t)
	w := blockingWriter{release: make(chan struct{})}
	l := New(config.Audit{}, w)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for range QueueSize + 100 {
			l.Log(Record{Kind: KindToolCall, Outcome: "ok"})
		}
	}()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked on a stuck writer")
	}
	// One line is in the writer, QueueSize wait in the queue, the rest were dropped.
	g.Expect(l.Dropped()).To(BeNumerically(">=", 99))

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	g.Expect(l.Close(ctx)).To(MatchError(context.DeadlineExceeded))
	l.Log(Record{Kind: KindToolCall}) // after Close: ignored, no panic
	close(w.release)
	closeNow(t, l)
	g.Expect(l.Written() + l.Dropped()).To(BeEquivalentTo(QueueSize + 100))
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteErrorsAreCounted(t *testing.T) {
	g := NewWithT(t)
	l := New(config.Audit{}, failingWriter{})
	for range 3 {
		l.Log(Record{Kind: KindAuth, Outcome: "allow"})
	}
	closeNow(t, l)
	g.Expect(l.Errors()).To(BeEquivalentTo(3))
	g.Expect(l.Written()).To(BeZero())
}

func TestDisabledAndNil(t *testing.T) {
	g := NewWithT(t)
	var buf lockedBuffer
	l := New(config.Audit{Disabled: true}, &buf)
	l.Log(Record{Kind: KindAuth})
	closeNow(t, l)
	g.Expect(buf.writes).To(BeEmpty())

	var nilLogger *Logger
	nilLogger.Log(Record{})
	g.Expect(nilLogger.Close(context.Background())).To(Succeed())
	g.Expect(nilLogger.Dropped() + nilLogger.Errors() + nilLogger.Written()).To(BeZero())
}

func TestOpenWriterAppendsToPrivateFile(t *testing.T) {
	g := NewWithT(t)
	file := filepath.Join(t.TempDir(), "audit.log")
	g.Expect(os.WriteFile(file, []byte("{\"earlier\":1}\n"), 0o600)).To(Succeed())
	w, err := OpenWriter(config.Audit{File: file})
	g.Expect(err).NotTo(HaveOccurred())
	l := New(config.Audit{}, w)
	l.Log(Record{Kind: KindAuth, Outcome: "allow"})
	closeNow(t, l)
	g.Expect(w.Close()).To(Succeed())

	f, err := os.Open(file)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = f.Close() }()
	var n int
	for s := bufio.NewScanner(f); s.Scan(); n++ {
		g.Expect(json.Valid(s.Bytes())).To(BeTrue())
	}
	g.Expect(n).To(Equal(2))

	newFile := filepath.Join(t.TempDir(), "new.log")
	w2, err := OpenWriter(config.Audit{File: newFile})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(w2.Close()).To(Succeed())
	st, err := os.Stat(newFile)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(st.Mode().Perm()).To(Equal(os.FileMode(0o600)))

	_, err = OpenWriter(config.Audit{File: filepath.Join(t.TempDir(), "missing", "dir", "x.log")})
	g.Expect(err).To(HaveOccurred())
}

func BenchmarkLog(b *testing.B) {
	l := New(config.Audit{}, discard{})
	defer func() { _ = l.Close(context.Background()) }()
	r := Record{Kind: KindToolCall, RequestID: "req-123", Principal: "alice", Origin: "https://app.example.com",
		RemoteAddr: "10.0.0.1:1234", Transport: "streamable-http", Method: "tools/call", Tool: "add", Outcome: "ok",
		Latency: time.Millisecond, BytesIn: 120, BytesOut: 300, Arguments: json.RawMessage(`{"a":1,"b":2}`)}
	b.ReportAllocs()
	for b.Loop() {
		l.Log(r)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
