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
		"no auth":         {`tls: {insecure: true}`, "auth.anonymous: true"},
		"no cert":         {"auth: {anonymous: true}", "tls.certFile"},
		"star origin":     {"tls: {insecure: true}\nauth: {anonymous: true}\norigins: {allowed: ['*']}", "origins.allowed[0]"},
		"origin path":     {"tls: {insecure: true}\nauth: {anonymous: true}\norigins: {allowed: ['https://a.example/x']}", "must not have a path"},
		"hs256":           {"tls: {insecure: true}\nauth: {jwt: [{issuer: x, audiences: [a], keyFiles: [{path: k, algorithm: HS256}]}]}", "keyFiles[0].algorithm"},
		"two key sources": {"tls: {insecure: true}\nauth: {jwt: [{issuer: x, audiences: [a], discovery: true, jwksURL: 'https://x/jwks'}]}", "exactly one of"},
		"unknown field":   {"tls: {insecure: true}\nauth: {anonymous: true}\nbogus: 1", "bogus"},
		"bad transport":   {"tls: {insecure: true}\nauth: {anonymous: true}\nendpoint: {transports: [grpc]}", "endpoint.transports[0]"},
		"http no url":     {"tls: {insecure: true}\nauth: {anonymous: true}\nupstream: {transport: http}", "upstream.url"},
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
