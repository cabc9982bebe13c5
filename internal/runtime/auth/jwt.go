package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// verificationKey is a public key with the one algorithm it may verify.
type verificationKey struct {
	kid string
	alg string
	pub crypto.PublicKey
}

// keySource yields the keys a provider trusts. lookup returns the keys usable for a token
// with this kid and alg (kid "" or unknown to a source without kids: all keys of alg).
type keySource interface {
	lookup(ctx context.Context, kid, alg string) ([]verificationKey, error)
	// generation reloads or refreshes the keys when that is due (as lookup does) and
	// returns a number that changes whenever the set of keys changes: cached verifications
	// are only trusted while it stays the same.
	generation() uint64
}

// provider verifies tokens of one issuer.
type provider struct {
	issuer     string
	audiences  []string
	algs       []string // accepted token algorithms (parser WithValidMethods)
	leeway     time.Duration
	scopeClaim string
	keys       keySource
	now        func() time.Time
}

func newProvider(ctx context.Context, c config.JWTProvider, publicURL string, opts *Options) (*provider, error) {
	if c.Issuer == "" {
		return nil, errors.New("issuer is required")
	}
	p := &provider{
		issuer:     c.Issuer,
		audiences:  c.Audiences,
		leeway:     c.Leeway.Duration,
		scopeClaim: c.ScopeClaim,
		now:        opts.Now,
	}
	if len(p.audiences) == 0 && publicURL != "" {
		p.audiences = []string{publicURL}
	}
	if len(p.audiences) == 0 {
		return nil, errors.New("audiences are required when endpoint.publicURL is not set")
	}
	if p.scopeClaim == "" {
		p.scopeClaim = "scope"
	}
	if p.leeway < 0 || p.leeway > 5*time.Minute {
		return nil, errors.New("leeway must be between 0s and 5m")
	}
	switch {
	case len(c.KeyFiles) > 0:
		fk, err := newFileKeys(c.KeyFiles, opts)
		if err != nil {
			return nil, err
		}
		for _, k := range c.KeyFiles {
			if !slices.Contains(p.algs, k.Algorithm) {
				p.algs = append(p.algs, k.Algorithm)
			}
		}
		p.keys = fk
	case c.JWKSURL != "" || c.Discovery:
		algs := c.Algorithms
		if len(algs) == 0 {
			algs = []string{"RS256", "ES256"}
		}
		for _, a := range algs {
			if !asymmetric(a) {
				return nil, errors.New("algorithms may only list asymmetric JWS algorithms (HS* and none are refused)")
			}
		}
		p.algs = slices.Clone(algs)
		p.keys = newRemoteKeys(ctx, c.Issuer, c.JWKSURL, c.Discovery, algs, opts)
	default:
		return nil, errors.New("set one of jwksURL, discovery, keyFiles")
	}
	return p, nil
}

// verifyJWT picks the provider by the (unverified) issuer, then verifies the token fully
// against that provider's pinned algorithms and keys. A token verified earlier is served
// from the cache (see tokenCache) without parsing it again.
func (a *Authenticator) verifyJWT(ctx context.Context, token string) (Principal, error) {
	var key [sha256.Size]byte
	if a.tokens != nil {
		key = sha256.Sum256([]byte(token))
		if p, ok := a.tokens.get(key, a.opts.Now()); ok {
			return p, nil
		}
	}
	unverified, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if errors.Is(err, jwt.ErrTokenUnverifiable) { // an alg jwt-go does not know
		return Principal{}, invalid(ErrAlgorithm)
	}
	if err != nil {
		return Principal{}, invalid(ErrMalformed)
	}
	iss, _ := unverified.Claims.(jwt.MapClaims)["iss"].(string)
	lastErr := invalid(ErrUnknownIssuer)
	for _, p := range a.providers {
		if p.issuer != iss {
			continue
		}
		// Read before verifying: keys that change during the verification make the entry stale.
		gen := p.keys.generation()
		pr, exp, err := p.verify(ctx, token, unverified.Method.Alg())
		if err == nil {
			pr.Expires = exp.Add(p.leeway) // as long as the verification accepts it
			if a.tokens != nil {
				now := a.opts.Now()
				until := now.Add(tokenCacheTTL)
				if exp.Before(until) {
					until = exp
				}
				a.tokens.put(key, cachedToken{principal: pr, provider: p, keyGen: gen, until: until}, now)
			}
			return pr, nil
		}
		lastErr = err
	}
	return Principal{}, lastErr
}

// verify checks the token's signature and claims; on success it also returns its exp.
func (p *provider) verify(ctx context.Context, token, alg string) (Principal, time.Time, error) {
	// Pin the algorithm before any key is looked up: "none", HS* and anything the
	// provider does not list never reach a key.
	if !slices.Contains(p.algs, alg) {
		return Principal{}, time.Time{}, invalid(ErrAlgorithm)
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods(p.algs),
		jwt.WithIssuer(p.issuer),
		jwt.WithAudience(p.audiences...),
		jwt.WithLeeway(p.leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(p.now),
	)
	claims := jwt.MapClaims{}
	_, err := parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		// RFC 7515 §4.1.11: a token whose "crit" names extensions the verifier does not
		// understand must be refused; this verifier understands none.
		if _, ok := t.Header["crit"]; ok {
			return nil, ErrCritical
		}
		kid, _ := t.Header["kid"].(string)
		keys, err := p.keys.lookup(ctx, kid, t.Method.Alg())
		if err != nil {
			return nil, err
		}
		set := jwt.VerificationKeySet{}
		for _, k := range keys {
			set.Keys = append(set.Keys, k.pub)
		}
		return set, nil
	})
	if err != nil {
		return Principal{}, time.Time{}, classifyJWTError(err)
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return Principal{}, time.Time{}, invalid(ErrMissingClaim)
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil { // the parser requires exp; this is belt and braces
		return Principal{}, time.Time{}, invalid(ErrMissingClaim)
	}
	// Clip: a caller appending to Scopes must not write into a cached principal's array.
	scopes := slices.Clip(scopesFrom(claims[p.scopeClaim]))
	return Principal{Subject: sub, Issuer: p.issuer, Method: MethodJWT, Scopes: scopes}, exp.Time, nil
}

// classifyJWTError maps jwt-go errors to fixed reasons; jwt-go's own messages may quote
// decoded token bytes, so they are dropped.
func classifyJWTError(err error) error {
	for _, own := range []error{ErrUnknownKey, ErrKeysUnavailable} {
		if errors.Is(err, own) {
			return err
		}
	}
	if errors.Is(err, ErrCritical) {
		return invalid(ErrCritical)
	}
	for _, m := range []struct{ lib, own error }{
		{jwt.ErrTokenExpired, ErrExpired},
		{jwt.ErrTokenNotValidYet, ErrNotYetValid},
		{jwt.ErrTokenUsedBeforeIssued, ErrNotYetValid},
		{jwt.ErrTokenInvalidAudience, ErrAudience},
		{jwt.ErrTokenInvalidIssuer, ErrUnknownIssuer},
		{jwt.ErrTokenRequiredClaimMissing, ErrMissingClaim},
		{jwt.ErrTokenSignatureInvalid, ErrSignature},
		{jwt.ErrTokenMalformed, ErrMalformed},
		{jwt.ErrTokenInvalidClaims, ErrClaims},
	} {
		if errors.Is(err, m.lib) {
			return invalid(m.own)
		}
	}
	return invalid(ErrSignature)
}

// scopesFrom reads a space-separated string ("scope") or a list of strings ("scp").
func scopesFrom(v any) []string {
	switch s := v.(type) {
	case string:
		return strings.Fields(s)
	case []any:
		var out []string
		for _, e := range s {
			if str, ok := e.(string); ok && str != "" {
				out = append(out, str)
			}
		}
		return out
	}
	return nil
}

func asymmetric(alg string) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
		return true
	}
	return false
}

// keyFitsAlg checks that a public key is of the type (and curve, and size) alg needs, so a
// key can only ever verify the algorithm it is pinned to.
func keyFitsAlg(pub crypto.PublicKey, alg string) bool {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return (strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")) && k.N.BitLen() >= 2048
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// algForKey derives the algorithm of a JWK without "alg" from its key type and curve.
func algForKey(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RS256"
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256"
		case elliptic.P384():
			return "ES384"
		case elliptic.P521():
			return "ES512"
		}
	case ed25519.PublicKey:
		return "EdDSA"
	}
	return ""
}
