package config

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

const minimal = `
tls: {certFile: /tls/tls.crt, keyFile: /tls/tls.key}
endpoint: {publicURL: "https://srv.ns.svc:8443/mcp"}
auth:
  jwt:
  - issuer: https://issuer.example
    keyFiles: [{path: /auth/jwt.pub, algorithm: ES256}]
`

func TestParseDefaultsAndRoundTrip(t *testing.T) {
	g := NewWithT(t)
	c, err := Parse([]byte(minimal))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Listen.Address).To(Equal(":8443"))
	g.Expect(c.Endpoint.Transports).To(Equal([]string{TransportStreamableHTTP}))
	g.Expect(c.Auth.JWT[0].Audiences).To(Equal([]string{"https://srv.ns.svc:8443/mcp"}))
	g.Expect(c.Auth.WebSocket.Tickets.TTL.Duration).To(Equal(30 * time.Second))
	g.Expect(*c.Origins.AllowMissing).To(BeTrue())

	out, err := c.Marshal()
	g.Expect(err).NotTo(HaveOccurred())
	again, err := Parse(out)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).To(Equal(c))
}

func TestValidateNamesFieldAndFix(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"no auth":                   {`tls: {insecure: true}`, "auth.anonymous: true"},
		"no cert":                   {"auth: {anonymous: true}", "tls.certFile"},
		"star origin":               {"tls: {insecure: true}\nauth: {anonymous: true}\norigins: {allowed: ['*']}", "origins.allowed[0]"},
		"origin path":               {"tls: {insecure: true}\nauth: {anonymous: true}\norigins: {allowed: ['https://a.example/x']}", "must not have a path"},
		"hs256":                     {"tls: {insecure: true}\nauth: {jwt: [{issuer: x, audiences: [a], keyFiles: [{path: k, algorithm: HS256}]}]}", "keyFiles[0].algorithm"},
		"two key sources":           {"tls: {insecure: true}\nauth: {jwt: [{issuer: x, audiences: [a], discovery: true, jwksURL: 'https://x/jwks'}]}", "exactly one of"},
		"unknown field":             {"tls: {insecure: true}\nauth: {anonymous: true}\nbogus: 1", "bogus"},
		"bad transport":             {"tls: {insecure: true}\nauth: {anonymous: true}\nendpoint: {transports: [grpc]}", "endpoint.transports[0]"},
		"http no url":               {"tls: {insecure: true}\nauth: {anonymous: true}\nupstream: {transport: http}", "upstream.url"},
		"http discovery":            {"tls: {insecure: true}\nauth: {jwt: [{issuer: 'http://idp.corp.example', audiences: [a], discovery: true}]}", "auth.jwt[0].issuer: \"http://idp.corp.example\" must be an https URL when discovery is true"},
		"bad deny glob":             {"tls: {insecure: true}\nauth: {anonymous: true}\ntools: {deny: ['[a-']}", "tools.deny[0]"},
		"bad scope glob":            {"tls: {insecure: true}\nauth: {anonymous: true}\ntools: {scopes: [{tool: '[', scopes: [x]}]}", "tools.scopes[0].tool"},
		"share over max":            {"tls: {insecure: true}\nauth: {anonymous: true}\nupstream: {sessionMode: per-session, maxSessions: 4, maxSessionsPerPrincipal: 5}", "upstream.maxSessionsPerPrincipal: must be between 1 and upstream.maxSessions (4)"},
		"empty audience":            {"tls: {insecure: true}\nauth: {jwt: [{issuer: x, audiences: [a, ''], keyFiles: [{path: k, algorithm: ES256}]}]}", "auth.jwt[0].audiences[1]: must not be empty"},
		"negative body":             {"tls: {insecure: true}\nauth: {anonymous: true}\nlimits: {readBodyTimeout: -1s}", "limits.readBodyTimeout: must be positive"},
		"negative request timeout":  {"tls: {insecure: true}\nauth: {anonymous: true}\nupstream: {requestTimeout: -1s}", "upstream.requestTimeout: must be positive"},
		"negative shutdown grace":   {"tls: {insecure: true}\nauth: {anonymous: true}\nupstream: {shutdownGrace: -5s}", "upstream.shutdownGrace: must be positive"},
		"CA without client auth":    {"tls: {certFile: c, keyFile: k, clientCAFile: ca.crt}\nauth: {anonymous: true}", "tls.clientCAFile: client certificates are only verified with tls.clientAuth request or require"},
		"path of health":            {"tls: {insecure: true}\nauth: {anonymous: true}\nendpoint: {path: /healthz}", "endpoint.path: \"/healthz\" is a path the runtime serves itself"},
		"path under auth":           {"tls: {insecure: true}\nauth: {anonymous: true}\nendpoint: {path: /auth/ticket}", "endpoint.path: \"/auth/ticket\" is a path the runtime serves itself"},
		"path under well-known":     {"tls: {insecure: true}\nauth: {anonymous: true}\nendpoint: {path: /.well-known/mcp}", "endpoint.path: \"/.well-known/mcp\" is a path the runtime serves itself"},
		"sub-second ticket":         {"tls: {insecure: true}\nauth: {apiKeys: {dir: /k}, webSocket: {tickets: {ttl: 500ms}}}", "auth.webSocket.tickets.ttl: must be between 1s and 5m"},
		"hour-long auth frame wait": {"tls: {insecure: true}\nauth: {apiKeys: {dir: /k}, webSocket: {firstMessage: {timeout: 1h}}}", "auth.webSocket.firstMessage.timeout: must be positive and at most 60s"},
		"bad limit glob":            {"tls: {insecure: true}\nauth: {anonymous: true}\nlimits: {perTool: [{tool: 'x[', requestsPerSecond: 1, burst: 1}]}", "limits.perTool[0].tool"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestDiscoveryIssuerMustBeHTTPSOrLoopback(t *testing.T) {
	for issuer, ok := range map[string]bool{
		"https://idp.corp.example":       true,
		"https://idp.corp.example/realm": true,
		"http://127.0.0.1:8080":          true,
		"http://localhost:8080":          true,
		"http://idp.corp.example":        false,
		"http://idp.corp.example:443":    false,
		"ftp://localhost":                false,
		"idp.corp.example":               false,
		"https://":                       false,
	} {
		c := Config{TLS: TLS{Insecure: true}, Auth: Auth{JWT: []JWTProvider{{Issuer: issuer, Audiences: []string{"a"}, Discovery: true}}}}
		c.Default()
		err := c.Validate()
		if got := err == nil || !strings.Contains(err.Error(), "auth.jwt[0].issuer"); got != ok {
			t.Errorf("discovery issuer %q: accepted = %v, want %v (err: %v)", issuer, got, ok, err)
		}
	}
}

func TestValidateOrigin(t *testing.T) {
	for o, ok := range map[string]bool{
		"https://app.example.com": true,
		"http://localhost:3000":   true,
		"https://*.corp.example":  true,
		"https://*.com":           false,
		"*":                       false,
		"https://a.*.example":     false,
		"https://App.example.com": false,
		"ftp://a.example":         false,
		"https://a.example/":      false,
		"https://user@a.example":  false,
		"https://a.example?x=1":   false,
		"https://a.example:8443":  true,
	} {
		if err := ValidateOrigin(o); (err == nil) != ok {
			t.Errorf("ValidateOrigin(%q) = %v, want ok=%v", o, err, ok)
		}
	}
}

// A URL quoted in a refusal has its password masked: the error goes to the log.
func TestRefusedURLsAreQuotedWithoutTheirPassword(t *testing.T) {
	for name, yaml := range map[string]string{
		"upstream.url":             "tls: {insecure: true}\nauth: {anonymous: true}\nupstream: {transport: http, url: 'ftp://relay:s3cret@127.0.0.1/mcp'}",
		"unparseable upstream.url": "tls: {insecure: true}\nauth: {anonymous: true}\nupstream: {transport: http, url: 'http://relay:s3cret@[::1/mcp'}",
		"jwksURL":                  "tls: {insecure: true}\nauth: {jwt: [{issuer: x, audiences: [a], jwksURL: 'http://keys:s3cret@idp.example/jwks'}]}",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(yaml))
			if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "xxxxx") {
				t.Fatalf("want a refusal with the password masked, got %v", err)
			}
		})
	}
}
