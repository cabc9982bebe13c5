package runtime_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/testutil"
)

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// wsDial opens an MCP WebSocket (subprotocol mcp) with optional headers and query.
func (r *rt) wsDial(ctx context.Context, query string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	u := "wss://" + r.addr + "/mcp" + query
	return websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient:   r.client(),
		HTTPHeader:   hdr,
		Subprotocols: []string{"mcp"},
	})
}

func closeStatus(err error) websocket.StatusCode { return websocket.CloseStatus(err) }

// wsCall sends one message and reads frames until the response with the given id.
func wsCall(ctx context.Context, t *testing.T, c *websocket.Conn, msg string, id string) string {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var m struct {
			ID json.RawMessage `json:"id"`
		}
		_ = json.Unmarshal(data, &m)
		if string(m.ID) == id {
			return string(data)
		}
	}
}

func TestForeignOriginIsRefusedBeforeAnyUpstreamWork(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, nil)
	tok := k.token(t, "alice", nil)
	sessionsBefore := r.up.Sessions()

	// POST
	resp, body := r.post(t, initBody, map[string]string{"Authorization": "Bearer " + tok, "Origin": foreignOrigin})
	g.Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
	g.Expect(body).To(ContainSubstring("origin_not_allowed"))

	// SSE GET (legacy stream)
	req, _ := http.NewRequest(http.MethodGet, r.url("/mcp/sse"), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Origin", foreignOrigin)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := r.client().Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusForbidden))

	// WebSocket upgrade: 403, no 101
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, wsResp, err := r.wsDial(ctx, "", http.Header{"Authorization": {"Bearer " + tok}, "Origin": {foreignOrigin}})
	g.Expect(err).To(HaveOccurred())
	g.Expect(wsResp).NotTo(BeNil())
	g.Expect(wsResp.StatusCode).To(Equal(http.StatusForbidden))

	g.Expect(r.up.Sessions()).To(Equal(sessionsBefore), "no upstream session was opened")
	g.Expect(r.up.Sent("initialize")).To(BeEmpty())

	// The allowed Origin passes and gets CORS headers.
	resp, _ = r.post(t, initBody, map[string]string{"Authorization": "Bearer " + tok, "Origin": allowedOrigin})
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(resp.Header.Get("Access-Control-Allow-Origin")).To(Equal(allowedOrigin))
}

// Without a public URL the metadata document names the request's host: a rebinding DNS
// name must not get to choose it (and be cached under it), while any Origin may read it.
func TestMetadataDocumentChecksTheHost(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) {
		c.Endpoint.PublicURL = ""
		c.Auth.JWT[0].Audiences = []string{publicURL}
	})
	get := func(host, origin string) (*http.Response, map[string]any) {
		req, err := http.NewRequest(http.MethodGet, r.url("/.well-known/oauth-protected-resource"), nil)
		g.Expect(err).NotTo(HaveOccurred())
		req.Host = host
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := r.client().Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = resp.Body.Close() }()
		var doc map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&doc)
		return resp, doc
	}

	resp, doc := get("rebind.attacker.example", "")
	g.Expect(resp.StatusCode).To(Equal(http.StatusMisdirectedRequest))
	g.Expect(doc).To(HaveKeyWithValue("error", "host_not_allowed"))
	g.Expect(r.metrics(t)).To(MatchRegexp(`mcp_runtime_origin_rejections_total\{reason="host"\} 1\b`))

	resp, doc = get(r.addr, "https://some-other-site.example")
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(doc).To(HaveKeyWithValue("resource", "https://"+r.addr))
}

func TestAuthenticationFailures(t *testing.T) {
	k := newKeys(t)
	r := start(t, k, nil)

	t.Run("no token: 401 with resource metadata", func(t *testing.T) {
		g := NewWithT(t)
		resp, _ := r.post(t, initBody, nil)
		g.Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
		g.Expect(resp.Header.Get("WWW-Authenticate")).To(ContainSubstring(`resource_metadata="https://mcp.test/.well-known/oauth-protected-resource"`))
		// The metadata document itself is public.
		mresp, err := r.client().Get(r.url("/.well-known/oauth-protected-resource"))
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = mresp.Body.Close() }()
		var doc map[string]any
		g.Expect(json.NewDecoder(mresp.Body).Decode(&doc)).To(Succeed())
		g.Expect(doc).To(HaveKeyWithValue("resource", publicURL))
	})

	for _, tc := range []struct {
		name  string
		token func() string
	}{
		{"expired", func() string {
			return k.token(t, "alice", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })
		}},
		{"wrong audience", func() string {
			return k.token(t, "alice", func(c jwt.MapClaims) { c["aud"] = "https://other.test" })
		}},
		{"wrong issuer", func() string {
			return k.token(t, "alice", func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })
		}},
		{"signed by another key", func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": issuer, "sub": "alice", "aud": publicURL, "exp": time.Now().Add(time.Hour).Unix()}).SignedString(k.otherKey)
			return s
		}},
		{"alg none", func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": issuer, "sub": "alice", "aud": publicURL, "exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
			return s
		}},
		{"HS256 with the public key as secret", func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": issuer, "sub": "alice", "aud": publicURL, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("not-a-secret"))
			return s
		}},
		{"garbage", func() string { return "not.a.jwt" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			resp, _ := r.post(t, initBody, map[string]string{"Authorization": "Bearer " + tc.token()})
			g.Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
			g.Expect(resp.Header.Get("WWW-Authenticate")).To(ContainSubstring(`error="invalid_token"`))
		})
	}
	NewWithT(t).Expect(r.up.Sent("initialize")).To(BeEmpty(), "no unauthenticated message reached the upstream")
}

// ticket asks /auth/ticket for a WebSocket ticket from origin.
func (r *rt) ticket(t *testing.T, token, origin string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.url("/auth/ticket"), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Origin", origin)
	resp, err := r.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out struct {
		Ticket string `json:"ticket"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil || out.Ticket == "" {
		t.Fatalf("ticket: status %d", resp.StatusCode)
	}
	return out.Ticket
}

func TestWebSocketTicketIsSingleUseAndBoundToOrigin(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, nil)
	tok := k.token(t, "alice", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	origin := http.Header{"Origin": {allowedOrigin}}

	ticket := r.ticket(t, tok, allowedOrigin)
	c, _, err := r.wsDial(ctx, "?ticket="+ticket, origin)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Subprotocol()).To(Equal("mcp"))
	resp := wsCall(ctx, t, c, initBody, "1")
	g.Expect(resp).To(ContainSubstring(`"protocolVersion"`))
	g.Expect(c.Write(ctx, websocket.MessageText, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))).To(Succeed())
	resp = wsCall(ctx, t, c, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_simple_text","arguments":{}}}`, "2")
	g.Expect(resp).To(ContainSubstring("simple text"))
	_ = c.Close(websocket.StatusNormalClosure, "")

	// Replay of the same ticket: refused at the upgrade.
	_, hresp, err := r.wsDial(ctx, "?ticket="+ticket, origin)
	g.Expect(err).To(HaveOccurred())
	g.Expect(hresp.StatusCode).To(Equal(http.StatusUnauthorized))

	// A ticket issued to one Origin is no good from another allowed page... or none.
	other := r.ticket(t, tok, allowedOrigin)
	_, hresp, err = r.wsDial(ctx, "?ticket="+other, http.Header{})
	g.Expect(err).To(HaveOccurred())
	g.Expect(hresp.StatusCode).To(Equal(http.StatusUnauthorized))
	g.Expect(r.logs.String()).NotTo(ContainSubstring(other), "tickets never reach the logs")
	g.Expect(r.logs.String()).NotTo(ContainSubstring(tok), "tokens never reach the logs")
}

func TestWebSocketFirstMessageAuth(t *testing.T) {
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) { c.Auth.WebSocket.FirstMessage.Timeout = config.D(300 * time.Millisecond) })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	t.Run("auth frame then MCP", func(t *testing.T) {
		g := NewWithT(t)
		c, _, err := r.wsDial(ctx, "", nil)
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = c.CloseNow() }()
		g.Expect(c.Write(ctx, websocket.MessageText, []byte(`{"type":"auth","token":"`+k.token(t, "bob", nil)+`"}`))).To(Succeed())
		g.Expect(wsCall(ctx, t, c, initBody, "1")).To(ContainSubstring(`"serverInfo"`))
	})
	t.Run("no auth frame: closed 1008", func(t *testing.T) {
		g := NewWithT(t)
		c, _, err := r.wsDial(ctx, "", nil)
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = c.CloseNow() }()
		_, _, err = c.Read(ctx) // we send nothing: the server gives up after the timeout
		g.Expect(closeStatus(err)).To(Equal(websocket.StatusPolicyViolation))
	})
	t.Run("auth frame over MaxFirstMessageBytes: closed 1009 unread", func(t *testing.T) {
		// Below limits.maxMessageBytes, but a socket that has not authenticated gets no
		// more room than a token needs.
		g := NewWithT(t)
		c, _, err := r.wsDial(ctx, "", nil)
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = c.CloseNow() }()
		_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"auth","token":"`+strings.Repeat("a", 64<<10)+`"}`))
		_, _, err = c.Read(ctx)
		g.Expect(closeStatus(err)).To(Equal(websocket.StatusMessageTooBig))
	})
	t.Run("MCP instead of auth: closed 1008", func(t *testing.T) {
		g := NewWithT(t)
		c, _, err := r.wsDial(ctx, "", nil)
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = c.CloseNow() }()
		g.Expect(c.Write(ctx, websocket.MessageText, []byte(initBody))).To(Succeed())
		_, _, err = c.Read(ctx)
		g.Expect(closeStatus(err)).To(Equal(websocket.StatusPolicyViolation))
	})
	NewWithT(t).Expect(r.up.Sent(`"clientInfo":{"name":"raw"`)).To(HaveLen(1), "only the authenticated socket reached the upstream")
	// Every refused socket left an auth decision in the audit log, the ones closed before
	// their first frame was checked included.
	NewWithT(t).Eventually(func() []string {
		return auditValues(r.auditLines(t), "reason", map[string]string{"kind": "auth", "authMethod": "first-message", "outcome": "deny", "transport": "websocket"})
	}, 5*time.Second).Should(ContainElements("first_message_timeout", "first_message_unread", "bad_first_message"))
}

// auditValues returns field of the audit records whose fields equal every one in where.
func auditValues(lines []map[string]any, field string, where map[string]string) []string {
	var out []string
next:
	for _, l := range lines {
		for k, v := range where {
			if l[k] != v {
				continue next
			}
		}
		s, _ := l[field].(string)
		out = append(out, s)
	}
	return out
}

// Upgrade headers are not a credential: only a WebSocket upgrade of the endpoint may
// authenticate with a ticket or its first message. The same headers on the legacy SSE
// stream, on a non-WebSocket method or on another path are an unauthenticated request.
func TestUpgradeHeadersAloneAuthenticateNothing(t *testing.T) {
	k := newKeys(t)
	r := start(t, k, nil)
	tok := k.token(t, "alice", nil)
	get := func(t *testing.T, path string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, r.url(path), nil)
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Origin", allowedOrigin)
		req.Header.Set("Accept", "text/event-stream")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := r.client().Do(req.WithContext(ctx))
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	t.Run("legacy SSE stream, no credentials", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(get(t, "/mcp/sse")).To(Equal(http.StatusUnauthorized))
		g.Expect(r.up.Sessions()).To(BeZero(), "no upstream session for an unauthenticated request")
	})
	t.Run("legacy SSE stream with a ticket", func(t *testing.T) {
		g := NewWithT(t)
		ticket := r.ticket(t, tok, allowedOrigin)
		g.Expect(get(t, "/mcp/sse?ticket="+ticket)).To(Equal(http.StatusUnauthorized))
		g.Expect(r.up.Sessions()).To(BeZero(), "no upstream session for an unauthenticated request")
		// Refused without being spent: the ticket still opens the WebSocket it was made for.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := r.wsDial(ctx, "?ticket="+ticket, http.Header{"Origin": {allowedOrigin}})
		g.Expect(err).NotTo(HaveOccurred())
		_ = c.Close(websocket.StatusNormalClosure, "")
	})
}

// An open WebSocket holds a connection slot of its principal for as long as it is open —
// one authenticated by its first message too, once it has — so the per-principal cap
// bounds sockets as it bounds streams.
func TestWebSocketsCountAgainstThePerPrincipalConnectionLimit(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) { c.Limits.MaxConnectionsPerPrincipal = 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	bearer := http.Header{"Authorization": {"Bearer " + k.token(t, "alice", nil)}}
	a, _, err := r.wsDial(ctx, "", bearer)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = a.CloseNow() }()
	b, _, err := r.wsDial(ctx, "", bearer)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(wsCall(ctx, t, b, initBody, "1")).To(ContainSubstring(`"serverInfo"`))

	_, resp, err := r.wsDial(ctx, "", bearer)
	g.Expect(err).To(HaveOccurred(), "a third socket of alice's")
	g.Expect(resp.StatusCode).To(Equal(http.StatusTooManyRequests))

	// Alice's first-message socket is admitted under its address, then refused (1013)
	// once it turns out to be alice's third connection.
	c, _, err := r.wsDial(ctx, "", nil)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = c.CloseNow() }()
	g.Expect(c.Write(ctx, websocket.MessageText, []byte(`{"type":"auth","token":"`+k.token(t, "alice", nil)+`"}`))).To(Succeed())
	_, _, err = c.Read(ctx)
	g.Expect(closeStatus(err)).To(Equal(websocket.StatusCode(1013)))

	// Closing one frees its slot.
	g.Expect(b.Close(websocket.StatusNormalClosure, "")).To(Succeed())
	g.Eventually(func() error {
		d, _, err := r.wsDial(ctx, "", bearer)
		if err == nil {
			_ = d.CloseNow()
		}
		return err
	}).Should(Succeed())
}

func TestWebSocketFrameLimits(t *testing.T) {
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) { c.Limits.MaxMessageBytes = 4096 })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	auth := http.Header{"Authorization": {"Bearer " + k.token(t, "alice", nil)}}

	t.Run("oversized frame: 1009", func(t *testing.T) {
		g := NewWithT(t)
		c, _, err := r.wsDial(ctx, "", auth)
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = c.CloseNow() }()
		big := `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", 5000) + `"}}`
		_ = c.Write(ctx, websocket.MessageText, []byte(big))
		_, _, err = c.Read(ctx)
		g.Expect(closeStatus(err)).To(Equal(websocket.StatusMessageTooBig))
	})
	t.Run("binary frame: 1003", func(t *testing.T) {
		g := NewWithT(t)
		c, _, err := r.wsDial(ctx, "", auth)
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = c.CloseNow() }()
		g.Expect(c.Write(ctx, websocket.MessageBinary, []byte(initBody))).To(Succeed())
		_, _, err = c.Read(ctx)
		g.Expect(closeStatus(err)).To(Equal(websocket.StatusUnsupportedData))
	})
	t.Run("no mcp subprotocol: refused before the upgrade", func(t *testing.T) {
		g := NewWithT(t)
		_, resp, err := websocket.Dial(ctx, "wss://"+r.addr+"/mcp", &websocket.DialOptions{HTTPClient: r.client(), HTTPHeader: auth})
		g.Expect(err).To(HaveOccurred())
		g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
	})
	t.Run("invalid JSON-RPC in a frame: error frame, socket stays", func(t *testing.T) {
		g := NewWithT(t)
		c, _, err := r.wsDial(ctx, "", auth)
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = c.CloseNow() }()
		g.Expect(c.Write(ctx, websocket.MessageText, []byte(`{"jsonrpc":"2.0","id":7,"method":`))).To(Succeed())
		_, data, err := c.Read(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		code, _, _ := rpcError(t, string(data))
		g.Expect(code).To(Equal(-32700))
		g.Expect(wsCall(ctx, t, c, initBody, "1")).To(ContainSubstring(`"serverInfo"`))
	})
}

func TestMalformedAndOversizedInput(t *testing.T) {
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) { c.Limits.MaxMessageBytes = 4096; c.Limits.MaxDepth = 16 })
	tok := k.token(t, "alice", nil)
	sid := r.initSession(t, tok)
	h := r.sessionHeaders(tok, sid)
	sentBefore := len(r.up.Sent(""))

	for _, tc := range []struct {
		name   string
		body   string
		status int
		code   int
	}{
		{"deep nesting", `{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{"a":` + strings.Repeat(`[`, 40) + strings.Repeat(`]`, 40) + `}}`, 400, -32600},
		{"invalid UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/list\",\"params\":{\"a\":\"\xff\xfe\"}}", 400, -32700},
		{"not JSON", `{"jsonrpc":"2.0",`, 400, -32700},
		{"batch in 2025-11-25", `[{"jsonrpc":"2.0","id":5,"method":"tools/list"}]`, 400, -32600},
		{"wrong jsonrpc version", `{"jsonrpc":"1.0","id":5,"method":"tools/list"}`, 400, -32600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			resp, body := r.post(t, tc.body, h)
			g.Expect(resp.StatusCode).To(Equal(tc.status), body)
			code, _, _ := rpcError(t, body)
			g.Expect(code).To(Equal(tc.code))
		})
	}
	t.Run("oversized body: 413", func(t *testing.T) {
		g := NewWithT(t)
		resp, _ := r.post(t, `{"jsonrpc":"2.0","id":5,"method":"ping","params":{"x":"`+strings.Repeat("a", 5000)+`"}}`, h)
		g.Expect(resp.StatusCode).To(Equal(http.StatusRequestEntityTooLarge))
	})
	t.Run("oversized chunked body: 413", func(t *testing.T) {
		g := NewWithT(t)
		req, _ := http.NewRequest(http.MethodPost, r.url("/mcp"), io.MultiReader(strings.NewReader(`{"x":"`), strings.NewReader(strings.Repeat("a", 5000))))
		req.ContentLength = -1 // chunked: the limit must hold while reading, too
		req.Header.Set("Content-Type", "application/json")
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := r.client().Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusRequestEntityTooLarge))
	})
	t.Run("unknown session: 404", func(t *testing.T) {
		g := NewWithT(t)
		resp, _ := r.post(t, `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`, r.sessionHeaders(tok, "nope"))
		g.Expect(resp.StatusCode).To(Equal(http.StatusNotFound))
	})
	t.Run("another principal's session: 404", func(t *testing.T) {
		g := NewWithT(t)
		resp, _ := r.post(t, `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`, r.sessionHeaders(k.token(t, "mallory", nil), sid))
		g.Expect(resp.StatusCode).To(Equal(http.StatusNotFound))
	})
	t.Run("no session id after initialize: 400", func(t *testing.T) {
		g := NewWithT(t)
		resp, _ := r.post(t, `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`, map[string]string{"Authorization": "Bearer " + tok})
		g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
	})
	t.Run("unsupported protocol version header: 400", func(t *testing.T) {
		g := NewWithT(t)
		hh := r.sessionHeaders(tok, sid)
		hh["Mcp-Protocol-Version"] = "1999-01-01"
		resp, _ := r.post(t, `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`, hh)
		g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
	})
	NewWithT(t).Expect(r.up.Sent("")).To(HaveLen(sentBefore), "nothing refused reached the upstream")

	t.Run("session still works after the refusals; DELETE ends it", func(t *testing.T) {
		g := NewWithT(t)
		resp, body := r.post(t, `{"jsonrpc":"2.0","id":6,"method":"tools/list"}`, h)
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		g.Expect(body).To(ContainSubstring("test_simple_text"))
		g.Expect(r.deleteSession(t, h)).To(Equal(http.StatusNoContent))
		resp, _ = r.post(t, `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`, h)
		g.Expect(resp.StatusCode).To(Equal(http.StatusNotFound))
	})
}

func TestStatelessHeaderBodyMismatch(t *testing.T) {
	k := newKeys(t)
	r := start(t, k, nil)
	tok := k.token(t, "alice", nil)
	call := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"test_simple_text","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	base := func() map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, "Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "test_simple_text"}
	}
	for _, tc := range []struct {
		name string
		edit func(map[string]string)
		body string
	}{
		{"missing Mcp-Method", func(h map[string]string) { delete(h, "Mcp-Method") }, call},
		{"Mcp-Method differs", func(h map[string]string) { h["Mcp-Method"] = "tools/list" }, call},
		{"missing Mcp-Name", func(h map[string]string) { delete(h, "Mcp-Name") }, call},
		{"Mcp-Name differs", func(h map[string]string) { h["Mcp-Name"] = "test_error_handling" }, call},
		{"_meta version differs from header", func(map[string]string) {}, strings.Replace(call, `"2026-07-28",`, `"2025-11-25",`, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			h := base()
			tc.edit(h)
			resp, body := r.post(t, tc.body, h)
			g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
			code, _, _ := rpcError(t, body)
			g.Expect(code).To(Equal(-32020))
		})
	}
	g := NewWithT(t)
	// A case variant of _meta: an upstream decoding into a Go struct reads the last one.
	resp, body := r.post(t, strings.Replace(call, `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"`,
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"},"_META":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"`, 1), base())
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest), body)
	g.Expect(body).To(ContainSubstring("keys are case-sensitive"))
	g.Expect(r.up.Sent("tools/call")).To(BeEmpty(), "mismatched requests never reach the upstream")
	g.Eventually(func() []string {
		return auditValues(r.auditLines(t), "method", map[string]string{"kind": "tool_call", "outcome": "refused", "reason": "header_mismatch"})
	}, 5*time.Second).Should(HaveLen(6), "every refused call is audited")
	resp, body = r.post(t, call, base())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(body).To(ContainSubstring("simple text"))
	g.Expect(resp.Header.Get("Mcp-Session-Id")).To(BeEmpty(), "the stateless revision has no sessions")
}

// Under the stateless revision a JSON-RPC error also sets the HTTP status (SEP-2575). A stdio
// server cannot set it, so the runtime does, for the server's errors and its own alike; and
// it refuses the initialize the revision removed instead of answering it from its cache.
func TestStatelessErrorsCarryTheirHTTPStatus(t *testing.T) {
	k := newKeys(t)
	r := start(t, k, nil)
	tok := k.token(t, "alice", nil)
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
	for _, tc := range []struct {
		name, method, name2, params string
		status, code                int
	}{
		{"unknown method (the server's -32601)", "nope/nothing", "", `{` + meta + `}`, http.StatusNotFound, -32601},
		{"removed initialize", "initialize", "", `{"protocolVersion":"2026-07-28","capabilities":{},"clientInfo":{"name":"x","version":"1"},` + meta + `}`, http.StatusNotFound, -32601},
		{"invalid arguments (the runtime's -32602)", "tools/call", "json_schema_2020_12_tool", `{"name":"json_schema_2020_12_tool","arguments":{"name":5},` + meta + `}`, http.StatusBadRequest, -32602},
		{"missing client capabilities (the server's -32021)", "tools/call", "test_missing_capability", `{"name":"test_missing_capability","arguments":{},` + meta + `}`, http.StatusBadRequest, -32021},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			h := map[string]string{"Authorization": "Bearer " + tok, "Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": tc.method}
			if tc.name2 != "" {
				h["Mcp-Name"] = tc.name2
			}
			resp, body := r.post(t, `{"jsonrpc":"2.0","id":41,"method":"`+tc.method+`","params":`+tc.params+`}`, h)
			g.Expect(resp.StatusCode).To(Equal(tc.status), body)
			code, _, _ := rpcError(t, body)
			g.Expect(code).To(Equal(tc.code), body)
			g.Expect(body).To(ContainSubstring(`"id":41`))
		})
	}

	t.Run("unsupported protocol version", func(t *testing.T) {
		g := NewWithT(t)
		resp, body := r.post(t, `{"jsonrpc":"2.0","id":301,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"v999"}}}`,
			map[string]string{"Authorization": "Bearer " + tok, "Mcp-Protocol-Version": "v999", "Mcp-Method": "server/discover"})
		g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
		code, _, data := rpcError(t, body)
		g.Expect(code).To(Equal(-32022))
		g.Expect(body).To(ContainSubstring(`"id":301`))
		var d struct {
			Supported []string `json:"supported"`
			Requested string   `json:"requested"`
		}
		g.Expect(json.Unmarshal(data, &d)).To(Succeed())
		g.Expect(d.Requested).To(Equal("v999"))
		g.Expect(d.Supported).To(HaveExactElements("2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"))
	})

	// The session-era revision keeps 200 for JSON-RPC errors.
	g := NewWithT(t)
	sid := r.initSession(t, tok)
	resp, body := r.post(t, `{"jsonrpc":"2.0","id":42,"method":"nope/nothing"}`, r.sessionHeaders(tok, sid))
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), body)
}

// The everything-server's test_x_mcp_header tool mirrors its "region" argument into
// Mcp-Param-Region (SEP-2243). Behind a stdio upstream only the runtime sees that header,
// so it alone can refuse a request whose header says one thing and body another.
func TestStatelessParamHeadersMustMirrorArguments(t *testing.T) {
	k := newKeys(t)
	r := start(t, k, nil)
	tok := k.token(t, "alice", nil)
	call := func(args string) string {
		return `{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"test_x_mcp_header","arguments":` + args +
			`,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	}
	headers := func(kv ...string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + tok, "Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "test_x_mcp_header"}
		for i := 0; i < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	hello := "=?base64?" + base64.StdEncoding.EncodeToString([]byte("Hello, 世界")) + "?="
	for _, tc := range []struct {
		name, args string
		header     []string
	}{
		{"argument without its header", `{"region":"us-west1"}`, nil},
		{"header differs from argument", `{"region":"us-west1"}`, []string{"Mcp-Param-Region", "eu-central1"}},
		{"header without its argument", `{"level":3}`, []string{"Mcp-Param-Region", "us-west1"}},
		{"Base64 without padding", `{"region":"Hello"}`, []string{"Mcp-Param-Region", "=?base64?SGVsbG8?="}},
		{"Base64 with foreign characters", `{"region":"Hello"}`, []string{"Mcp-Param-Region", "=?base64?SGVs!!!bG8=?="}},
		{"Base64 of another value", `{"region":"Hello, world"}`, []string{"Mcp-Param-Region", hello}},
		// The schema declares "region": its case variant is refused before the headers are
		// compared (a Go server would read it as region).
		{"argument in another letter case", `{"REGION":"eu-central1"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			resp, body := r.post(t, call(tc.args), headers(tc.header...))
			g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest), body)
			code, msg, _ := rpcError(t, body)
			if strings.Contains(tc.args, "REGION") {
				g.Expect(code).To(Equal(-32602))
				g.Expect(msg).To(ContainSubstring(`key "REGION" differs from the declared property "region" only in letter case`))
				return
			}
			g.Expect(code).To(Equal(-32020))
			g.Expect(msg).To(ContainSubstring("Mcp-Param-Region"))
		})
	}
	g := NewWithT(t)
	g.Expect(r.up.Sent("test_x_mcp_header")).To(BeEmpty(), "mismatched requests never reach the upstream")
	for _, ok := range []struct{ args, value string }{
		{`{"region":"us-west1","level":3}`, "us-west1"},
		{`{"region":"Hello, 世界"}`, hello},
		{`{"region":"=?base64?SGVsbG8="}`, "=?base64?SGVsbG8="}, // no suffix: a literal value
		{`{"level":3}`, ""},
	} {
		h := headers()
		if ok.value != "" {
			h["mcp-param-region"] = ok.value // header names are case-insensitive
		}
		resp, body := r.post(t, call(ok.args), h)
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK), ok.args+": "+body)
		g.Expect(body).NotTo(ContainSubstring(`"error"`), ok.args)
	}
	g.Expect(r.up.Sent("test_x_mcp_header")).To(HaveLen(4))
}

// With argument validation off the runtime still learns each tool's annotations before a
// 2026-07-28 call (nothing listed yet here), and refuses a call it cannot check.
func TestParamHeadersWithoutArgumentValidation(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) { c.Tools.SkipArgumentValidation = true })
	tok := k.token(t, "alice", nil)
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
	h := func(tool string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, "Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": tool}
	}
	resp, body := r.post(t, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"test_x_mcp_header","arguments":{"region":"eu"},`+meta+`}}`, h("test_x_mcp_header"))
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest), body)
	code, _, _ := rpcError(t, body)
	g.Expect(code).To(Equal(-32020))

	resp, body = r.post(t, `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"no_such_tool","arguments":{},`+meta+`}}`, h("no_such_tool"))
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest), body)
	code, msg, _ := rpcError(t, body)
	g.Expect(code).To(Equal(-32602))
	g.Expect(msg).To(ContainSubstring("unknown tool"))
	g.Expect(r.up.Sent(`"tools/call"`)).To(BeEmpty(), "neither call reached the upstream")
}

func TestSchemaInvalidArgumentsNeverReachTheUpstream(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, nil)
	tok := k.token(t, "alice", nil)
	sid := r.initSession(t, tok)
	// No tools/list first: the runtime must learn the schema itself before deciding.
	resp, body := r.post(t, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"json_schema_2020_12_tool","arguments":{"name":"Ada","address":{"street":7}}}}`, r.sessionHeaders(tok, sid))
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	code, msg, data := rpcError(t, body)
	g.Expect(code).To(Equal(-32602))
	g.Expect(msg).To(ContainSubstring("/address/street"))
	g.Expect(string(data)).To(ContainSubstring(`"path":"/address/street"`))
	g.Expect(r.up.Sent("json_schema_2020_12_tool")).To(BeEmpty())

	g.Eventually(func() []map[string]any { return r.auditLines(t) }).Should(ContainElement(And(
		HaveKeyWithValue("kind", "tool_call"), HaveKeyWithValue("tool", "json_schema_2020_12_tool"),
		HaveKeyWithValue("outcome", "refused"), HaveKeyWithValue("principal", "alice"))))
	audit, _ := os.ReadFile(r.cfg.Audit.File)
	g.Expect(string(audit)).NotTo(ContainSubstring(tok), "no token in the audit log")
	g.Expect(string(audit)).NotTo(ContainSubstring(`"street":7`), "arguments are hashed unless logArguments")
	g.Expect(r.metrics(t)).To(MatchRegexp(`validation_failures_total\{[^}]*invalid_arguments[^}]*\} 1`))
}

// A principal holds at most limits.maxConnectionsPerPrincipal sessions: sessions outlive
// their requests, and one caller must not use up what the runtime can hold for everyone.
func TestSessionsPerPrincipalAreCapped(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) { c.Limits.MaxConnectionsPerPrincipal = 2 })
	alice := k.token(t, "alice", nil)
	first := r.initSession(t, alice)
	r.initSession(t, alice)
	resp, body := r.post(t, initBody, map[string]string{"Authorization": "Bearer " + alice})
	g.Expect(resp.StatusCode).To(Equal(http.StatusTooManyRequests), body)
	g.Expect(resp.Header.Get("Retry-After")).NotTo(BeEmpty())
	r.initSession(t, k.token(t, "bob", nil)) // others are not affected

	g.Expect(r.deleteSession(t, r.sessionHeaders(alice, first))).To(Equal(http.StatusNoContent))
	r.initSession(t, alice) // the ended session's place is free again
}

// In per-session mode a principal holds at most upstream.maxSessionsPerPrincipal processes,
// over every transport: the pool is small, and one caller must not take it from the others.
func TestPerSessionProcessesPerPrincipalAreCapped(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) {
		c.Upstream.SessionMode, c.Upstream.PoolSize, c.Upstream.MaxSessions, c.Upstream.MaxSessionsPerPrincipal = "per-session", 1, 4, 2
	})
	alice := k.token(t, "alice", nil)
	first := r.initSession(t, alice)
	r.initSession(t, alice)
	resp, body := r.post(t, initBody, map[string]string{"Authorization": "Bearer " + alice})
	g.Expect(resp.StatusCode).To(Equal(http.StatusTooManyRequests), body)
	g.Expect(resp.Header.Get("Retry-After")).NotTo(BeEmpty())
	g.Expect(body).To(ContainSubstring("too many sessions"))

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, _, err := r.wsDial(ctx, "", http.Header{"Authorization": {"Bearer " + alice}})
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = c.CloseNow() }()
	_, _, err = c.Read(ctx)
	g.Expect(closeStatus(err)).To(Equal(websocket.StatusCode(1013)), "a WebSocket needs a process too")

	r.initSession(t, k.token(t, "bob", nil)) // others still get theirs

	g.Expect(r.deleteSession(t, r.sessionHeaders(alice, first))).To(Equal(http.StatusNoContent))
	// The ended session's process is hers to take again (once it has exited: until then
	// the pool of 4 may be full, which is 503, not her share's 429).
	g.Eventually(func() int {
		resp, _ := r.post(t, initBody, map[string]string{"Authorization": "Bearer " + alice})
		return resp.StatusCode
	}, 10*time.Second, 50*time.Millisecond).Should(Equal(http.StatusOK))
}

func TestRateLimitBurst(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) { c.Limits.RequestsPerSecond = 0.5; c.Limits.Burst = 3 })
	tok := k.token(t, "alice", nil)
	statuses := map[int]int{}
	var retryAfter string
	for range 6 {
		resp, _ := r.post(t, initBody, map[string]string{"Authorization": "Bearer " + tok})
		statuses[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests {
			retryAfter = resp.Header.Get("Retry-After")
		}
	}
	g.Expect(statuses[http.StatusOK]).To(Equal(3))
	g.Expect(statuses[http.StatusTooManyRequests]).To(Equal(3))
	g.Expect(retryAfter).To(MatchRegexp(`^[1-9][0-9]*$`))
}

// Guessing credentials is bounded per client: failed authentications are charged to the
// client IP's bucket, and once it is empty the runtime answers 429 without verifying
// anything (no signature check, no key lookup) — but a token it verified earlier still works.
func TestFailedAuthenticationsAreRateLimitedPerClient(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) { c.Limits.RequestsPerSecond, c.Limits.Burst = 0.5, 3 })
	alice := k.token(t, "alice", nil)
	resp, _ := r.post(t, initBody, map[string]string{"Authorization": "Bearer " + alice})
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))

	forged, _ := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": issuer, "sub": "mallory", "aud": publicURL, "exp": time.Now().Add(time.Hour).Unix()}).SignedString(k.otherKey)
	for range 3 {
		resp, _ = r.post(t, initBody, map[string]string{"Authorization": "Bearer " + forged})
		g.Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
	}
	resp, body := r.post(t, initBody, map[string]string{"Authorization": "Bearer " + forged})
	g.Expect(resp.StatusCode).To(Equal(http.StatusTooManyRequests), body)
	g.Expect(resp.Header.Get("Retry-After")).To(MatchRegexp(`^[1-9][0-9]*$`))
	g.Expect(body).To(ContainSubstring("too_many_failed_authentications"))

	resp, _ = r.post(t, initBody, map[string]string{"Authorization": "Bearer " + alice})
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), "alice's token, verified before, is not held up")
	g.Eventually(func() []string {
		var reasons []string
		for _, l := range r.auditLines(t) {
			if l["kind"] == "auth" && l["outcome"] == "deny" {
				reasons = append(reasons, fmt.Sprint(l["reason"]))
			}
		}
		return reasons
	}, 5*time.Second, 50*time.Millisecond).Should(Equal([]string{"bad_signature", "bad_signature", "bad_signature", "too_many_failures"}))
}

// init2025_03_26 opens a session of the last revision with batches and returns the
// headers of its later requests.
func (r *rt) init2025_03_26(t *testing.T, token string) map[string]string {
	t.Helper()
	resp, body := r.post(t, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`,
		map[string]string{"Authorization": "Bearer " + token})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	h := map[string]string{"Authorization": "Bearer " + token, "Mcp-Session-Id": resp.Header.Get("Mcp-Session-Id"), "Mcp-Protocol-Version": "2025-03-26"}
	if resp, body = r.post(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, h); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", resp.StatusCode, body)
	}
	return h
}

// batchErrors decodes a JSON array of responses into error code by id.
func batchErrors(t *testing.T, body string) map[string]int {
	t.Helper()
	var out []struct {
		ID    json.RawMessage `json:"id"`
		Error *struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("batch response %q: %v", body, err)
	}
	codes := map[string]int{}
	for _, m := range out {
		codes[string(m.ID)] = 0
		if m.Error != nil {
			codes[string(m.ID)] = m.Error.Code
		}
	}
	return codes
}

// A batch is all-or-nothing, and every request in it is answered: the refused one with
// its reason, the others with "not relayed" — none reaches the upstream, each tools/call
// is audited.
func TestRefusedBatchAnswersEveryRequest(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, nil)
	h := r.init2025_03_26(t, k.token(t, "alice", nil))

	resp, body := r.post(t, `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_simple_text","arguments":{}}},`+
		`{"jsonrpc":"2.0","id":2,"method":"ping"},`+
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"no_such_tool","arguments":{}}}]`, h)
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), body)
	g.Expect(batchErrors(t, body)).To(Equal(map[string]int{"1": -32002, "2": -32002, "3": -32602}))
	g.Expect(r.up.Sent(`"tools/call"`)).To(BeEmpty())
	g.Expect(r.up.Sent(`"ping"`)).To(BeEmpty())
	g.Eventually(func() []string { // the audit log is written in batches
		var outcomes []string
		for _, l := range r.auditLines(t) {
			if l["kind"] == "tool_call" {
				outcomes = append(outcomes, fmt.Sprint(l["tool"], " ", l["outcome"], " ", l["reason"]))
			}
		}
		return outcomes
	}).Should(ConsistOf("test_simple_text refused batch_refused", "no_such_tool refused invalid_arguments"))

	// An accepted batch is relayed whole.
	resp, body = r.post(t, `[{"jsonrpc":"2.0","id":4,"method":"ping"},{"jsonrpc":"2.0","id":5,"method":"ping"}]`, h)
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), body)
	g.Expect(body).To(And(ContainSubstring(`"id":4`), ContainSubstring(`"id":5`)))
}

// One HTTP request pays the per-principal rate limit once; a batch's other messages pay
// for themselves, so batching does not multiply the rate.
func TestBatchPaysTheRateLimitPerMessage(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) { c.Limits.RequestsPerSecond, c.Limits.Burst = 0.01, 5 })
	h := r.init2025_03_26(t, k.token(t, "alice", nil)) // 2 of the 5 tokens
	// 1 for the POST + 2 more: the 4th message finds the bucket empty.
	resp, body := r.post(t, `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"},`+
		`{"jsonrpc":"2.0","id":3,"method":"ping"},{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"test_simple_text","arguments":{}}}]`, h)
	g.Expect(resp.StatusCode).To(Equal(http.StatusTooManyRequests), body)
	g.Expect(resp.Header.Get("Retry-After")).NotTo(BeEmpty())
	g.Expect(batchErrors(t, body)).To(Equal(map[string]int{"1": -32002, "2": -32002, "3": -32002, "4": -32000}))
	g.Expect(r.up.Sent(`"ping"`)).To(BeEmpty())
	g.Eventually(func() []map[string]any { return r.auditLines(t) }).Should(ContainElement(And(
		HaveKeyWithValue("kind", "tool_call"), HaveKeyWithValue("tool", "test_simple_text"), HaveKeyWithValue("outcome", "rate_limited"))),
		"a tools/call refused by the client's rate limit is audited too")
}

func TestPerToolRateLimitOnWebSocketIsAJSONRPCError(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) {
		c.Limits.PerTool = []config.ToolLimit{{Tool: "test_simple_*", RequestsPerSecond: 0.1, Burst: 1}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, _, err := r.wsDial(ctx, "", http.Header{"Authorization": {"Bearer " + k.token(t, "alice", nil)}})
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = c.CloseNow() }()
	wsCall(ctx, t, c, initBody, "1")
	call := `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"test_simple_text","arguments":{}}}`
	g.Expect(wsCall(ctx, t, c, strings.Replace(call, "%d", "2", 1), "2")).To(ContainSubstring("simple text"))
	code, _, data := rpcError(t, wsCall(ctx, t, c, strings.Replace(call, "%d", "3", 1), "3"))
	g.Expect(code).To(Equal(-32000))
	g.Expect(string(data)).To(MatchRegexp(`"retryAfterSeconds":[1-9]`))
}

func TestHeaderThatNeverFinishesIsCut(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) { c.Limits.ReadHeaderTimeout = config.D(300 * time.Millisecond) })
	conn, err := tls.Dial("tcp", r.addr, &tls.Config{RootCAs: k.ca.Pool(), ServerName: "localhost"})
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = conn.Close() }()
	_, err = conn.Write([]byte("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "))
	g.Expect(err).NotTo(HaveOccurred())
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(conn) // returns when the server closes the connection
	var ne net.Error
	g.Expect(errors.As(err, &ne) && ne.Timeout()).To(BeFalse(), "the server, not our deadline, ended the connection")
	g.Expect(time.Since(start)).To(BeNumerically("<", 3*time.Second))
}

func TestTLSCertificateRotationKeepsOpenConnections(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, nil)
	tok := k.token(t, "alice", nil)

	// One keep-alive connection, opened before the rotation.
	old := r.client()
	resp, _ := postWith(t, old, r.url("/mcp"), initBody, tok)
	g.Expect(resp.TLS.PeerCertificates[0].Subject.CommonName).To(Equal("runtime-1"))

	k.vol.Write(t, k.ca.Issue(t, "runtime-2"))
	g.Eventually(func() string {
		c, err := tls.Dial("tcp", r.addr, &tls.Config{RootCAs: k.ca.Pool(), ServerName: "localhost"})
		if err != nil {
			return err.Error()
		}
		defer func() { _ = c.Close() }()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}, 5*time.Second, 50*time.Millisecond).Should(Equal("runtime-2"))

	resp, _ = postWith(t, old, r.url("/mcp"), initBody, tok)
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(resp.TLS.PeerCertificates[0].Subject.CommonName).To(Equal("runtime-1"), "the old connection was reused, not re-dialled")
}

func postWith(t *testing.T, c *http.Client, url, body, tok string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestUpstreamDyingMidCallAnswersWithAnError(t *testing.T) {
	g := NewWithT(t)
	self, err := os.Executable()
	g.Expect(err).NotTo(HaveOccurred())
	k := newKeys(t)
	t.Setenv("MCP_FAKE_SERVER", "1") // inherited by the child the upstream starts
	r := start(t, k, nil, self)
	tok := k.token(t, "alice", nil)
	sid := r.initSession(t, tok)

	done := make(chan string, 1)
	go func() {
		_, body := r.post(t, `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"crash","arguments":{}}}`, r.sessionHeaders(tok, sid))
		done <- body
	}()
	var body string
	g.Eventually(done, 8*time.Second).Should(Receive(&body), "the call must not hang")
	code, msg, _ := rpcError(t, body)
	g.Expect(code).To(BeNumerically("<", 0))
	g.Expect(msg).NotTo(BeEmpty())
}

// Messages whose shape would let them skip the checks are refused before the upstream: a
// tools/call without an id (a JSON-RPC server still runs a notification) and a
// notifications/* method with one (the relay rewrites the ids in notifications only).
// The refused call is audited; an unauthenticated request's auth line names its transport.
func TestMessagesShapedToSkipTheChecksAreRefused(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, nil)
	tok := k.token(t, "alice", nil)
	h := r.sessionHeaders(tok, r.initSession(t, tok))
	sentBefore := len(r.up.Sent(""))

	resp, body := r.post(t, `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"test_simple_text","arguments":{}}}`, h)
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest), body)
	code, msg, _ := rpcError(t, body)
	g.Expect(code).To(Equal(-32600))
	g.Expect(msg).To(ContainSubstring("without an id"))

	resp, body = r.post(t, `{"jsonrpc":"2.0","id":9,"method":"notifications/cancelled","params":{"requestId":1}}`, h)
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest), body)
	code, msg, _ = rpcError(t, body)
	g.Expect(code).To(Equal(-32600))
	g.Expect(msg).To(ContainSubstring("send it without an id"))
	g.Expect(r.up.Sent("")).To(HaveLen(sentBefore), "nothing refused reached the upstream")

	resp, _ = r.post(t, initBody, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
	g.Eventually(func() []string {
		return auditValues(r.auditLines(t), "reason", map[string]string{"kind": "tool_call", "tool": "test_simple_text", "outcome": "refused"})
	}, 5*time.Second).Should(ContainElement("notification_not_allowed"))
	g.Eventually(func() []string {
		return auditValues(r.auditLines(t), "transport", map[string]string{"kind": "auth", "outcome": "deny", "reason": "no_credentials"})
	}, 5*time.Second).Should(ContainElement("streamable-http"))
}

// A request that reuses the id of one still in flight is refused and audited, and the one
// in flight still gets its answer.
func TestDuplicateIDLeavesTheCallInFlightAlone(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, _, err := r.wsDial(ctx, "", http.Header{"Authorization": {"Bearer " + k.token(t, "alice", nil)}})
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = c.CloseNow() }()
	g.Expect(wsCall(ctx, t, c, initBody, "1")).To(ContainSubstring(`"serverInfo"`))
	g.Expect(c.Write(ctx, websocket.MessageText, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))).To(Succeed())

	slow := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_tool_with_progress","arguments":{}}}` // ~150 ms
	g.Expect(c.Write(ctx, websocket.MessageText, []byte(slow))).To(Succeed())
	g.Expect(c.Write(ctx, websocket.MessageText, []byte(slow))).To(Succeed())
	var answers []string
	for len(answers) < 2 {
		_, data, err := c.Read(ctx)
		g.Expect(err).NotTo(HaveOccurred(), "answers so far: %v", answers)
		if strings.Contains(string(data), `"id":7`) {
			answers = append(answers, string(data))
		}
	}
	g.Expect(answers[0]).To(ContainSubstring("still in flight"))
	g.Expect(answers[1]).To(ContainSubstring(`"result"`), "the call in flight is answered")
	g.Eventually(func() []string {
		return auditValues(r.auditLines(t), "outcome", map[string]string{"kind": "tool_call", "tool": "test_tool_with_progress"})
	}, 5*time.Second).Should(ConsistOf("refused", "ok"))
}

// Responses to the server's requests are messages relayed upstream like any other: on a
// socket each pays the client's rate limit, and a refused one is answered without its id
// (the id is the server's, and the client may have a request of its own with it).
func TestResponsesPayTheRateLimit(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) { c.Limits.RequestsPerSecond, c.Limits.Burst = 0.5, 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, _, err := r.wsDial(ctx, "", http.Header{"Authorization": {"Bearer " + k.token(t, "alice", nil)}})
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = c.CloseNow() }()
	for id := 100; id < 120; id++ {
		g.Expect(c.Write(ctx, websocket.MessageText, []byte(`{"jsonrpc":"2.0","id":`+strconv.Itoa(id)+`,"result":{}}`))).To(Succeed())
	}
	_, data, err := c.Read(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(data)).To(And(ContainSubstring(`"id":null`), ContainSubstring(`-32000`)))
	g.Expect(len(r.up.Sent(`"result":{}`))).To(BeNumerically("<=", 3), "at most the burst is relayed")
}

// A socket or stream is authenticated once, when it opens: it ends when its credential
// expires (1008 on a socket), and a ticket never outlives the token it was minted for.
func TestConnectionsEndWithTheirCredential(t *testing.T) {
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) { c.Auth.JWT[0].Leeway = config.D(time.Millisecond) })
	shortLived := func() string {
		return k.token(t, "alice", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(3 * time.Second).Unix() }) // 2–3 s: exp is whole seconds
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, via := range []string{"bearer", "ticket"} {
		t.Run(via, func(t *testing.T) {
			g := NewWithT(t)
			tok := shortLived()
			query, hdr := "", http.Header{"Authorization": {"Bearer " + tok}}
			if via == "ticket" {
				query, hdr = "?ticket="+r.ticket(t, tok, allowedOrigin), http.Header{"Origin": {allowedOrigin}}
			}
			c, _, err := r.wsDial(ctx, query, hdr)
			g.Expect(err).NotTo(HaveOccurred())
			defer func() { _ = c.CloseNow() }()
			g.Expect(wsCall(ctx, t, c, initBody, "1")).To(ContainSubstring(`"serverInfo"`))
			opened := time.Now()
			for err == nil { // notifications may come first
				_, _, err = c.Read(ctx)
			}
			g.Expect(closeStatus(err)).To(Equal(websocket.StatusPolicyViolation))
			g.Expect(time.Since(opened)).To(BeNumerically("<", 6*time.Second))
		})
	}
	t.Run("a ticket expires with its token", func(t *testing.T) {
		g := NewWithT(t)
		tok := shortLived()
		req, _ := http.NewRequest(http.MethodPost, r.url("/auth/ticket"), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Origin", allowedOrigin)
		resp, err := r.client().Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = resp.Body.Close() }()
		var out struct {
			ExpiresIn int `json:"expiresIn"`
		}
		g.Expect(json.NewDecoder(resp.Body).Decode(&out)).To(Succeed())
		g.Expect(out.ExpiresIn).To(BeNumerically("<=", 3), "not the configured 30 s")
	})
}

// A subscriptions/listen POST stays open as long as the client keeps it, so, like a GET
// stream, it ends when the token it was opened with expires.
func TestListenStreamEndsWithItsCredential(t *testing.T) {
	g := NewWithT(t)
	k := newKeys(t)
	r := start(t, k, func(c *config.Config) { c.Auth.JWT[0].Leeway = config.D(time.Millisecond) }, "/bin/sh", "-c", testutil.SilentListenServer)
	tok := k.token(t, "alice", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(3 * time.Second).Unix() })
	h := r.sessionHeaders(tok, r.initSession(t, tok))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.url("/mcp"), strings.NewReader(`{"jsonrpc":"2.0","id":5,"method":"subscriptions/listen","params":{}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range h {
		req.Header.Set(k, v)
	}
	opened := time.Now()
	resp, err := r.client().Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	g.Expect(ctx.Err()).To(BeNil(), "the stream outlived its token: %v", err)
	g.Expect(time.Since(opened)).To(BeNumerically("<", 8*time.Second))
}
