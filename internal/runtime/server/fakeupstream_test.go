package server

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// fakeHTTPUpstream serves a minimal Streamable HTTP MCP server on 127.0.0.1: POSTs only,
// notifications get 202, initialize opens session "up1", and every other request is
// answered by answer (nil: an empty result). It returns the endpoint URL.
func fakeHTTPUpstream(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, id json.RawMessage, method string, body []byte) bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.Unmarshal(b, &m)
		switch {
		case m.ID == nil:
			w.WriteHeader(http.StatusAccepted)
		case answer != nil && answer(w, r, m.ID, m.Method, b):
		case m.Method == "initialize":
			w.Header().Set("Mcp-Session-Id", "up1")
			writeJSONResult(w, m.ID, `{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"fake","version":"1"}}`)
		default:
			writeJSONResult(w, m.ID, `{}`)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/mcp"
}

func writeJSONResult(w http.ResponseWriter, id json.RawMessage, result string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":` + result + `}`))
}
