package auth

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// countingKeys counts key lookups: one per full signature verification.
type countingKeys struct {
	keySource
	n atomic.Int64
}

func (c *countingKeys) lookup(ctx context.Context, kid, alg string) ([]verificationKey, error) {
	c.n.Add(1)
	return c.keySource.lookup(ctx, kid, alg)
}

func countLookups(a *Authenticator) *countingKeys {
	c := &countingKeys{keySource: a.providers[0].keys}
	a.providers[0].keys = c
	return c
}

func keyFileCacheAuth(t *testing.T, clk *clock, opts Options) (*Authenticator, string) {
	t.Helper()
	testKeys(t)
	dir := t.TempDir()
	path := writeFile(t, dir, "es.pub", pemPublic(t, &ecKey.PublicKey))
	opts.Now = clk.Now
	a := newAuth(t, config.Auth{JWT: []config.JWTProvider{{
		Issuer:   testIssuer,
		KeyFiles: []config.KeyFile{{Path: path, Algorithm: "ES256"}},
		Leeway:   config.D(30 * time.Second),
	}}}, opts)
	return a, path
}

func TestTokenCacheServesRepeatedTokens(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	a, _ := keyFileCacheAuth(t, clk, Options{})
	lookups := countLookups(a)
	ctx := context.Background()
	tok := sign(t, jwt.SigningMethodES256, ecKey, "", claims(clk.Now()))
	want := Principal{Subject: "alice", Issuer: testIssuer, Method: MethodJWT, Scopes: []string{"tools:read", "tools:write"}, Expires: expiresOf(t, tok)}

	for range 5 {
		p, err := a.VerifyToken(ctx, tok)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p).To(Equal(want))
	}
	g.Expect(lookups.n.Load()).To(Equal(int64(1)), "one verification for five uses")
	g.Expect(a.tokens.entries).To(HaveKey(sha256.Sum256([]byte(tok))), "keyed by the token's hash")

	// A caller appending to the scopes must not change what the next hit returns.
	p, _ := a.VerifyToken(ctx, tok)
	_ = append(p.Scopes, "admin")
	p, _ = a.VerifyToken(ctx, tok)
	g.Expect(p).To(Equal(want))

	// A different token is verified on its own.
	other := claims(clk.Now())
	other["sub"] = "bob"
	_, err := a.VerifyToken(ctx, sign(t, jwt.SigningMethodES256, ecKey, "", other))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(lookups.n.Load()).To(Equal(int64(2)))

	// Failures are not cached: a bad token is checked in full every time.
	bad := sign(t, jwt.SigningMethodES256, ecKey2, "", claims(clk.Now()))
	for range 3 {
		_, err := a.VerifyToken(ctx, bad)
		g.Expect(err).To(MatchError(ErrSignature))
	}
	g.Expect(lookups.n.Load()).To(Equal(int64(5)))

	// At most a minute: then the signature is checked again.
	clk.Advance(tokenCacheTTL)
	_, err = a.VerifyToken(ctx, tok)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(lookups.n.Load()).To(Equal(int64(6)))
}

func TestTokenCacheNeverOutlivesExp(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	a, _ := keyFileCacheAuth(t, clk, Options{})
	lookups := countLookups(a)
	ctx := context.Background()
	c := claims(clk.Now())
	c["exp"] = clk.Now().Add(20 * time.Second).Unix()
	tok := sign(t, jwt.SigningMethodES256, ecKey, "", c)

	_, err := a.VerifyToken(ctx, tok)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = a.VerifyToken(ctx, tok)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(lookups.n.Load()).To(Equal(int64(1)))

	// Past exp but inside the 30s leeway: still valid, but verified in full, not cached.
	clk.Advance(30 * time.Second)
	for range 2 {
		_, err = a.VerifyToken(ctx, tok)
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(lookups.n.Load()).To(Equal(int64(3)))

	// Past exp + leeway: refused with the expiry reason, though it was cached a minute ago.
	clk.Advance(25 * time.Second)
	_, err = a.VerifyToken(ctx, tok)
	g.Expect(err).To(MatchError(ErrExpired))
	g.Expect(a.tokens.len()).To(Equal(0))
}

func TestTokenCacheIsClearedWhenKeyFileRotates(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	a, path := keyFileCacheAuth(t, clk, Options{ReloadInterval: 10 * time.Second})
	ctx := context.Background()
	tok := sign(t, jwt.SigningMethodES256, ecKey, "", claims(clk.Now()))
	_, err := a.VerifyToken(ctx, tok)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(a.tokens.len()).To(Equal(1))

	// Re-reading an unchanged file keeps the cache.
	clk.Advance(10 * time.Second)
	_, err = a.VerifyToken(ctx, tok)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(a.tokens.len()).To(Equal(1))

	// The key is rotated out: at the next reload the cached token is refused.
	writeFile(t, filepath.Dir(path), "es.pub", pemPublic(t, &ecKey2.PublicKey))
	clk.Advance(10 * time.Second)
	_, err = a.VerifyToken(ctx, tok)
	g.Expect(err).To(MatchError(ErrSignature))
	g.Expect(a.tokens.len()).To(Equal(0))
}

func TestTokenCacheIsClearedWhenJWKSDropsTheKey(t *testing.T) {
	g := NewWithT(t)
	testKeys(t)
	clk := newClock()
	srv := newJWKSServer(t, jwk(&ecKey.PublicKey, "k1", "ES256"), jwk(&ecKey2.PublicKey, "k2", "ES256"))
	a := jwksAuth(t, srv.URL, clk, Options{RefreshInterval: 20 * time.Second})
	ctx := context.Background()
	tok := sign(t, jwt.SigningMethodES256, ecKey, "k1", claims(clk.Now()))
	_, err := a.VerifyToken(ctx, tok)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(a.tokens.len()).To(Equal(1))

	srv.set(t, jwk(&ecKey2.PublicKey, "k2", "ES256"))
	clk.Advance(20 * time.Second) // a hit finds the keys stale and refreshes them in the background
	g.Eventually(func() error {
		_, err := a.VerifyToken(ctx, tok)
		return err
	}).Should(MatchError(ErrUnknownKey))
	g.Expect(srv.count()).To(Equal(2))
}

func TestTokenCacheIsBounded(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	a, _ := keyFileCacheAuth(t, clk, Options{TokenCacheSize: 3})
	ctx := context.Background()
	for i := range 10 {
		c := claims(clk.Now())
		c["sub"] = string(rune('a' + i))
		p, err := a.VerifyToken(ctx, sign(t, jwt.SigningMethodES256, ecKey, "", c))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p.Subject).To(Equal(string(rune('a' + i))))
		g.Expect(a.tokens.len()).To(BeNumerically("<=", 3))
	}
	g.Expect(a.tokens.len()).To(Equal(3))
}

func TestTokenCacheCanBeTurnedOff(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	a, _ := keyFileCacheAuth(t, clk, Options{TokenCacheSize: -1})
	g.Expect(a.tokens).To(BeNil())
	lookups := countLookups(a)
	tok := sign(t, jwt.SigningMethodES256, ecKey, "", claims(clk.Now()))
	for range 3 {
		_, err := a.VerifyToken(context.Background(), tok)
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(lookups.n.Load()).To(Equal(int64(3)))
}
