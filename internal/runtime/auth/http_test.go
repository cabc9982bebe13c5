package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

const metadataURL = "https://mcp.example/.well-known/oauth-protected-resource"

// fixture is an Authenticator with an ES256 key file, API keys and tickets sharing a key
// file, as the operator configures it.
type fixture struct {
	a      *Authenticator
	clk    *clock
	dec    *decisions
	cfg    config.Auth
	apiKey string
}

func newFixture(t *testing.T, mut ...func(*config.Auth)) *fixture {
	t.Helper()
	testKeys(t)
	dir := t.TempDir()
	keys := filepath.Join(dir, "apikeys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	f := &fixture{clk: newClock(), dec: &decisions{}, apiKey: "mcpk_0123456789abcdefghijklmnopqrstuv"}
	writeFile(t, keys, "ci-bot", []byte(HashAPIKey(f.apiKey)+"\n"))
	writeFile(t, keys, ".hidden", []byte("not a key"))
	ticketKey := make([]byte, 32)
	for i := range ticketKey {
		ticketKey[i] = byte(i * 7)
	}
	f.cfg = config.Auth{
		JWT: []config.JWTProvider{{
			Issuer:   testIssuer,
			KeyFiles: []config.KeyFile{{Path: writeFile(t, dir, "jwt.pub", pemPublic(t, &ecKey.PublicKey)), Algorithm: "ES256"}},
			Leeway:   config.D(30 * time.Second),
		}},
		APIKeys: &config.APIKeys{Dir: keys},
		WebSocket: config.WebSocketAuth{
			Tickets:      config.Tickets{TTL: config.D(30 * time.Second), KeyFile: writeFile(t, dir, "ticket.key", []byte(base64.StdEncoding.EncodeToString(ticketKey)))},
			FirstMessage: config.FirstMessage{Timeout: config.D(10 * time.Second)},
		},
		ResourceMetadata: config.ResourceMetadata{
			AuthorizationServers: []string{"https://login.example"},
			ScopesSupported:      []string{"tools:read"},
			Documentation:        "https://docs.example/mcp",
		},
	}
	for _, m := range mut {
		m(&f.cfg)
	}
	f.a = newAuth(t, f.cfg, Options{Now: f.clk.Now, OnDecision: f.dec.record, WebSocketPath: "/mcp"})
	return f
}

func (f *fixture) token(t *testing.T) string {
	return sign(t, jwt.SigningMethodES256, ecKey, "", claims(f.clk.Now()))
}

// serve runs r through Middleware; next records the principal it saw.
func (f *fixture) serve(r *http.Request) (*httptest.ResponseRecorder, *http.Request) {
	var seen *http.Request
	w := httptest.NewRecorder()
	f.a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r
		w.WriteHeader(http.StatusOK)
	})).ServeHTTP(w, r)
	return w, seen
}

func post(auth string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "https://mcp.example/mcp", strings.NewReader(`{}`))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	return r
}

func upgrade(query, origin string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://mcp.example/mcp"+query, nil)
	r.Header.Set("Connection", "keep-alive, Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	return r
}

func TestMiddlewareBearer(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name       string
		authz      []string
		wantStatus int
		wantCh     string // WWW-Authenticate
		wantP      *Principal
	}{
		{"jwt", []string{"Bearer " + f.token(t)}, 200, "", &Principal{Subject: "alice", Issuer: testIssuer, Method: MethodJWT, Scopes: []string{"tools:read", "tools:write"}}},
		{"lowercase scheme", []string{"bearer " + f.token(t)}, 200, "", &Principal{Subject: "alice", Issuer: testIssuer, Method: MethodJWT, Scopes: []string{"tools:read", "tools:write"}}},
		{"api key", []string{"Bearer " + f.apiKey}, 200, "", &Principal{Subject: "ci-bot", Method: MethodAPIKey}},
		{"no credentials", nil, 401, `Bearer resource_metadata="` + metadataURL + `"`, nil},
		{"wrong api key", []string{"Bearer mcpk_wrong-key-0123456789"}, 401, `Bearer resource_metadata="` + metadataURL + `", error="invalid_token"`, nil},
		{"expired jwt", []string{"Bearer " + sign(t, jwt.SigningMethodES256, ecKey, "", jwt.MapClaims{"iss": testIssuer, "sub": "a", "aud": testPublicURL, "exp": f.clk.Now().Add(-time.Hour).Unix()})}, 401, `Bearer resource_metadata="` + metadataURL + `", error="invalid_token"`, nil},
		{"basic scheme", []string{"Basic YWxpY2U6c2VjcmV0"}, 401, `Bearer resource_metadata="` + metadataURL + `", error="invalid_request"`, nil},
		{"two headers", []string{"Bearer " + f.apiKey, "Bearer " + f.apiKey}, 401, `Bearer resource_metadata="` + metadataURL + `", error="invalid_request"`, nil},
		{"empty bearer", []string{"Bearer "}, 401, `Bearer resource_metadata="` + metadataURL + `", error="invalid_request"`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r := post("")
			for _, v := range tc.authz {
				r.Header.Add("Authorization", v)
			}
			w, seen := f.serve(r)
			g.Expect(w.Code).To(Equal(tc.wantStatus))
			g.Expect(w.Header().Get("WWW-Authenticate")).To(Equal(tc.wantCh))
			if tc.wantP == nil {
				g.Expect(seen).To(BeNil(), "the protected handler ran")
				for _, v := range tc.authz {
					assertNoLeak(t, w.Body.String(), strings.TrimPrefix(v, "Bearer "))
				}
				return
			}
			p, ok := PrincipalFrom(seen.Context())
			g.Expect(ok).To(BeTrue())
			g.Expect(sansExpiry(p)).To(Equal(*tc.wantP))
			if p.Method == MethodJWT {
				g.Expect(p.Expires).To(BeTemporally("==", expiresOf(t, f.token(t))))
			} else {
				g.Expect(p.Expires.IsZero()).To(BeTrue(), "an API key does not expire")
			}
		})
	}
	// Every decision was reported, none carries a credential.
	g := NewWithT(t)
	all := f.dec.list()
	g.Expect(all).To(HaveLen(len(cases)))
	g.Expect(all[0]).To(Equal(Decision{Outcome: OutcomeAllow, Method: MethodJWT, Subject: "alice", Issuer: testIssuer}))
	g.Expect(all[3]).To(Equal(Decision{Outcome: OutcomeDeny, Reason: "no_credentials"}))
	g.Expect(all[4]).To(Equal(Decision{Outcome: OutcomeDeny, Method: MethodAPIKey, Reason: "unknown_api_key"}))
	g.Expect(all[5]).To(Equal(Decision{Outcome: OutcomeDeny, Method: MethodJWT, Reason: "expired"}))
	for _, tc := range cases {
		for _, v := range tc.authz {
			assertNoLeak(t, describe(all), strings.TrimPrefix(v, "Bearer "))
		}
	}
}

func TestMetadataDocument(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{MetadataPath, MetadataPath + "/mcp"} {
		g := NewWithT(t)
		w, seen := f.serve(httptest.NewRequest(http.MethodGet, "https://mcp.example"+path, nil))
		g.Expect(seen).To(BeNil(), "served by the middleware itself, without credentials")
		g.Expect(w.Code).To(Equal(http.StatusOK))
		g.Expect(w.Body.String()).To(MatchJSON(`{
			"resource": "https://mcp.example/mcp",
			"authorization_servers": ["https://login.example"],
			"scopes_supported": ["tools:read"],
			"bearer_methods_supported": ["header"],
			"resource_documentation": "https://docs.example/mcp"
		}`))
	}
	w := httptest.NewRecorder()
	f.a.MetadataHandler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, MetadataPath, nil))
	NewWithT(t).Expect(w.Code).To(Equal(http.StatusMethodNotAllowed))
}

// issueTicket calls TicketHandler the way a browser page at origin would.
func (f *fixture) issueTicket(t *testing.T, origin, authz string) (*httptest.ResponseRecorder, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "https://mcp.example"+TicketPath, nil)
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	w := httptest.NewRecorder()
	f.a.TicketHandler().ServeHTTP(w, r)
	var body struct {
		Ticket    string `json:"ticket"`
		ExpiresIn int    `json:"expiresIn"`
	}
	if w.Code == http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if body.ExpiresIn != 30 || body.Ticket == "" {
			t.Fatalf("ticket response %s", w.Body)
		}
	}
	return w, body.Ticket
}

func TestTickets(t *testing.T) {
	f := newFixture(t)
	t.Run("issue needs a valid bearer", func(t *testing.T) {
		g := NewWithT(t)
		w, _ := f.issueTicket(t, testOrigin, "")
		g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
		g.Expect(w.Header().Get("WWW-Authenticate")).To(ContainSubstring("resource_metadata="))
		w, _ = f.issueTicket(t, testOrigin, "Bearer nope")
		g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
		r := httptest.NewRequest(http.MethodGet, TicketPath, nil)
		w = httptest.NewRecorder()
		f.a.TicketHandler().ServeHTTP(w, r)
		g.Expect(w.Code).To(Equal(http.StatusMethodNotAllowed))
	})
	t.Run("redeemed once at upgrade, from the same origin", func(t *testing.T) {
		g := NewWithT(t)
		w, ticket := f.issueTicket(t, testOrigin, "Bearer "+f.token(t))
		g.Expect(w.Code).To(Equal(http.StatusOK))
		g.Expect(w.Header().Get("Cache-Control")).To(Equal("no-store"))

		w, seen := f.serve(upgrade("?ticket="+url.QueryEscape(ticket)+"&x=1", testOrigin))
		g.Expect(w.Code).To(Equal(http.StatusOK))
		p, _ := PrincipalFrom(seen.Context())
		g.Expect(sansExpiry(p)).To(Equal(Principal{Subject: "alice", Issuer: testIssuer, Method: MethodTicket, Scopes: []string{"tools:read", "tools:write"}}))
		g.Expect(p.Expires).To(BeTemporally("~", expiresOf(t, f.token(t)), time.Millisecond), "the token's expiry, carried by the ticket")
		g.Expect(seen.URL.RawQuery).To(Equal("x=1"), "the ticket is removed from the URL handlers see")
		g.Expect(seen.RequestURI).NotTo(ContainSubstring(ticket))

		w, seen = f.serve(upgrade("?ticket="+url.QueryEscape(ticket), testOrigin))
		g.Expect(w.Code).To(Equal(http.StatusUnauthorized), "replayed ticket")
		g.Expect(seen).To(BeNil())
		g.Expect(f.dec.list()).To(ContainElement(Decision{Outcome: OutcomeDeny, Method: MethodTicket, Reason: "ticket_replayed"}))
	})
	t.Run("another origin", func(t *testing.T) {
		g := NewWithT(t)
		_, ticket := f.issueTicket(t, testOrigin, "Bearer "+f.apiKey)
		for _, origin := range []string{"https://evil.example", ""} {
			w, seen := f.serve(upgrade("?ticket="+url.QueryEscape(ticket), origin))
			g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
			g.Expect(seen).To(BeNil())
		}
		g.Expect(f.dec.list()).To(ContainElement(Decision{Outcome: OutcomeDeny, Method: MethodTicket, Reason: "ticket_origin_mismatch"}))
		// Refusals from a foreign origin do not burn the ticket for its owner.
		w, _ := f.serve(upgrade("?ticket="+url.QueryEscape(ticket), testOrigin))
		g.Expect(w.Code).To(Equal(http.StatusOK))
	})
	t.Run("expired", func(t *testing.T) {
		g := NewWithT(t)
		_, ticket := f.issueTicket(t, "", "Bearer "+f.token(t))
		f.clk.Advance(30 * time.Second)
		w, seen := f.serve(upgrade("?ticket="+url.QueryEscape(ticket), ""))
		g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
		g.Expect(seen).To(BeNil())
		g.Expect(f.dec.list()[len(f.dec.list())-1].Reason).To(Equal("ticket_expired"))
	})
	t.Run("tampered or foreign-key tickets", func(t *testing.T) {
		g := NewWithT(t)
		_, ticket := f.issueTicket(t, testOrigin, "Bearer "+f.token(t))
		parts := strings.Split(ticket, ".")
		claimsJSON, _ := base64.RawURLEncoding.DecodeString(parts[1])
		forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(claimsJSON), `"alice"`, `"admin"`, 1))) + "." + parts[2]
		other := newFixture(t, func(c *config.Auth) { c.WebSocket.Tickets.KeyFile = "" }) // random key
		_, foreign := other.issueTicket(t, testOrigin, "Bearer "+f.token(t))
		for _, bad := range []string{forged, foreign, ticket + "A", "mt1.x.y", "garbage"} {
			_, err := f.a.tickets.redeem(bad, testOrigin)
			g.Expect(err).To(MatchError(ErrTicketInvalid))
			assertNoLeak(t, err.Error(), bad)
		}
	})
	t.Run("another replica with the same key, or a restarted one, refuses it", func(t *testing.T) {
		// It has not seen the redemptions: accepting the ticket would let it be used twice.
		g := NewWithT(t)
		replica := newAuth(t, f.cfg, Options{Now: f.clk.Now, WebSocketPath: "/mcp"})
		g.Expect(replica.tickets.replica).NotTo(Equal(f.a.tickets.replica))
		_, ticket := f.issueTicket(t, testOrigin, "Bearer "+f.token(t))
		_, err := replica.tickets.redeem(ticket, testOrigin)
		g.Expect(err).To(MatchError(ErrTicketReplica))
		assertNoLeak(t, err.Error(), ticket)

		// A ticket of another replica, refused here, is not consumed here either.
		foreign, _, err := replica.tickets.issue(Principal{Subject: "alice"}, testOrigin)
		g.Expect(err).NotTo(HaveOccurred())
		before := f.a.tickets.outstanding()
		_, err = f.a.tickets.redeem(foreign, testOrigin)
		g.Expect(err).To(MatchError(ErrTicketReplica))
		g.Expect(f.a.tickets.outstanding()).To(Equal(before))
		_, err = replica.tickets.redeem(foreign, testOrigin)
		g.Expect(err).NotTo(HaveOccurred(), "its own replica still redeems it, once")
		_, err = replica.tickets.redeem(foreign, testOrigin)
		g.Expect(err).To(MatchError(ErrTicketReplayed))
	})
	t.Run("the replay set is bounded and expires", func(t *testing.T) {
		g := NewWithT(t)
		tk := f.a.tickets
		before := tk.outstanding()
		g.Expect(before).To(BeNumerically(">", 0))
		f.clk.Advance(31 * time.Second)
		_, ticket := f.issueTicket(t, "", "Bearer "+f.token(t))
		_, err := tk.redeem(ticket, "")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(tk.outstanding()).To(Equal(1), "expired entries were swept")

		small := handMadeTicketer(tk.key, tk.ttl, tk.opts, 2)
		var errs []error
		for range 3 {
			tic, _, _ := small.issue(Principal{Subject: "s"}, "")
			_, err := small.redeem(tic, "")
			errs = append(errs, err)
		}
		g.Expect(errs[0]).NotTo(HaveOccurred())
		g.Expect(errs[1]).NotTo(HaveOccurred())
		g.Expect(errs[2]).To(MatchError(ErrTicketCapacity), "fails closed when full")
	})
	t.Run("disabled", func(t *testing.T) {
		g := NewWithT(t)
		off := newFixture(t, func(c *config.Auth) { c.WebSocket.Tickets.Disabled = true; c.WebSocket.FirstMessage.Disabled = true })
		w, _ := off.issueTicket(t, testOrigin, "Bearer "+f.token(t))
		g.Expect(w.Code).To(Equal(http.StatusNotFound))
		w, _ = off.serve(upgrade("?ticket=x", testOrigin))
		g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
	})
}

// Removing an API key ends what was opened with it: the principal's Revoked closes (the
// server ends its sockets and streams then), and its outstanding tickets are refused.
func TestARevokedAPIKeyEndsItsTicketsAndConnections(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	_, first := f.issueTicket(t, testOrigin, "Bearer "+f.apiKey)
	_, second := f.issueTicket(t, testOrigin, "Bearer "+f.apiKey)
	w, seen := f.serve(upgrade("?ticket="+url.QueryEscape(first), testOrigin))
	g.Expect(w.Code).To(Equal(http.StatusOK))
	opened, _ := PrincipalFrom(seen.Context())
	g.Expect(opened.Revoked).NotTo(BeNil())
	g.Expect(opened.Revoked).NotTo(BeClosed())
	direct, err := f.a.VerifyToken(context.Background(), f.apiKey)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(direct.Revoked).NotTo(BeClosed())

	g.Expect(os.Remove(filepath.Join(f.cfg.APIKeys.Dir, "ci-bot"))).To(Succeed())
	f.a.apiKeys.mu.Lock()
	f.a.apiKeys.loadedAt = time.Time{} // reload at the next use, well within the tickets' TTL
	f.a.apiKeys.mu.Unlock()
	w, seen = f.serve(upgrade("?ticket="+url.QueryEscape(second), testOrigin))
	g.Expect(w.Code).To(Equal(http.StatusUnauthorized), "a ticket of the revoked key")
	g.Expect(seen).To(BeNil())
	g.Expect(opened.Revoked).To(BeClosed(), "the socket opened with its ticket")
	g.Expect(direct.Revoked).To(BeClosed(), "a stream opened with the key itself")
}

func TestTicketsAreOnlyForUpgrades(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	_, ticket := f.issueTicket(t, "", "Bearer "+f.token(t))
	r := httptest.NewRequest(http.MethodPost, "https://mcp.example/mcp?ticket="+url.QueryEscape(ticket), nil)
	w, seen := f.serve(r)
	g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
	g.Expect(seen).To(BeNil())
}

func TestParseTicketKey(t *testing.T) {
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(255 - i)
	}
	printable := []byte(strings.Repeat("k", 40))
	for name, tc := range map[string]struct {
		in   []byte
		want []byte
	}{
		"raw bytes":        {raw, raw},
		"base64":           {[]byte(base64.StdEncoding.EncodeToString(raw) + "\n"), raw},
		"base64url no pad": {[]byte(base64.RawURLEncoding.EncodeToString(raw)), raw},
		"long printable":   {printable, printable},
		"too short raw":    {raw[:31], nil},
		"too short base64": {[]byte(base64.StdEncoding.EncodeToString(raw[:16])), nil},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := ParseTicketKey(tc.in)
			if tc.want == nil {
				g.Expect(err).To(HaveOccurred())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestFirstMessage(t *testing.T) {
	f := newFixture(t)
	g := NewWithT(t)
	w, seen := f.serve(upgrade("", testOrigin))
	g.Expect(w.Code).To(Equal(http.StatusOK))
	g.Expect(FirstMessagePending(seen.Context())).To(BeTrue())
	_, has := PrincipalFrom(seen.Context())
	g.Expect(has).To(BeFalse())
	g.Expect(f.a.FirstMessageTimeout()).To(Equal(10 * time.Second))

	ctx := seen.Context()
	tok := f.token(t)
	p, err := f.a.FirstMessage(ctx, []byte(`{"type":"auth","token":"`+tok+`"}`))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sansExpiry(p)).To(Equal(Principal{Subject: "alice", Issuer: testIssuer, Method: MethodFirstMessage, Scopes: []string{"tools:read", "tools:write"}}))
	g.Expect(p.Expires).To(BeTemporally("==", expiresOf(t, tok)))
	p, err = f.a.FirstMessage(ctx, []byte(`{"type":"auth","token":"`+f.apiKey+`"}`))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Subject).To(Equal("ci-bot"))

	for _, frame := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize"}`,
		`{"type":"auth"}`,
		`{"type":"Auth","token":"` + tok + `"}`,
		`{"type":"auth","token":42}`,
		`{"type":"auth","token":"` + tok + `x"}`,
		`{"type":"auth","token":"` + f.apiKey + `-wrong"}`,
		`not json ` + tok,
		``,
	} {
		_, err := f.a.FirstMessage(ctx, []byte(frame))
		g.Expect(err).To(MatchError(ErrInvalidToken), frame)
		assertNoLeak(t, err.Error(), tok)
		assertNoLeak(t, err.Error(), f.apiKey)
	}
	assertNoLeak(t, describe(f.dec.list()), tok)
	assertNoLeak(t, describe(f.dec.list()), f.apiKey)
	g.Expect(f.dec.list()).To(ContainElement(Decision{Outcome: OutcomeAllow, Method: MethodFirstMessage, Subject: "alice", Issuer: testIssuer}))

	off := newFixture(t, func(c *config.Auth) { c.WebSocket.FirstMessage.Disabled = true })
	w, seen = off.serve(upgrade("", testOrigin))
	g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
	g.Expect(seen).To(BeNil())
	_, err = off.a.FirstMessage(context.Background(), []byte(`{"type":"auth","token":"`+tok+`"}`))
	g.Expect(err).To(MatchError(ErrFirstMessage))
}

func TestQueryToken(t *testing.T) {
	tok := func(f *fixture) string { return f.token(t) }
	t.Run("off by default", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, func(c *config.Auth) { c.WebSocket.FirstMessage.Disabled = true })
		w, seen := f.serve(upgrade("?access_token="+tok(f), testOrigin))
		g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
		g.Expect(seen).To(BeNil())
	})
	t.Run("explicitly enabled", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, func(c *config.Auth) { c.WebSocket.InsecureQueryToken = true })
		w, seen := f.serve(upgrade("?access_token="+tok(f), testOrigin))
		g.Expect(w.Code).To(Equal(http.StatusOK))
		p, _ := PrincipalFrom(seen.Context())
		g.Expect(p.Method).To(Equal(MethodJWT))
		g.Expect(seen.URL.RawQuery).To(BeEmpty())
		// Never on plain requests.
		w, _ = f.serve(httptest.NewRequest(http.MethodPost, "https://mcp.example/mcp?access_token="+tok(f), nil))
		g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
	})
}

// Tickets, query tokens and first-message auth belong to the WebSocket endpoint: the same
// upgrade headers on any other path (the legacy SSE stream, say) carry no credential.
func TestWebSocketCredentialsOnlyOnTheWebSocketPath(t *testing.T) {
	f := newFixture(t, func(c *config.Auth) { c.WebSocket.InsecureQueryToken = true })
	_, ticket := f.issueTicket(t, testOrigin, "Bearer "+f.token(t))
	noWebSocket := newAuth(t, f.cfg, Options{Now: f.clk.Now})
	for name, tc := range map[string]struct {
		a     *Authenticator
		path  string
		query string
	}{
		"first message, another path":  {f.a, "/mcp/sse", ""},
		"ticket, another path":         {f.a, "/mcp/sse", "?ticket=" + ticket},
		"query token, another path":    {f.a, "/other", "?access_token=" + f.token(t)},
		"first message, WebSocket off": {noWebSocket, "/mcp", ""},
		"query token, WebSocket off":   {noWebSocket, "/mcp", "?access_token=" + f.token(t)},
		"first message, a longer path": {f.a, "/mcp/", ""},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			r := upgrade(tc.query, testOrigin)
			r.URL.Path = tc.path
			var seen *http.Request
			w := httptest.NewRecorder()
			tc.a.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { seen = r })).ServeHTTP(w, r)
			g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
			g.Expect(seen).To(BeNil())
		})
	}
	// Refused elsewhere, the ticket was not spent: it still opens the WebSocket.
	w, seen := f.serve(upgrade("?ticket="+ticket, testOrigin))
	NewWithT(t).Expect(w.Code).To(Equal(http.StatusOK))
	p, _ := PrincipalFrom(seen.Context())
	NewWithT(t).Expect(p.Method).To(Equal(MethodTicket))
}

func TestAnonymous(t *testing.T) {
	g := NewWithT(t)
	dec := &decisions{}
	a := newAuth(t, config.Auth{Anonymous: true}, Options{OnDecision: dec.record})
	g.Expect(a.Anonymous()).To(BeTrue())
	var seen *http.Request
	a.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { seen = r })).ServeHTTP(httptest.NewRecorder(), post(""))
	p, ok := PrincipalFrom(seen.Context())
	g.Expect(ok).To(BeTrue())
	g.Expect(p).To(Equal(Principal{Method: MethodAnonymous}))
	g.Expect(dec.list()).To(Equal([]Decision{{Outcome: OutcomeAllow, Method: MethodAnonymous}}))
	g.Expect(a.TicketsEnabled()).To(BeFalse())
	g.Expect(a.FirstMessageEnabled()).To(BeFalse())
	w := httptest.NewRecorder()
	a.TicketHandler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, TicketPath, nil))
	g.Expect(w.Code).To(Equal(http.StatusNotFound))
	w = httptest.NewRecorder()
	a.Middleware(http.NotFoundHandler()).ServeHTTP(w, httptest.NewRequest(http.MethodGet, MetadataPath, nil))
	g.Expect(w.Code).To(Equal(http.StatusNotFound), "no metadata document without an authorization server")

	_, err := New(context.Background(), config.Auth{}, testPublicURL, Options{})
	g.Expect(err).To(MatchError(ContainSubstring("no authentication configured")))
}

func TestRequireScopesAndChallenge(t *testing.T) {
	g := NewWithT(t)
	p := Principal{Subject: "a", Scopes: []string{"tools:read"}}
	g.Expect(RequireScopes(p, nil)).To(Succeed())
	g.Expect(RequireScopes(p, []string{"tools:read"})).To(Succeed())
	err := RequireScopes(p, []string{"tools:read", "tools:write", "admin"})
	g.Expect(errors.Is(err, ErrInsufficientScope)).To(BeTrue())
	var se *ScopeError
	g.Expect(errors.As(err, &se)).To(BeTrue())
	g.Expect(se.Missing).To(Equal([]string{"tools:write", "admin"}))

	f := newFixture(t)
	w := httptest.NewRecorder()
	f.a.WriteInsufficientScope(w, post(""), []string{"tools:write", `evil"scope`}, nil)
	g.Expect(w.Code).To(Equal(http.StatusForbidden))
	g.Expect(w.Header().Get("WWW-Authenticate")).To(Equal(`Bearer error="insufficient_scope", scope="tools:write evilscope", resource_metadata="` + metadataURL + `"`))
	g.Expect(w.Body.String()).To(MatchJSON(`{"error":"insufficient_scope"}`))
}

func TestAPIKeyStore(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	dir := t.TempDir()
	writeFile(t, dir, "bot-1", []byte(HashAPIKey("first-secret-key")))
	writeFile(t, dir, "bot-2", []byte(HashAPIKey("second-secret-key")))
	opts := Options{Now: clk.Now}
	opts.defaults()
	s, err := newAPIKeyStore(dir, &opts)
	g.Expect(err).NotTo(HaveOccurred())
	k, ok := s.lookup("first-secret-key")
	g.Expect(ok).To(BeTrue())
	g.Expect(k.id).To(Equal("bot-1"))
	_, ok = s.lookup("first-secret-ke")
	g.Expect(ok).To(BeFalse())
	_, ok = s.lookup(HashAPIKey("first-secret-key"))
	g.Expect(ok).To(BeFalse(), "the stored hash is not itself a key")

	// Revocation and rotation apply after the reload interval; a removed key's revocation
	// is closed (its connections end), a kept key's stays open and keeps its serial.
	second, _ := s.lookup("second-secret-key")
	g.Expect(os.Remove(filepath.Join(dir, "bot-1"))).To(Succeed())
	writeFile(t, dir, "bot-3", []byte(HashAPIKey("third-secret-key")))
	clk.Advance(time.Minute)
	_, ok = s.lookup("first-secret-key")
	g.Expect(ok).To(BeFalse())
	g.Expect(k.revoked).To(BeClosed())
	third, _ := s.lookup("third-secret-key")
	g.Expect(third.id).To(Equal("bot-3"))
	secondAgain, _ := s.lookup("second-secret-key")
	g.Expect(secondAgain.serial).To(Equal(second.serial))
	g.Expect(secondAgain.revoked).NotTo(BeClosed())
	writeFile(t, dir, "bot-2", []byte(HashAPIKey("rotated-second-key")))
	clk.Advance(time.Minute)
	rotated, _ := s.lookup("rotated-second-key")
	g.Expect(rotated.serial).NotTo(Equal(second.serial), "a new value under the same id is another key")
	g.Expect(second.revoked).To(BeClosed())

	for name, content := range map[string]string{
		"plain key":   "first-secret-key",
		"short hash":  "sha256:abcd",
		"other algo":  "md5:" + strings.Repeat("a", 32),
		"bad hex":     "sha256:" + strings.Repeat("z", 64),
		"bad id/name": "",
	} {
		bad := t.TempDir()
		if name == "bad id/name" {
			writeFile(t, bad, "has space", []byte(HashAPIKey("x")))
		} else {
			writeFile(t, bad, "k", []byte(content))
		}
		_, err := newAPIKeyStore(bad, &opts)
		g.Expect(err).To(HaveOccurred(), name)
		g.Expect(err.Error()).NotTo(ContainSubstring("first-secret-key"))
	}
	dup := t.TempDir()
	writeFile(t, dup, "a", []byte(HashAPIKey("same")))
	writeFile(t, dup, "b", []byte(HashAPIKey("same")))
	_, err = newAPIKeyStore(dup, &opts)
	g.Expect(err).To(MatchError(ContainSubstring("same hash")))
}

// Removing a key revokes it at the next reload even when a file added at the same time is
// broken (say, the plaintext key pasted instead of its hash): the broken file is skipped
// and reported, the other keys still load, and the removed one is refused.
func TestAPIKeyRevocationAppliesDespiteABrokenFile(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	dir := t.TempDir()
	writeFile(t, dir, "leaked", []byte(HashAPIKey("leaked-secret-key")))
	writeFile(t, dir, "bot-2", []byte(HashAPIKey("second-secret-key")))
	var logs strings.Builder
	opts := Options{Now: clk.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	opts.defaults()
	s, err := newAPIKeyStore(dir, &opts)
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(os.Remove(filepath.Join(dir, "leaked"))).To(Succeed())
	writeFile(t, dir, "bot-3", []byte("third-secret-key"))
	clk.Advance(time.Minute)
	_, ok := s.lookup("leaked-secret-key")
	g.Expect(ok).To(BeFalse(), "the removed key is revoked")
	k, ok := s.lookup("second-secret-key")
	g.Expect(ok).To(BeTrue())
	g.Expect(k.id).To(Equal("bot-2"))
	_, ok = s.lookup("third-secret-key")
	g.Expect(ok).To(BeFalse())
	g.Expect(logs.String()).To(ContainSubstring(`bot-3`))
	g.Expect(logs.String()).NotTo(ContainSubstring("third-secret-key"))
}

// A wall-clock step (an NTP correction) neither expires a ticket early nor revives a
// redeemed one: forward past its expiry (so its replay-set entry is swept), then back.
// Expiry runs on the monotonic clock, which steps never move.
func TestTicketsIgnoreWallClockSteps(t *testing.T) {
	g := NewWithT(t)
	wall := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	var mono time.Duration
	opts := Options{Now: func() time.Time { return wall }}
	opts.defaults()
	tk := handMadeTicketer(fuzzTicketKey(), 30*time.Second, &opts, 100)
	tk.elapsed = func() time.Duration { return mono }
	redeem := func(ticket string) error { _, err := tk.redeem(ticket, testOrigin); return err }
	issue := func() string {
		ticket, _, err := tk.issue(Principal{Subject: "alice"}, testOrigin)
		g.Expect(err).NotTo(HaveOccurred())
		return ticket
	}

	first, second := issue(), issue()
	g.Expect(redeem(first)).To(Succeed())
	wall = wall.Add(time.Hour) // step forward
	mono += time.Second
	g.Expect(redeem(second)).To(Succeed(), "not expired by the step")
	mono += 40 * time.Second // the replay set is swept at the next redemption
	third := issue()
	g.Expect(redeem(third)).To(Succeed())
	g.Expect(tk.outstanding()).To(Equal(1), "first and second were swept")
	wall = wall.Add(-time.Hour) // and back
	g.Expect(redeem(first)).To(MatchError(ErrTicketExpired))
	g.Expect(redeem(second)).To(MatchError(ErrTicketExpired))
	g.Expect(redeem(third)).To(MatchError(ErrTicketReplayed))
}

// A ticket that redeem would refuse for its size (a credential with very many scopes, a
// long Origin) is not minted: the client learns it at the ticket request.
func TestATicketTooLargeToRedeemIsNotIssued(t *testing.T) {
	g := NewWithT(t)
	opts := Options{Now: time.Now}
	opts.defaults()
	tk := handMadeTicketer(fuzzTicketKey(), 30*time.Second, &opts, 100)
	scopes := make([]string, 2000)
	for i := range scopes {
		scopes[i] = fmt.Sprintf("scope-%d", i)
	}
	_, _, err := tk.issue(Principal{Subject: "alice", Scopes: scopes}, testOrigin)
	g.Expect(err).To(MatchError(ErrTicketTooLarge))
	ticket, _, err := tk.issue(Principal{Subject: "alice", Scopes: scopes[:100]}, testOrigin)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = tk.redeem(ticket, testOrigin)
	g.Expect(err).NotTo(HaveOccurred())
}

// failureCounter is a FailureThrottle admitting a client until it failed limit times.
type failureCounter struct {
	mu       sync.Mutex
	limit    int
	failures int
}

func (c *failureCounter) Admit(*http.Request) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return 1500 * time.Millisecond, c.failures < c.limit
}

func (c *failureCounter) Failed(*http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures++
}

// Failed credentials are charged to the throttle; once it refuses, Middleware answers 429
// before verifying anything, except a JWT it verified earlier (cached), which costs
// nothing to accept again.
func TestFailedAuthenticationsAreThrottled(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	th := &failureCounter{limit: 2}
	f.a = newAuth(t, f.cfg, Options{Now: f.clk.Now, OnDecision: f.dec.record, WebSocketPath: "/mcp", Throttle: th})
	good := f.token(t)
	w, _ := f.serve(post("Bearer " + good))
	g.Expect(w.Code).To(Equal(http.StatusOK))

	w, _ = f.serve(post(""))
	g.Expect(w.Code).To(Equal(http.StatusUnauthorized), "no credentials: the OAuth discovery answer, not a failure")
	for range 2 {
		w, _ = f.serve(post("Bearer mcpk_guess-0123456789abcdef"))
		g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
	}
	g.Expect(th.failures).To(Equal(2))

	w, seen := f.serve(post("Bearer mcpk_guess-0123456789abcdef"))
	g.Expect(w.Code).To(Equal(http.StatusTooManyRequests))
	g.Expect(seen).To(BeNil())
	g.Expect(w.Header().Get("Retry-After")).To(Equal("2"))
	g.Expect(w.Body.String()).To(ContainSubstring("too_many_failed_authentications"))
	g.Expect(th.failures).To(Equal(2), "a refused attempt is not verified, so not charged")
	g.Expect(f.dec.list()[len(f.dec.list())-1]).To(Equal(Decision{Outcome: OutcomeDeny, Reason: "too_many_failures"}))

	w, _ = f.serve(post("Bearer " + good))
	g.Expect(w.Code).To(Equal(http.StatusOK), "a token verified earlier still works")
	w, _ = f.serve(post("Bearer " + f.apiKey))
	g.Expect(w.Code).To(Equal(http.StatusTooManyRequests), "credentials not known to be good wait like any other")
}
