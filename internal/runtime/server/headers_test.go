package server

import (
	"mime"
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/jsonrpc"
)

func TestCheckStatelessHeaders(t *testing.T) {
	const call = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"héllo","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
	const read = `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
	const list = `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
	const noMeta = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	const note = `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`
	const resp = `{"jsonrpc":"2.0","id":1,"result":{}}`
	h := func(kv ...string) http.Header {
		out := http.Header{"Mcp-Protocol-Version": {"2026-07-28"}}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	for _, tc := range []struct {
		name string
		hdr  http.Header
		body string
		code int // 0: accepted
	}{
		{"tools/call with base64 name", h("Mcp-Method", "tools/call", "Mcp-Name", "=?base64?aMOpbGxv?="), call, 0},
		{"repeated Mcp-Method", http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/list", "tools/call"}}, list, codeHeaderMismatch},
		{"repeated Mcp-Name", http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {"=?base64?aMOpbGxv?=", "other"}}, call, codeHeaderMismatch},
		{"repeated Mcp-Protocol-Version", http.Header{"Mcp-Protocol-Version": {"2026-07-28", "2025-11-25"}, "Mcp-Method": {"tools/list"}}, list, codeHeaderMismatch},
		{"tools/call plain name mismatch", h("Mcp-Method", "tools/call", "Mcp-Name", "hello"), call, codeHeaderMismatch},
		{"tools/call bad base64", h("Mcp-Method", "tools/call", "Mcp-Name", "=?base64?***?="), call, codeHeaderMismatch},
		{"tools/call without Mcp-Name", h("Mcp-Method", "tools/call"), call, codeHeaderMismatch},
		{"resources/read uri", h("Mcp-Method", "resources/read", "Mcp-Name", "file:///a"), read, 0},
		{"resources/read wrong uri", h("Mcp-Method", "resources/read", "Mcp-Name", "file:///b"), read, codeHeaderMismatch},
		{"tools/list needs no name", h("Mcp-Method", "tools/list"), list, 0},
		{"missing Mcp-Method", h(), list, codeHeaderMismatch},
		{"method mismatch", h("Mcp-Method", "tools/call"), list, codeHeaderMismatch},
		{"meta version missing", h("Mcp-Method", "tools/list"), noMeta, jsonrpc.CodeInvalidParams},
		{"meta version differs from header", http.Header{"Mcp-Protocol-Version": {"2026-08-01"}, "Mcp-Method": {"tools/list"}}, list, codeHeaderMismatch},
		{"notification needs Mcp-Method only", h("Mcp-Method", "notifications/cancelled"), note, 0},
		{"notification without Mcp-Method", h(), note, codeHeaderMismatch},
		{"responses carry no method", h(), resp, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			msgs, _, perr := jsonrpc.Parse([]byte(tc.body), jsonrpc.Options{})
			g.Expect(perr).To(BeNil())
			err := checkStatelessHeaders(tc.hdr, &msgs[0])
			if tc.code == 0 {
				g.Expect(err).To(BeNil())
				return
			}
			g.Expect(err).NotTo(BeNil())
			g.Expect(err.Code).To(Equal(tc.code))
		})
	}
}

func TestVersions(t *testing.T) {
	g := NewWithT(t)
	g.Expect(stateless("2026-07-28")).To(BeTrue())
	g.Expect(stateless("2025-11-25")).To(BeFalse())
	g.Expect(stateless("2099-01-01")).To(BeFalse(), "unknown future versions are refused, not treated as stateless")
	g.Expect(knownVersion("2024-11-05")).To(BeTrue())
	g.Expect(knownVersion("")).To(BeFalse())
}

func TestRequestIDs(t *testing.T) {
	g := NewWithT(t)
	g.Expect(saneRequestID("abc-123_x.y")).To(BeTrue())
	g.Expect(saneRequestID("")).To(BeFalse())
	g.Expect(saneRequestID("a b")).To(BeFalse())
	g.Expect(saneRequestID("x\r\nSet-Cookie: a")).To(BeFalse())
	g.Expect(saneRequestID(string(make([]byte, 65)))).To(BeFalse())
	g.Expect(newID(8)).To(HaveLen(16))
	g.Expect(newID(8)).NotTo(Equal(newID(8)))
}

func TestAcceptsStreamAndUpgradeDetection(t *testing.T) {
	g := NewWithT(t)
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Accept", "application/json, text/event-stream;q=0.9")
	g.Expect(acceptsStream(r)).To(BeTrue())
	r.Header.Set("Accept", "application/json")
	g.Expect(acceptsStream(r)).To(BeFalse())
	// Same answers as parsing each media range with mime.ParseMediaType.
	for _, accept := range [][]string{
		{" Text/Event-Stream "}, {"text/event-\u017ftream"}, {"TEXT/EVENT-STREAM"}, {"text/event-streams"}, {"text/event-stream-x"}, {"*/*"},
		{"text/*"}, {"application/json", "text/event-stream"}, {",,text/event-stream;;"},
		{"text/event-stream ; charset=utf-8"}, {"text/event"}, {""}, {"application/json;a=\"x,text/event-stream\""},
	} {
		r.Header["Accept"] = accept
		want := false
		for _, v := range accept {
			for _, part := range strings.Split(v, ",") {
				if mt, _, _ := mime.ParseMediaType(strings.TrimSpace(part)); mt == "text/event-stream" {
					want = true
				}
			}
		}
		g.Expect(acceptsStream(r)).To(Equal(want), "Accept: %q", accept)
	}
	r.Header.Del("Accept")
	r.Header.Set("Connection", "keep-alive, Upgrade")
	r.Header.Set("Upgrade", "websocket")
	g.Expect(isWebSocketUpgrade(r)).To(BeTrue())
	r.Method = http.MethodPost
	g.Expect(isWebSocketUpgrade(r)).To(BeFalse())
}
