package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// burstEdit serves the given transports with no per-client rate limit (the bursts below
// would otherwise meet it first).
func burstEdit(transports ...string) func(*config.Config) {
	return func(c *config.Config) {
		if len(transports) > 0 {
			c.Endpoint.Transports = transports
		}
		c.Limits.RequestsPerSecond = -1
	}
}

// sseOpen opens the legacy SSE stream and returns the message endpoint and a channel of
// message-event data.
func sseOpen(t *testing.T, ctx context.Context, base string) (string, <-chan string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("sse status %d", resp.StatusCode)
	}
	out := make(chan string, 10000)
	ep := make(chan string, 1)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<22)
		event := ""
		for sc.Scan() {
			l := sc.Text()
			if e, ok := strings.CutPrefix(l, "event: "); ok {
				event = e
			}
			if d, ok := strings.CutPrefix(l, "data: "); ok {
				if event == "endpoint" {
					ep <- d
				} else {
					out <- d
				}
			}
		}
	}()
	select {
	case e := <-ep:
		return strings.TrimSuffix(base, "/mcp") + e, out
	case <-time.After(5 * time.Second):
		t.Fatal("no endpoint event")
	}
	return "", nil
}

func ssePost(t *testing.T, url, body string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A legacy SSE client that posts a batch of 200 pings while reading its stream gets every
// answer: an answer waits for room on the stream instead of being dropped (before, a full
// queue dropped it and the client waited forever).
func TestALegacySSEClientGetsEveryAnswerOfABurst(t *testing.T) {
	h := startTestRuntime(t, burstEdit(config.TransportStreamableHTTP, config.TransportSSE), []string{everythingServer(t)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ep, msgs := sseOpen(t, ctx, h.url)
	if st := ssePost(t, ep, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`); st != 202 {
		t.Fatalf("init status %d", st)
	}
	select {
	case <-msgs:
	case <-time.After(5 * time.Second):
		t.Fatal("no init answer")
	}
	ssePost(t, ep, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	const n = 200
	var parts []string
	for i := 1; i <= n; i++ {
		parts = append(parts, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i))
	}
	if st := ssePost(t, ep, "["+strings.Join(parts, ",")+"]"); st != 202 {
		t.Fatalf("batch status %d", st)
	}
	got := map[float64]bool{}
	timeout := time.After(6 * time.Second)
loop:
	for len(got) < n {
		select {
		case d, ok := <-msgs:
			if !ok {
				break loop
			}
			var m map[string]any
			if json.Unmarshal([]byte(d), &m) == nil {
				if id, ok := m["id"].(float64); ok {
					got[id] = true
				}
			}
		case <-timeout:
			break loop
		}
	}
	if len(got) != n {
		t.Fatalf("legacy SSE: %d of %d ping responses arrived; the rest were dropped (never answered)", len(got), n)
	}
}

// A WebSocket client that sends 200 pings at once and reads all the while gets 200
// answers (before, the 33rd queued answer closed its connection).
func TestAWebSocketClientThatReadsGetsEveryAnswerOfABurst(t *testing.T) {
	h := startTestRuntime(t, burstEdit(config.TransportStreamableHTTP, config.TransportWebSocket), []string{everythingServer(t)})
	c := dialRawWS(t, h.url)
	c.send(ws.OpText, true, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	if op, _ := c.read(); op != ws.OpText {
		t.Fatalf("op %v", op)
	}
	c.send(ws.OpText, true, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	const n = 200
	var buf bytes.Buffer
	for i := 1; i <= n; i++ {
		f := ws.MaskFrameInPlace(ws.NewFrame(ws.OpText, true, []byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i))))
		_ = ws.WriteFrame(&buf, f)
	}
	go func() { _, _ = c.conn.Write(buf.Bytes()) }()
	got := 0
	_ = c.conn.SetReadDeadline(time.Now().Add(8 * time.Second))
	for got < n {
		hd, err := ws.ReadHeader(c.conn)
		if err != nil {
			t.Fatalf("after %d of %d responses: %v", got, n, err)
		}
		p := make([]byte, hd.Length)
		if _, err := readFullFrom(c.conn, p); err != nil {
			t.Fatalf("after %d responses: %v", got, err)
		}
		switch hd.OpCode {
		case ws.OpText:
			got++
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			t.Fatalf("closed after %d of %d responses: %v %q", got, n, code, reason)
		}
	}
}

func readFullFrom(r interface{ Read([]byte) (int, error) }, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
