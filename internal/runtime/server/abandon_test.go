package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// slowInitHTTPServer is a Streamable HTTP MCP server on 127.0.0.1 whose initialize takes
// 1 s when the client calls itself "slow".
func slowInitHTTPServer(t *testing.T) string {
	return fakeHTTPUpstream(t, func(w http.ResponseWriter, r *http.Request, _ json.RawMessage, method string, body []byte) bool {
		if method == "initialize" && strings.Contains(string(body), `"slow"`) {
			select {
			case <-time.After(time.Second):
			case <-r.Context().Done():
			}
		}
		return false // then the usual answer
	})
}

// A client that gives up on its initialize never learns the session id: the session is
// dropped with the request instead of holding one of the principal's session slots until
// the idle expiry (30 min), which locked the principal out after a few flaky starts.
func TestAnInitializeTheClientAbandonedFreesItsSessionSlot(t *testing.T) {
	up := slowInitHTTPServer(t)
	h := startTestRuntime(t, func(c *config.Config) {
		c.Upstream.Transport, c.Upstream.URL = config.UpstreamHTTP, up
		c.Limits.RequestsPerSecond = -1
		c.Limits.MaxConnectionsPerPrincipal = 2
	}, nil)
	initBody := func(name string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"` + name + `","version":"1"}}}`
	}
	for i := 0; i < 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.url, strings.NewReader(initBody("slow")))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", bothAccepted)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			cancel()
			t.Fatalf("initialize %d answered within 200ms (%d)", i, resp.StatusCode)
		}
		cancel()
	}
	time.Sleep(1500 * time.Millisecond) // the abandoned handlers are done (the upstream answers after 1 s)
	resp := h.post(context.Background(), t, "", bothAccepted, initBody("fast"))
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a fresh initialize after two abandoned ones: HTTP %d %s (the abandoned sessions still hold the principal's session slots)", resp.StatusCode, body)
	}
}

// A client that closes its connection once it has the initialize answer (curl,
// "Connection: close") keeps its session: only an initialize abandoned before anything of
// its answer was written frees the slot.
func TestASessionSurvivesTheClosedConnectionOfItsInitialize(t *testing.T) {
	h := startTestRuntime(t, nil, []string{everythingServer(t)})
	for i := range 20 {
		req, _ := http.NewRequest(http.MethodPost, h.url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", bothAccepted)
		req.Close = true
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		sid := resp.Header.Get("Mcp-Session-Id")
		time.Sleep(20 * time.Millisecond) // the runtime has seen the connection close
		if status, body := h.call(t, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); status != http.StatusAccepted {
			t.Fatalf("attempt %d: the session of an answered initialize is gone: HTTP %d %s", i, status, body)
		}
	}
}
