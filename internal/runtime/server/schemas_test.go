package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// tighteningServer lists one tool, echo, whose n may be at most 10 until the tighten tool
// is called; 300 ms later the maximum is 5 and the server says its tools changed.
const tighteningServer = `max=10
while IFS= read -r line; do
  [ -f "$STATE" ] && max=5
  id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
  [ -z "$id" ] && continue
  case "$line" in
  *'"method":"initialize"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":true}},"serverInfo":{"name":"fake","version":"1"}}}\n' "$id" ;;
  *'"method":"tools/list"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"tighten","inputSchema":{"type":"object"}},{"name":"echo","inputSchema":{"type":"object","properties":{"n":{"type":"integer","maximum":%s}}}}]}}\n' "$id" "$max" ;;
  *'"name":"tighten"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[]}}\n' "$id"
    (sleep 0.3; touch "$STATE"; printf '{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n') & ;;
  *) printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"relayed"}]}}\n' "$id" ;;
  esac
done`

// A list_changed that arrives while no client session is open still drops the cached
// schemas: the next call is validated against what the server lists now.
func TestSchemasChangedWhileNoSessionIsOpen(t *testing.T) {
	g := NewWithT(t)
	t.Setenv("STATE", filepath.Join(t.TempDir(), "tightened"))
	h := startTestRuntime(t, nil, []string{"/bin/sh", "-c", tighteningServer})
	call := func(sid, body string) string {
		resp := h.post(context.Background(), t, sid, "application/json", body)
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	a := h.open(t)
	g.Expect(call(a, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"n":7}}}`)).To(ContainSubstring("relayed"))
	g.Expect(call(a, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"tighten","arguments":{}}}`)).To(ContainSubstring("result"))
	req, _ := http.NewRequest(http.MethodDelete, h.url, nil)
	req.Header.Set("Mcp-Session-Id", a)
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	time.Sleep(time.Second) // list_changed arrives now, with no session open

	b := h.open(t)
	g.Expect(call(b, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"n":7}}}`)).
		To(And(ContainSubstring("-32602"), Not(ContainSubstring("relayed"))), "validated against maximum 5")
}

// A lone case variant of a declared argument ({"N":999} where the schema constrains "n")
// is one more allowed property to JSON Schema, but a Go upstream decoding into a struct
// reads it as n: it is refused and never reaches the upstream.
func TestACaseVariantOfADeclaredArgumentNeverReachesTheUpstream(t *testing.T) {
	g := NewWithT(t)
	t.Setenv("STATE", filepath.Join(t.TempDir(), "never"))
	h := startTestRuntime(t, nil, []string{"/bin/sh", "-c", tighteningServer})
	sid := h.open(t)
	_, body := h.call(t, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"n":7}}}`)
	g.Expect(body).To(ContainSubstring("relayed"))
	for id, args := range map[int]string{3: `{"N":999}`, 4: `{"n":1,"N":999}`} {
		_, body = h.call(t, sid, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":%s}}`, id, args))
		g.Expect(body).To(And(ContainSubstring("-32602"), ContainSubstring(`at /N: key \"N\"`), Not(ContainSubstring("relayed"))), args)
	}
}
