package origin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

func ptr[T any](v T) *T { return &v }

func mustNew(t *testing.T, cfg config.Origins, publicURL string) *Checker {
	t.Helper()
	c, err := New(cfg, publicURL)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func TestAllowed(t *testing.T) {
	c := mustNew(t, config.Origins{Allowed: []string{
		"https://app.example",
		"http://localhost:3000",
		"https://*.corp.example",
		"http://*.dev.example:8080",
		"https://[::1]:8443",
		"https://explicit.example:443",
	}}, "")
	for origin, want := range map[string]bool{
		"https://app.example":                true,
		"https://app.example:443":            true, // default port normalised
		"https://APP.example":                true, // hosts are case-insensitive
		"http://app.example":                 false,
		"https://app.example:8443":           false,
		"https://app.example.evil":           false,
		"https://evilapp.example":            false,
		"https://x.app.example":              false,
		"https://app.example/":               false,
		"https://app.example/path":           false,
		"https://user@app.example":           false,
		"https://app.example?x":              false,
		"https://app.example#x":              false,
		" https://app.example":               false,
		"https://app.example ":               false,
		"https://app.example:0443":           false,
		"https://app.example:99999":          false,
		"https://app.example:":               false,
		"http://localhost:3000":              true,
		"http://localhost":                   false,
		"https://localhost:3000":             false,
		"https://a.corp.example":             true,
		"https://a.b.corp.example":           true, // one or more labels
		"https://corp.example":               false,
		"https://.corp.example":              false,
		"https://a..corp.example":            false,
		"https://a.corp.example.":            false,
		"https://xcorp.example":              false,
		"https://a.corp.example:8443":        false,
		"http://a.corp.example":              false,
		"http://a.dev.example:8080":          true,
		"http://a.dev.example":               false,
		"https://[::1]:8443":                 true,
		"https://[::1]":                      false,
		"https://[::1%25eth0]:8443":          false,
		"https://explicit.example":           true,
		"null":                               false,
		"":                                   false,
		"file://":                            false,
		"chrome-extension://abcdef":          false,
		"https://*.corp.example":             false, // a wildcard is never a request origin
		"https://a.corp.example\x00":         false,
		"https://a.corp.example\r\nX-Evil:1": false,
	} {
		if got := c.Allowed(origin); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", origin, got, want)
		}
	}
}

func TestWildcardNeverMatchesIPs(t *testing.T) {
	g := NewWithT(t)
	c := mustNew(t, config.Origins{Allowed: []string{"https://*.0.0.1"}}, "")
	g.Expect(c.Allowed("https://127.0.0.1")).To(BeFalse())
	g.Expect(c.Allowed("https://a.0.0.1")).To(BeTrue())
}

func TestNewRefusesBadEntries(t *testing.T) {
	for _, cfg := range []config.Origins{
		{Allowed: []string{"*"}},
		{Allowed: []string{"https://a.example/"}},
		{Allowed: []string{"https://*.example"}},
		{Allowed: []string{"https://a.*.example"}},
		{AllowedHosts: []string{"a.example/x"}},
		{AllowedHosts: []string{"*.example:0"}},
	} {
		if _, err := New(cfg, ""); err == nil {
			t.Errorf("New(%+v) accepted a bad entry", cfg)
		}
	}
}

func TestHostAllowed(t *testing.T) {
	cases := []struct {
		name      string
		hosts     []string
		publicURL string
		want      map[string]bool
	}{
		{
			name:      "default: public host, localhost names, IP literals",
			publicURL: "https://mcp.example.com/mcp",
			want: map[string]bool{
				"mcp.example.com":      true,
				"mcp.example.com:8443": true,
				"MCP.example.com.":     true,
				"localhost:8443":       true,
				"app.localhost":        true,
				"10.0.0.7:8443":        true,
				"[::1]:8443":           true,
				"[fe80::1]":            true,
				"evil.example":         false,
				"mcp.example.com.evil": false,
				"":                     false,
				"a b":                  false,
				"[::1":                 false,
				"mcp.example.com:x":    false,
			},
		},
		{
			name:  "explicit list with ports and wildcards",
			hosts: []string{"api.example", "*.svc.cluster.local:8443", "web.example:443"},
			want: map[string]bool{
				"api.example":                    true,
				"api.example:1234":               true,
				"mcp.ns.svc.cluster.local:8443":  true,
				"mcp.ns.svc.cluster.local:9443":  false,
				"mcp.ns.svc.cluster.local":       false,
				"svc.cluster.local:8443":         false,
				"web.example":                    true, // no port means the default port
				"web.example:443":                true,
				"web.example:8443":               false,
				"localhost":                      false, // an explicit list replaces the defaults
				"127.0.0.1":                      true,  // IP literals cannot come from DNS rebinding
				"mcp.example.com":                false,
				"evil.api.example":               false,
				"mcp.ns.svc.cluster.local.:8443": true,
			},
		},
		{
			name:  "star disables the check",
			hosts: []string{"*"},
			want:  map[string]bool{"anything.example": true, "": false},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustNew(t, config.Origins{AllowedHosts: tc.hosts}, tc.publicURL)
			for host, want := range tc.want {
				if got := c.HostAllowed(host); got != want {
					t.Errorf("HostAllowed(%q) = %v, want %v", host, got, want)
				}
			}
		})
	}
}

// recorder is the protected handler; it fails the test if reached when it must not be.
type recorder struct{ called int }

func (h *recorder) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.called++
	w.WriteHeader(http.StatusOK)
}

func TestMiddlewareRefusesForeignOrigins(t *testing.T) {
	c := mustNew(t, config.Origins{Allowed: []string{"https://app.example"}}, "https://mcp.example")
	attacks := map[string]func() *http.Request{
		"POST": func() *http.Request {
			return httptest.NewRequest(http.MethodPost, "https://mcp.example/mcp", strings.NewReader(`{}`))
		},
		"SSE GET": func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "https://mcp.example/mcp", nil)
			r.Header.Set("Accept", "text/event-stream")
			return r
		},
		"WebSocket upgrade": func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "https://mcp.example/mcp", nil)
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			r.Header.Set("Sec-WebSocket-Version", "13")
			r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			return r
		},
		"preflight": func() *http.Request {
			r := httptest.NewRequest(http.MethodOptions, "https://mcp.example/mcp", nil)
			r.Header.Set("Access-Control-Request-Method", "POST")
			return r
		},
	}
	for name, mk := range attacks {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			for _, origins := range [][]string{{"https://evil.example"}, {"null"}, {"https://app.example", "https://evil.example"}} {
				next := &recorder{}
				r := mk()
				for _, o := range origins {
					r.Header.Add("Origin", o)
				}
				w := httptest.NewRecorder()
				c.Middleware(next).ServeHTTP(w, r)
				g.Expect(w.Code).To(Equal(http.StatusForbidden), "origins %v", origins)
				g.Expect(w.Body.String()).To(MatchJSON(`{"error":"origin_not_allowed"}`))
				g.Expect(w.Header().Get("Access-Control-Allow-Origin")).To(BeEmpty())
				g.Expect(next.called).To(BeZero(), "the protected handler ran for origins %v", origins)
			}

			next := &recorder{}
			r := mk()
			r.Header.Set("Origin", "https://app.example")
			w := httptest.NewRecorder()
			c.Middleware(next).ServeHTTP(w, r)
			g.Expect(w.Header().Get("Access-Control-Allow-Origin")).To(Equal("https://app.example"))
			if name == "preflight" {
				g.Expect(w.Code).To(Equal(http.StatusNoContent))
				g.Expect(w.Header().Get("Access-Control-Allow-Headers")).To(ContainSubstring("Authorization"))
				g.Expect(next.called).To(BeZero())
			} else {
				g.Expect(w.Code).To(Equal(http.StatusOK))
				g.Expect(next.called).To(Equal(1))
			}
		})
	}
}

func TestMiddlewareMissingOriginPolicy(t *testing.T) {
	for _, allow := range []bool{true, false} {
		g := NewWithT(t)
		c := mustNew(t, config.Origins{AllowMissing: ptr(allow)}, "https://mcp.example")
		next := &recorder{}
		w := httptest.NewRecorder()
		c.Middleware(next).ServeHTTP(w, httptest.NewRequest(http.MethodPost, "https://mcp.example/mcp", nil))
		if allow {
			g.Expect(w.Code).To(Equal(http.StatusOK))
			g.Expect(next.called).To(Equal(1))
		} else {
			g.Expect(w.Code).To(Equal(http.StatusForbidden))
			g.Expect(next.called).To(BeZero())
		}
	}
}

func TestMiddlewareRefusesRebindingHost(t *testing.T) {
	g := NewWithT(t)
	c := mustNew(t, config.Origins{}, "https://mcp.example")
	next := &recorder{}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "http://rebind.attacker.example/mcp", nil)
	c.Middleware(next).ServeHTTP(w, r)
	g.Expect(w.Code).To(Equal(http.StatusMisdirectedRequest))
	g.Expect(w.Body.String()).To(MatchJSON(`{"error":"host_not_allowed"}`))
	g.Expect(next.called).To(BeZero())
}

func TestGuardReportsEachRefusal(t *testing.T) {
	g := NewWithT(t)
	c := mustNew(t, config.Origins{Allowed: []string{"https://app.example"}}, "https://mcp.example")
	var reasons []string
	next := &recorder{}
	h := c.Guard(func(reason string) { reasons = append(reasons, reason) })(next)
	for _, tc := range []struct {
		target, origin string
		status         int
	}{
		{"http://rebind.attacker.example/mcp", "https://app.example", http.StatusMisdirectedRequest},
		{"https://mcp.example/mcp", "https://evil.example", http.StatusForbidden},
		{"https://mcp.example/mcp", "", http.StatusOK}, // missing Origin allowed by default
		{"https://mcp.example/mcp", "https://app.example", http.StatusOK},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, tc.target, nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		h.ServeHTTP(w, r)
		g.Expect(w.Code).To(Equal(tc.status), tc.target+" "+tc.origin)
	}
	g.Expect(reasons).To(Equal([]string{"host", "origin"}))
	g.Expect(next.called).To(Equal(2))
}

func TestAllowHeadersIsBounded(t *testing.T) {
	g := NewWithT(t)
	g.Expect(allowHeaders("content-type, mcp-session-id")).To(Equal("content-type, mcp-session-id"))
	g.Expect(allowHeaders("x\r\nSet-Cookie: a")).To(Equal(defaultAllowHeaders))
	g.Expect(allowHeaders(strings.Repeat("a", 2000))).To(Equal(defaultAllowHeaders))
}

// FuzzOrigin checks that origin and host parsing never panic and that whatever passes is a
// plain serialised origin matching the allowlist.
func FuzzOrigin(f *testing.F) {
	for _, s := range []string{"https://app.example", "https://a.corp.example:443", "null", "https://[::1]:8443", "http://x.corp.example", "https://a.corp.example.", "https://u@app.example"} {
		f.Add(s)
	}
	c, err := New(config.Origins{Allowed: []string{"https://app.example", "https://*.corp.example"}, AllowedHosts: []string{"*.corp.example:8443", "app.example"}}, "")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if c.Allowed(s) {
			o, ok := parseOrigin(s, false)
			if !ok || o.scheme != "https" || o.port != "443" {
				t.Fatalf("allowed %q parses as %+v", s, o)
			}
			if o.host != "app.example" && !strings.HasSuffix(o.host, ".corp.example") {
				t.Fatalf("allowed %q has foreign host %q", s, o.host)
			}
			if strings.ContainsAny(s[len("https://"):], "/?#@\\ \t\r\n\x00") {
				t.Fatalf("allowed %q carries more than an origin", s)
			}
		}
		if c.HostAllowed(s) {
			h, ok := parseHost(strings.ToLower(s), false)
			if !ok || strings.ContainsAny(s, "/?#@\\ \t\r\n\x00*") {
				t.Fatalf("host %q allowed but malformed", s)
			}
			name := strings.TrimSuffix(h.host, ".")
			if name != "app.example" && !(strings.HasSuffix(name, ".corp.example") && h.port == "8443") {
				t.Fatalf("host %q allowed but not listed", s)
			}
		}
	})
}

func TestHostGuardChecksOnlyTheHost(t *testing.T) {
	g := NewWithT(t)
	c := mustNew(t, config.Origins{Allowed: []string{"https://app.example"}, AllowMissing: ptr(false)}, "https://mcp.example")
	var reasons []string
	next := &recorder{}
	h := c.HostGuard(func(reason string) { reasons = append(reasons, reason) })(next)
	for _, tc := range []struct {
		target, origin string
		status         int
	}{
		{"http://rebind.attacker.example/.well-known/oauth-protected-resource", "", http.StatusMisdirectedRequest},
		{"https://mcp.example/.well-known/oauth-protected-resource", "https://evil.example", http.StatusOK},
		{"https://mcp.example/.well-known/oauth-protected-resource", "", http.StatusOK},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, tc.target, nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		h.ServeHTTP(w, r)
		g.Expect(w.Code).To(Equal(tc.status), tc.target+" "+tc.origin)
	}
	g.Expect(reasons).To(Equal([]string{"host"}))
	g.Expect(next.called).To(Equal(2))
}
