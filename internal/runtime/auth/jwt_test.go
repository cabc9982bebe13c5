package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// keyFileAuth is an Authenticator as the operator configures it: one ES256 key file, plus an
// RS256 key file for the algorithm-confusion cases.
func keyFileAuth(t *testing.T, clk *clock) (*Authenticator, []byte) {
	t.Helper()
	testKeys(t)
	dir := t.TempDir()
	rsaPEM := pemPublic(t, &rsaKey.PublicKey)
	cfg := config.Auth{JWT: []config.JWTProvider{{
		Issuer: testIssuer,
		KeyFiles: []config.KeyFile{
			{Path: writeFile(t, dir, "es.pub", pemPublic(t, &ecKey.PublicKey)), Algorithm: "ES256"},
			{Path: writeFile(t, dir, "rs.pub", rsaPEM), Algorithm: "RS256"},
		},
		Leeway: config.D(30 * time.Second),
	}}}
	return newAuth(t, cfg, Options{Now: clk.Now}), rsaPEM
}

func hs256(secret []byte, c map[string]any) string {
	tok := unsigned(map[string]any{"alg": "HS256", "typ": "JWT"}, c, "")
	signing := strings.TrimSuffix(tok, ".")
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestVerifyTokenKeyFiles(t *testing.T) {
	clk := newClock()
	a, rsaPEM := keyFileAuth(t, clk)
	now := clk.Now()
	with := func(mut func(jwt.MapClaims)) jwt.MapClaims {
		c := claims(now)
		mut(c)
		return c
	}
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)

	cases := []struct {
		name  string
		token string
		want  error // nil: valid
	}{
		{"ES256 valid", sign(t, jwt.SigningMethodES256, ecKey, "", claims(now)), nil},
		{"RS256 valid", sign(t, jwt.SigningMethodRS256, rsaKey, "any-kid", claims(now)), nil},
		{"expired within leeway", sign(t, jwt.SigningMethodES256, ecKey, "", with(func(c jwt.MapClaims) { c["exp"] = now.Add(-20 * time.Second).Unix() })), nil},
		{"aud as list", sign(t, jwt.SigningMethodES256, ecKey, "", with(func(c jwt.MapClaims) { c["aud"] = []string{"other", testPublicURL} })), nil},
		{"expired", sign(t, jwt.SigningMethodES256, ecKey, "", with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), ErrExpired},
		{"no exp", sign(t, jwt.SigningMethodES256, ecKey, "", with(func(c jwt.MapClaims) { delete(c, "exp") })), ErrMissingClaim},
		{"not yet valid", sign(t, jwt.SigningMethodES256, ecKey, "", with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), ErrNotYetValid},
		{"issued in the future", sign(t, jwt.SigningMethodES256, ecKey, "", with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() })), ErrNotYetValid},
		{"wrong aud", sign(t, jwt.SigningMethodES256, ecKey, "", with(func(c jwt.MapClaims) { c["aud"] = "https://other.example/mcp" })), ErrAudience},
		{"no aud", sign(t, jwt.SigningMethodES256, ecKey, "", with(func(c jwt.MapClaims) { delete(c, "aud") })), ErrMissingClaim},
		{"wrong iss", sign(t, jwt.SigningMethodES256, ecKey, "", with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), ErrUnknownIssuer},
		{"no sub", sign(t, jwt.SigningMethodES256, ecKey, "", with(func(c jwt.MapClaims) { delete(c, "sub") })), ErrMissingClaim},
		{"foreign key", sign(t, jwt.SigningMethodES256, ecKey2, "", claims(now)), ErrSignature},
		{"ES384 not pinned", sign(t, jwt.SigningMethodES384, ecKey384, "", claims(now)), ErrAlgorithm},
		{"RS key pinned to RS256 refuses PS256", sign(t, jwt.SigningMethodPS256, rsaKey, "", claims(now)), ErrAlgorithm},
		{"alg none", unsigned(map[string]any{"alg": "none", "typ": "JWT"}, claims(now), ""), ErrAlgorithm},
		{"alg None", unsigned(map[string]any{"alg": "None"}, claims(now), ""), ErrAlgorithm},
		{"alg missing", unsigned(map[string]any{"typ": "JWT"}, claims(now), "c2ln"), ErrAlgorithm},
		{"RS256 public key PEM as HS256 secret", hs256(rsaPEM, claims(now)), ErrAlgorithm},
		{"RS256 public key DER as HS256 secret", hs256(rsaDER, claims(now)), ErrAlgorithm},
		{"ES256 header, RS256 signature", func() string {
			rs := sign(t, jwt.SigningMethodRS256, rsaKey, "", claims(now))
			es := sign(t, jwt.SigningMethodES256, ecKey, "", claims(now))
			return strings.Join(strings.Split(es, ".")[:2], ".") + "." + strings.Split(rs, ".")[2]
		}(), ErrSignature},
		{"tampered claims", func() string {
			s := strings.Split(sign(t, jwt.SigningMethodES256, ecKey, "", claims(now)), ".")
			c := claims(now)
			c["sub"] = "admin"
			return s[0] + "." + strings.Split(unsigned(map[string]any{}, c, ""), ".")[1] + "." + s[2]
		}(), ErrSignature},
		{"crit names an extension", func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims(now))
			tok.Header["crit"] = []string{"exp-by-deadline"}
			tok.Header["exp-by-deadline"] = true
			s, err := tok.SignedString(ecKey)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}(), ErrCritical},
		{"garbage", "not.a.jwt", ErrMalformed},
		{"too long", strings.Repeat("a", MaxTokenBytes+1), ErrTooLong},
		{"empty", "", ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			p, err := a.VerifyToken(context.Background(), tc.token)
			if tc.want == nil {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(sansExpiry(p)).To(Equal(Principal{Subject: "alice", Issuer: testIssuer, Method: MethodJWT, Scopes: []string{"tools:read", "tools:write"}}))
				g.Expect(p.Expires).To(BeTemporally("==", expiresOf(t, tc.token)), "valid as long as the verification accepts it")
				return
			}
			g.Expect(err).To(MatchError(ErrInvalidToken))
			g.Expect(errors.Is(err, tc.want)).To(BeTrue(), "got %v, want %v", err, tc.want)
			assertNoLeak(t, err.Error(), tc.token)
		})
	}
}

func TestScopeClaims(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want []string
	}{
		{"a b  c", []string{"a", "b", "c"}},
		{[]any{"a", 1, "", "b"}, []string{"a", "b"}},
		{42.0, nil},
		{nil, nil},
	} {
		NewWithT(t).Expect(scopesFrom(tc.v)).To(Equal(tc.want), "%v", tc.v)
	}
}

func TestNewRefusesUnsafeKeyConfig(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	ecPub := writeFile(t, dir, "ec.pub", pemPublic(t, &ecKey.PublicKey))
	ec384 := writeFile(t, dir, "ec384.pub", pemPublic(t, &ecKey384.PublicKey))
	priv, _ := x509.MarshalECPrivateKey(ecKey)
	privFile := writeFile(t, dir, "ec.key", []byte("-----BEGIN EC PRIVATE KEY-----\n"+base64.StdEncoding.EncodeToString(priv)+"\n-----END EC PRIVATE KEY-----\n"))
	cases := map[string]config.JWTProvider{
		"HS256 key file":         {Issuer: testIssuer, KeyFiles: []config.KeyFile{{Path: ecPub, Algorithm: "HS256"}}},
		"none key file":          {Issuer: testIssuer, KeyFiles: []config.KeyFile{{Path: ecPub, Algorithm: "none"}}},
		"EC key pinned RS256":    {Issuer: testIssuer, KeyFiles: []config.KeyFile{{Path: ecPub, Algorithm: "RS256"}}},
		"P-384 key pinned ES256": {Issuer: testIssuer, KeyFiles: []config.KeyFile{{Path: ec384, Algorithm: "ES256"}}},
		"private key file":       {Issuer: testIssuer, KeyFiles: []config.KeyFile{{Path: privFile, Algorithm: "ES256"}}},
		"missing file":           {Issuer: testIssuer, KeyFiles: []config.KeyFile{{Path: dir + "/nope", Algorithm: "ES256"}}},
		"HS256 for JWKS":         {Issuer: testIssuer, JWKSURL: "https://idp.example/jwks", Algorithms: []string{"HS256"}},
		"no key source":          {Issuer: testIssuer},
	}
	for name, p := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := New(context.Background(), config.Auth{JWT: []config.JWTProvider{p}}, testPublicURL, Options{})
			NewWithT(t).Expect(err).To(HaveOccurred())
		})
	}
}

func TestKeyFileRotationIsPickedUp(t *testing.T) {
	g := NewWithT(t)
	testKeys(t)
	clk := newClock()
	dir := t.TempDir()
	path := writeFile(t, dir, "jwt.pub", pemPublic(t, &ecKey.PublicKey))
	a := newAuth(t, config.Auth{JWT: []config.JWTProvider{{Issuer: testIssuer, KeyFiles: []config.KeyFile{{Path: path, Algorithm: "ES256"}}}}}, Options{Now: clk.Now})

	writeFile(t, dir, "jwt.pub", pemPublic(t, &ecKey2.PublicKey))
	_, err := a.VerifyToken(context.Background(), sign(t, jwt.SigningMethodES256, ecKey2, "", claims(clk.Now())))
	g.Expect(err).To(MatchError(ErrSignature), "the old key stays until the reload interval")

	clk.Advance(time.Minute)
	_, err = a.VerifyToken(context.Background(), sign(t, jwt.SigningMethodES256, ecKey2, "", claims(clk.Now())))
	g.Expect(err).NotTo(HaveOccurred())
	_, err = a.VerifyToken(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "", claims(clk.Now())))
	g.Expect(err).To(MatchError(ErrSignature), "the rotated-out key is refused")

	writeFile(t, dir, "jwt.pub", []byte("garbage"))
	clk.Advance(time.Minute)
	_, err = a.VerifyToken(context.Background(), sign(t, jwt.SigningMethodES256, ecKey2, "", claims(clk.Now())))
	g.Expect(err).NotTo(HaveOccurred(), "a broken file keeps the last good keys")
}

// With two key files, one broken at a reload keeps only its own keys: a key rotated out of
// the other file in the same reload is refused.
func TestABrokenKeyFileDoesNotKeepAnotherFilesRotatedKey(t *testing.T) {
	g := NewWithT(t)
	testKeys(t)
	clk := newClock()
	dir := t.TempDir()
	first := writeFile(t, dir, "first.pub", pemPublic(t, &ecKey.PublicKey))
	second := writeFile(t, dir, "second.pub", pemPublic(t, &rsaKey.PublicKey))
	a := newAuth(t, config.Auth{JWT: []config.JWTProvider{{Issuer: testIssuer, KeyFiles: []config.KeyFile{
		{Path: first, Algorithm: "ES256"}, {Path: second, Algorithm: "RS256"},
	}}}}, Options{Now: clk.Now})

	writeFile(t, dir, "first.pub", pemPublic(t, &ecKey2.PublicKey)) // ecKey leaked: rotated out
	writeFile(t, dir, "second.pub", []byte("garbage"))
	clk.Advance(time.Minute)
	_, err := a.VerifyToken(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "", claims(clk.Now())))
	g.Expect(err).To(MatchError(ErrSignature), "the key rotated out of the first file is refused")
	_, err = a.VerifyToken(context.Background(), sign(t, jwt.SigningMethodES256, ecKey2, "", claims(clk.Now())))
	g.Expect(err).NotTo(HaveOccurred(), "the first file's new key is accepted")
	_, err = a.VerifyToken(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey, "", claims(clk.Now())))
	g.Expect(err).NotTo(HaveOccurred(), "the broken second file keeps its last good key")
}
