package upstream

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// everythingServer is the go-sdk conformance server binary: $MCP_EVERYTHING_SERVER, else
// bin/everything-server-v1.8.0 under the module root. Missing is a failure, not a skip.
func everythingServer(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MCP_EVERYTHING_SERVER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("MCP_EVERYTHING_SERVER=%s: %v", p, err)
		}
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("module root not found")
		}
		dir = parent
	}
	p := filepath.Join(dir, "bin", "everything-server-v1.8.0")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("these tests run against the go-sdk conformance everything-server: set MCP_EVERYTHING_SERVER "+
			"or build it with `make test-deps` (expected at %s)", p)
	}
	return p
}

// teeCommand runs the server behind `tee`, so the test can count what the child received.
func teeCommand(t *testing.T, server string) ([]string, string) {
	log := filepath.Join(t.TempDir(), "stdin.log")
	return []string{"/bin/sh", "-c", `tee -a "$0" | "$1"`, log, server}, log
}

// received counts lines the child received that contain all of the given fragments.
func received(log string, fragments ...string) int {
	data, _ := os.ReadFile(log)
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		ok := line != ""
		for _, f := range fragments {
			ok = ok && strings.Contains(line, f)
		}
		if ok {
			n++
		}
	}
	return n
}

func testConfig() config.Upstream {
	return config.Upstream{
		Transport:      config.UpstreamStdio,
		SessionMode:    "shared",
		PoolSize:       2,
		MaxSessions:    16,
		ShutdownGrace:  config.D(2 * time.Second),
		RequestTimeout: config.D(10 * time.Second),
	}
}

func testOptions() Options {
	return Options{
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Backoff: Backoff{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond},
	}
}

// startUpstream starts u, waits until it is ready and closes it when the test ends.
func startUpstream(t *testing.T, u Upstream) {
	t.Helper()
	g := NewWithT(t)
	g.Expect(u.Start(context.Background())).To(Succeed())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = u.Close(ctx)
	})
	g.Eventually(u.Ready).WithTimeout(5 * time.Second).WithPolling(10 * time.Millisecond).Should(BeTrue())
}

// client records everything a Session delivers.
type client struct {
	t    *testing.T
	s    Session
	mu   sync.Mutex
	msgs [][]byte
	done chan struct{}
}

func newClient(t *testing.T, u Upstream) *client {
	t.Helper()
	s, err := u.NewSession(context.Background())
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return watch(t, s)
}

func watch(t *testing.T, s Session) *client {
	c := &client{t: t, s: s, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for m := range s.Messages() {
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *client) send(msg string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.s.Send(ctx, []byte(msg)); err != nil {
		c.t.Fatalf("Send %s: %v", msg, err)
	}
}

// find returns the first recorded message matching pred, or nil.
func (c *client) find(pred func(e *envelope) bool) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.msgs {
		e, err := parseEnvelope(m)
		if err == nil && pred(&e) {
			return m
		}
	}
	return nil
}

func (c *client) count(pred func(e *envelope) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.msgs {
		if e, err := parseEnvelope(m); err == nil && pred(&e) {
			n++
		}
	}
	return n
}

// responseTo matches the response whose id is byte-for-byte rawID.
func responseTo(rawID string) func(e *envelope) bool {
	return func(e *envelope) bool { return e.isResponse() && string(e.idRaw()) == rawID }
}

func method(name string) func(e *envelope) bool {
	return func(e *envelope) bool { return e.method == name }
}

// await waits for a message matching pred and returns it decoded.
func (c *client) await(pred func(e *envelope) bool, timeout time.Duration) map[string]any {
	c.t.Helper()
	var raw []byte
	NewWithT(c.t).Eventually(func() []byte {
		raw = c.find(pred)
		return raw
	}).WithTimeout(timeout).WithPolling(5 * time.Millisecond).ShouldNot(BeNil())
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		c.t.Fatalf("decoding %s: %v", raw, err)
	}
	return m
}

// text is the first text content of a tools/call result.
func text(resp map[string]any) string {
	res, _ := resp["result"].(map[string]any)
	content, _ := res["content"].([]any)
	if len(content) == 0 {
		return ""
	}
	first, _ := content[0].(map[string]any)
	s, _ := first["text"].(string)
	return s
}

func errorCode(resp map[string]any) float64 {
	e, _ := resp["error"].(map[string]any)
	code, _ := e["code"].(float64)
	return code
}

const initializeParams = `{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"test","version":"1"}}`

// --- an mcp.Transport over a Session, so the official SDK client can drive the relay ---

type sessionTransport struct{ s Session }

func (t sessionTransport) Connect(context.Context) (mcp.Connection, error) {
	return &sessionConn{s: t.s}, nil
}

type sessionConn struct{ s Session }

func (c *sessionConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	select {
	case m, ok := <-c.s.Messages():
		if !ok {
			return nil, io.EOF
		}
		return jsonrpc.DecodeMessage(m)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *sessionConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	b, err := jsonrpc.EncodeMessage(msg)
	if err != nil {
		return err
	}
	return c.s.Send(ctx, b)
}

func (c *sessionConn) Close() error      { return c.s.Close() }
func (c *sessionConn) SessionID() string { return c.s.ID() }

// startScript starts an upstream whose child is the shell script script (a fake MCP server).
func startScript(t *testing.T, cfg config.Upstream, script string) Upstream {
	t.Helper()
	u, err := NewStdio(cfg, []string{"/bin/sh", "-c", script}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	startUpstream(t, u)
	return u
}
