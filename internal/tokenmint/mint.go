// Package tokenmint mints short-lived bearer JWTs for an MCPServer whose auth trusts the
// operator-generated issuer: the signing key comes from the auth Secret the operator
// created, the issuer, audiences, algorithm and scope claim from the runtime configuration
// it rendered, so a minted token is exactly what that server's runtime accepts.
//
// Minting (Issuer.Mint) is pure; IssuerFor decides from the three objects read from the
// cluster, and Load reads them with the caller's kubeconfig (RBAC decides who may mint).
package tokenmint

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// MaxTTL is the longest lifetime a minted token may have: a token cannot be revoked short
// of rotating the server's key, so it must expire soon.
const MaxTTL = 24 * time.Hour

// DefaultTTL is the lifetime when none is asked for.
const DefaultTTL = 10 * time.Minute

// ErrTTL is wrapped when the requested lifetime is out of bounds.
var ErrTTL = errors.New("token lifetime out of bounds")

// Issuer is what the runtime expects of a token of the generated issuer, with the key
// that signs it.
type Issuer struct {
	// Issuer is the "iss" the runtime's provider expects.
	Issuer string
	// Audiences are the "aud" values it accepts (any one suffices); all are put in the token.
	Audiences []string
	// Algorithm the provider's key file is pinned to (ES256 for the generated key).
	Algorithm string
	// ScopeClaim is the claim the runtime reads granted scopes from ("scope" by default).
	ScopeClaim string
	// Key signs the token; its public half is the one the runtime verifies with.
	Key crypto.Signer
	// KeyID is the RFC 7638 thumbprint of the public key, sent as "kid". The runtime tries
	// every key of a key file regardless of kid; the thumbprint lets other verifiers (a
	// JWKS, a gateway) pick the key.
	KeyID string
}

// Request is what one token is minted for.
type Request struct {
	// Subject becomes "sub": the principal the runtime rate-limits and audits.
	Subject string
	// Scopes granted, checked by the runtime against tools.scopes. Optional.
	Scopes []string
	// TTL is the lifetime: more than 0 and at most MaxTTL.
	TTL time.Duration
	// Now is the issue time. Zero: time.Now.
	Now time.Time
	// Rand feeds the token id ("jti"). Nil: crypto/rand.
	Rand io.Reader
}

// CheckTTL refuses a lifetime that is not positive or longer than MaxTTL.
func CheckTTL(ttl time.Duration) error {
	if ttl <= 0 || ttl > MaxTTL {
		return fail(ErrTTL, "--ttl %s must be more than 0s and at most %s (e.g. --ttl 10m)", ttl, MaxTTL)
	}
	return nil
}

// CheckScopes refuses scopes the space-separated scope claim cannot carry.
func CheckScopes(scopes []string) error {
	for _, s := range scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			return fmt.Errorf("--scopes: %q is not a scope token (no spaces, quotes or backslashes; separate scopes with commas)", s)
		}
	}
	return nil
}

// Mint signs a token for req. It returns the compact JWT and its expiry.
func (is *Issuer) Mint(req Request) (string, time.Time, error) {
	if err := CheckTTL(req.TTL); err != nil {
		return "", time.Time{}, err
	}
	if req.Subject == "" {
		return "", time.Time{}, errors.New("--subject must not be empty")
	}
	if err := CheckScopes(req.Scopes); err != nil {
		return "", time.Time{}, err
	}
	method := jwt.GetSigningMethod(is.Algorithm)
	if method == nil || !fits(is.Key.Public(), is.Algorithm) {
		return "", time.Time{}, fmt.Errorf("the signing key does not fit algorithm %q", is.Algorithm)
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	rnd := req.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	id := make([]byte, 16)
	if _, err := io.ReadFull(rnd, id); err != nil {
		return "", time.Time{}, fmt.Errorf("generating the token id: %w", err)
	}
	exp := now.Add(req.TTL).Truncate(time.Second)
	claims := jwt.MapClaims{
		"iss": is.Issuer,
		"sub": req.Subject,
		"iat": now.Unix(),
		"exp": exp.Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(id),
	}
	if len(is.Audiences) == 1 {
		claims["aud"] = is.Audiences[0]
	} else {
		claims["aud"] = is.Audiences
	}
	if len(req.Scopes) > 0 {
		claim := is.ScopeClaim
		if claim == "" {
			claim = "scope"
		}
		if claim == "scp" {
			claims[claim] = req.Scopes
		} else {
			claims[claim] = strings.Join(req.Scopes, " ")
		}
	}
	tok := jwt.NewWithClaims(method, claims)
	if is.KeyID != "" {
		tok.Header["kid"] = is.KeyID
	}
	s, err := tok.SignedString(is.Key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("signing the token: %w", err)
	}
	return s, exp, nil
}

// ParsePrivateKey reads the PEM signing key of the auth Secret: PKCS#8 ("PRIVATE KEY", what
// the operator writes), SEC 1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY").
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T cannot sign", key)
	}
	return signer, nil
}

// ParsePublicKey reads the first PEM "PUBLIC KEY" (PKIX) block.
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("no PEM PUBLIC KEY block found")
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

// KeyID is the RFC 7638 SHA-256 thumbprint of a public key, base64url without padding.
func KeyID(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("computing the key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// fits reports whether a public key is of the type (and curve) alg signs with.
func fits(pub crypto.PublicKey, alg string) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return (alg == "ES256" && k.Curve == elliptic.P256()) ||
			(alg == "ES384" && k.Curve == elliptic.P384()) ||
			(alg == "ES512" && k.Curve == elliptic.P521())
	case *rsa.PublicKey:
		return (strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")) && k.N.BitLen() >= 2048
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}
