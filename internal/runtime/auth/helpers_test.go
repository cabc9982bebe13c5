package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

const (
	testIssuer    = "https://demo.team-a.mcpfleet.dev"
	testPublicURL = "https://mcp.example/mcp"
	testOrigin    = "https://app.example"
)

var (
	keysOnce sync.Once
	ecKey    *ecdsa.PrivateKey // the operator-style ES256 key
	ecKey2   *ecdsa.PrivateKey
	ecKey384 *ecdsa.PrivateKey
	rsaKey   *rsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		gen := func(c elliptic.Curve) *ecdsa.PrivateKey {
			k, err := ecdsa.GenerateKey(c, rand.Reader)
			if err != nil {
				panic(err)
			}
			return k
		}
		ecKey, ecKey2, ecKey384 = gen(elliptic.P256()), gen(elliptic.P256()), gen(elliptic.P384())
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
}

// clock is a manual clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func pemPublic(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// claims returns valid claims at now for the test issuer and public URL.
func claims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":   testIssuer,
		"sub":   "alice",
		"aud":   testPublicURL,
		"exp":   now.Add(5 * time.Minute).Unix(),
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"scope": "tools:read tools:write",
	}
}

func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsigned builds a token with an arbitrary header and an empty or given signature.
func unsigned(header map[string]any, c jwt.MapClaims, sig string) string {
	h, _ := json.Marshal(header)
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(b) + "." + sig
}

// jwksServer serves a JWKS that tests can swap, counting fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	fetches int
	handler http.HandlerFunc // overrides the JWKS when set
}

func newJWKSServer(t testing.TB, keys ...jose.JSONWebKey) *jwksServer {
	s := &jwksServer{}
	s.set(t, keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.fetches++
		body, h := s.body, s.handler
		s.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(t testing.TB, keys ...jose.JSONWebKey) {
	t.Helper()
	body, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.body = body
	s.mu.Unlock()
}

func (s *jwksServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

func jwk(pub crypto.PublicKey, kid, alg string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"}
}

// decisions records OnDecision calls.
type decisions struct {
	mu  sync.Mutex
	all []Decision
}

func (d *decisions) record(_ *http.Request, dec Decision) {
	d.mu.Lock()
	d.all = append(d.all, dec)
	d.mu.Unlock()
}

func (d *decisions) list() []Decision {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Decision(nil), d.all...)
}

// assertNoLeak fails if any distinctive piece of a credential appears in s.
func assertNoLeak(t testing.TB, s, credential string) {
	t.Helper()
	for _, part := range strings.FieldsFunc(credential, func(r rune) bool { return r == '.' }) {
		if len(part) >= 8 && strings.Contains(s, part) {
			t.Fatalf("credential material %q leaked into %q", part, s)
		}
	}
	if len(credential) >= 8 && strings.Contains(s, credential) {
		t.Fatalf("credential leaked into %q", s)
	}
}

func newAuth(t testing.TB, cfg config.Auth, opts Options) *Authenticator {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a, err := New(context.Background(), cfg, testPublicURL, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

func describe(v any) string { return fmt.Sprintf("%+v", v) }

// handMadeTicketer is a ticketer with a chosen key and replay-set bound, and no replica id
// (so tickets made outside it, like the fuzz seed, are accepted).
func handMadeTicketer(key []byte, ttl time.Duration, opts *Options, maxUsed int) *ticketer {
	t := &ticketer{key: key, ttl: ttl, opts: opts, used: map[string]time.Duration{}, maxUsed: maxUsed}
	t.startClock()
	return t
}

// expiresOf is the Principal.Expires a token signed here yields: its exp plus the 30 s
// leeway the test providers are configured with.
func expiresOf(t testing.TB, token string) time.Time {
	t.Helper()
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil || c.ExpiresAt == nil {
		t.Fatalf("token without exp: %v", err)
	}
	return c.ExpiresAt.Add(30 * time.Second)
}

// sansExpiry returns p without its expiry, to compare the rest of it.
func sansExpiry(p Principal) Principal {
	p.Expires, p.Revoked, p.apiKeySerial = time.Time{}, nil, 0
	return p
}
