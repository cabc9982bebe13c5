package server

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// doublesUpstream is a Streamable HTTP MCP server that reads JSON as JavaScript does
// (numbers are doubles) and records the methods it was asked; it lists a visible tool and
// a hidden one.
func doublesUpstream(t *testing.T) (url string, methods func() []string) {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	mux := http.NewServeMux()
	mux.HandleFunc("/mcp", func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any // the id becomes a float64, as JSON.parse makes it
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || json.Unmarshal(b, &m) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		method, _ := m["method"].(string)
		mu.Lock()
		seen = append(seen, method)
		mu.Unlock()
		id, hasID := m["id"]
		if !hasID {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		var result any = map[string]any{}
		switch method {
		case "initialize":
			w.Header().Set("Mcp-Session-Id", "s1")
			result = map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{"tools": map[string]any{}},
				"serverInfo": map[string]any{"name": "doubles", "version": "1"}}
		case "tools/list":
			result = map[string]any{"tools": []any{
				map[string]any{"name": "visible", "inputSchema": map[string]any{"type": "object"}},
				map[string]any{"name": "secret_admin", "inputSchema": map[string]any{"type": "object"}},
			}}
		}
		out, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": result})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/mcp", func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// 2^53 and 2^53+1 are one double: an upstream reading ids as JavaScript does could answer
// a pending tools/call's id with a tools/list result, which would then reach the client
// unfiltered. Integer ids beyond ±(2^53-1) are refused and never reach the upstream.
func TestIDsPeersCannotTellApartAreRefused(t *testing.T) {
	g := NewWithT(t)
	url, methods := doublesUpstream(t)
	h := startTestRuntime(t, func(c *config.Config) {
		c.Upstream.Transport, c.Upstream.URL = config.UpstreamHTTP, url
		c.Tools.Deny = []string{"secret_*"}
	}, nil)
	sid := h.open(t)
	_, body := h.call(t, sid, `{"jsonrpc":"2.0","id":9007199254740991,"method":"tools/list"}`)
	g.Expect(body).To(And(ContainSubstring(`"visible"`), ContainSubstring(`"id":9007199254740991`), Not(ContainSubstring("secret_admin"))))

	before := len(methods())
	for _, msg := range []string{
		`{"jsonrpc":"2.0","id":9007199254740992,"method":"tools/call","params":{"name":"visible","arguments":{}}}`,
		`{"jsonrpc":"2.0","id":9007199254740993,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":-9007199254740992,"method":"ping"}`,
	} {
		status, body := h.call(t, sid, msg)
		g.Expect(status).To(Equal(http.StatusBadRequest), body)
		g.Expect(body).To(And(ContainSubstring("-32600"), ContainSubstring("2^53-1")), msg)
	}
	g.Expect(methods()[before:]).To(BeEmpty(), "refused messages reached the upstream")
}
