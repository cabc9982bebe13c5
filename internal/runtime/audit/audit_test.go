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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/logbatch"
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

// all is everything written so far.
func (b *lockedBuffer) all() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Join(b.writes, nil)
}

// lines decodes every line written. Each Write must end on a line boundary: a batch never
// splits a line.
func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, w := range b.writes {
		if len(w) == 0 || w[len(w)-1] != '\n' {
			t.Fatalf("write does not end on a line boundary: %q", w)
		}
		for _, ln := range bytes.SplitAfter(w, []byte("\n")) {
			if len(ln) == 0 {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(ln, &m); err != nil {
				t.Fatalf("line %q is not JSON: %v", ln, err)
			}
			out = append(out, m)
		}
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
	g.Expect(string(buf.all())).NotTo(ContainSubstring("s3cr3t"))
	g.Expect(string(buf.all())).NotTo(ContainSubstring("shadow"))
	g.Expect(l.Written()).To(BeEquivalentTo(1))
}

func TestLogArgumentsOnOneLine(t *testing.T) {
	g := NewWithT(t)
	var buf lockedBuffer
	l := New(config.Audit{LogArguments: true}, &buf)
	l.Log(Record{Kind: KindToolCall, Tool: "read_file", Outcome: "ok", Arguments: json.RawMessage(secretArgs)})
	l.Log(Record{Kind: KindToolCall, Tool: "x", Outcome: "invalid", Arguments: json.RawMessage("{not json\n")})
	closeNow(t, l)
	lines := buf.lines(t)
	g.Expect(lines).To(HaveLen(2), "multi-line arguments are compacted onto their line")
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
		for range logbatch.QueueSize + 100 {
			l.Log(Record{Kind: KindToolCall, Outcome: "ok"})
		}
	}()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked on a stuck writer")
	}
	// logbatch.QueueSize lines wait (in the stuck writer's batch or the next one), the rest were dropped.
	g.Expect(l.Dropped()).To(BeNumerically(">=", 100))

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	g.Expect(l.Close(ctx)).To(MatchError(context.DeadlineExceeded))
	l.Log(Record{Kind: KindToolCall}) // after Close: ignored, no panic
	close(w.release)
	closeNow(t, l)
	g.Expect(l.Written() + l.Dropped()).To(BeEquivalentTo(logbatch.QueueSize + 100))
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

func TestLinesAreBatchedAndFlushedWithoutClose(t *testing.T) {
	g := NewWithT(t)
	var buf lockedBuffer
	l := New(config.Audit{}, &buf)
	defer closeNow(t, l)
	start := time.Now()
	for i := range 200 {
		l.Log(Record{Kind: KindToolCall, RequestID: strconv.Itoa(i), Outcome: "ok"})
	}
	g.Eventually(func() int { return len(buf.lines(t)) }, 2*time.Second, 5*time.Millisecond).Should(Equal(200),
		"lines reach the writer within logbatch.Interval, without Close")
	g.Expect(time.Since(start)).To(BeNumerically(">=", logbatch.Interval/2), "the batch waited for more lines")
	buf.mu.Lock()
	writes := len(buf.writes)
	buf.mu.Unlock()
	g.Expect(writes).To(BeNumerically("<=", 3), "200 lines logged at once are written in a few batches")
	g.Expect(l.Written()).To(BeEquivalentTo(200))

	l.Log(Record{Kind: KindAuth, Outcome: "allow"}) // a lone line is not held back either
	g.Eventually(func() int { return len(buf.lines(t)) }, 2*time.Second, 5*time.Millisecond).Should(Equal(201))
}

func TestFullBatchIsWrittenBeforeTheInterval(t *testing.T) {
	g := NewWithT(t)
	var buf lockedBuffer
	l := New(config.Audit{}, &buf)
	defer closeNow(t, l)
	for range (logbatch.QueueSize / 4) + 10 {
		l.Log(Record{Kind: KindAuth, Outcome: "allow"})
	}
	// The batch reached (logbatch.QueueSize / 4): the writer takes it without waiting out the interval.
	// (Only the timing of the first write is checked loosely: the machine may be busy.)
	g.Eventually(func() uint64 { return l.Written() }, 2*time.Second, time.Millisecond).Should(BeNumerically(">=", (logbatch.QueueSize / 4)))
}

// TestEncodeMatchesEncodingJSON holds the hand-written encoder to the bytes encoding/json
// wrote for the same line: escaping (HTML, control characters, U+2028, invalid UTF-8),
// clipping, omitted fields, float formatting and the arguments.
func TestEncodeMatchesEncodingJSON(t *testing.T) {
	odd := []string{"", "plain", "<script>&amp;</script>", "tab\tnew\nline\r\b\f\x00\x1f\x7f", `quote" back\slash`,
		"bad \xff\xfe utf8", "sep \u2028 \u2029", "ünïcødé ✓ 🎉", strings.Repeat("é", 400), strings.Repeat("x", 600) + "<"}
	latencies := []time.Duration{0, time.Microsecond, 1500 * time.Microsecond, 42 * time.Millisecond, time.Hour}
	args := []json.RawMessage{nil, {}, json.RawMessage(secretArgs), json.RawMessage("{not json\n"), json.RawMessage(`{"h":"<&>"}`)}
	n := 0
	for i, s := range odd {
		for j, lat := range latencies {
			for k, a := range args {
				for _, logArgs := range []bool{false, true} {
					r := Record{
						Time: time.Date(2026, 3, 4, 5, 6, 7, i*1000+j, time.FixedZone("X", -7200)), Kind: KindToolCall,
						RequestID: s, Principal: odd[(i+1)%len(odd)], Origin: s, RemoteAddr: odd[(i+2)%len(odd)],
						Transport: s, Method: s, Tool: odd[(i+3)%len(odd)], Outcome: s, Reason: odd[(i+4)%len(odd)],
						AuthMethod: s, Latency: lat, BytesIn: i * 1000, BytesOut: -k, Arguments: a,
					}
					checkEncoding(t, r, logArgs)
					n++
				}
			}
		}
	}
	t.Logf("%d records compared", n)
}

func FuzzEncodeMatchesEncodingJSON(f *testing.F) {
	f.Add("req", "<o>", "\xff\u2028", []byte(`{"a":1}`), int64(1500), true)
	f.Add("", "", "", []byte(nil), int64(0), false)
	f.Fuzz(func(t *testing.T, reqID, origin, tool string, args []byte, latencyUS int64, logArgs bool) {
		r := Record{Time: time.Unix(1700000000, 123), Kind: KindToolCall, RequestID: reqID, Origin: origin,
			Tool: tool, Outcome: "ok", Latency: time.Duration(latencyUS) * time.Microsecond, Arguments: args}
		checkEncoding(t, r, logArgs)
	})
}

func checkEncoding(t *testing.T, r Record, logArgs bool) {
	t.Helper()
	l := &Logger{logArgs: logArgs, now: time.Now}
	got, err := l.encode(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	want := referenceEncode(t, r, logArgs)
	if !bytes.Equal(got, want) {
		t.Fatalf("encode differs from encoding/json\n got: %s\nwant: %s", got, want)
	}
}

// referenceEncode is how the logger encoded a record with encoding/json.
func referenceEncode(t *testing.T, r Record, logArgs bool) []byte {
	t.Helper()
	ln := line{
		Time: r.Time.UTC().Format(time.RFC3339Nano), Kind: clip(r.Kind), RequestID: clip(r.RequestID),
		Principal: clip(r.Principal), Origin: clip(r.Origin), RemoteAddr: clip(r.RemoteAddr),
		Transport: clip(r.Transport), Method: clip(r.Method), Tool: clip(r.Tool), Outcome: clip(r.Outcome),
		Reason: clip(r.Reason), AuthMethod: clip(r.AuthMethod),
		LatencyMS: float64(r.Latency.Microseconds()) / 1000, BytesIn: r.BytesIn, BytesOut: r.BytesOut,
	}
	if r.Arguments != nil {
		n := len(r.Arguments)
		sum := sha256.Sum256(r.Arguments)
		ln.ArgsSize, ln.ArgsSHA256 = &n, hex.EncodeToString(sum[:])
		if logArgs {
			if json.Valid(r.Arguments) {
				ln.Arguments = r.Arguments
			} else {
				q, _ := json.Marshal(string(r.Arguments))
				ln.Arguments = q
			}
		}
	}
	b, err := json.Marshal(ln)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// line is the audit line's shape as the logger wrote it with encoding/json before encode
// was written by hand; encode must produce the same bytes.
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
