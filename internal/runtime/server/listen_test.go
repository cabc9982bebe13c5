package server

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// listenHTTPServer is a Streamable HTTP MCP server on 127.0.0.1 that keeps a
// subscriptions/listen stream open until the client ends it.
func listenHTTPServer(t *testing.T) string {
	return fakeHTTPUpstream(t, func(w http.ResponseWriter, r *http.Request, id json.RawMessage, method string, _ []byte) bool {
		if method != "subscriptions/listen" {
			return false
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/list_changed\",\"params\":{\"_meta\":{\"io.modelcontextprotocol/subscriptionId\":" + string(id) + "}}}\n\n"))
		w.(http.Flusher).Flush()
		tk := time.NewTicker(500 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-r.Context().Done():
				return true
			case <-tk.C:
				if _, err := w.Write([]byte(": keepalive\n\n")); err != nil {
					return true
				}
				w.(http.Flusher).Flush()
			}
		}
	})
}

// A subscriptions/listen stream lives until the client ends it: over an HTTP upstream too
// it outlives upstream.requestTimeout (3 s here), as it does over stdio (before, it was
// answered "upstream request timed out" at 3 s).
func TestAListenStreamOverAnHTTPUpstreamOutlivesTheRequestTimeout(t *testing.T) {
	up := listenHTTPServer(t)
	h := startTestRuntime(t, func(c *config.Config) {
		c.Upstream.Transport, c.Upstream.URL = config.UpstreamHTTP, up
		c.Limits.RequestsPerSecond = -1
	}, nil)
	sid := h.open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := h.post(ctx, t, sid, bothAccepted, `{"jsonrpc":"2.0","id":9,"method":"subscriptions/listen","params":{}}`)
	defer resp.Body.Close()
	ch := make(chan map[string]any, 16)
	go events(resp.Body, ch)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatal("the listen stream ended within 5 s")
			}
			if m["id"] != nil {
				t.Fatalf("the listen stream was answered within 5 s: %v", m)
			}
		case <-deadline:
			return
		}
	}
}
