package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	benchIssuer   = "https://issuer.bench.invalid"
	benchOrigin   = "https://app.bench.example"
	benchAudience = "https://127.0.0.1/mcp"
)

// pki is the bench's self-signed serving certificate and its JWT signing key.
type pki struct {
	certFile, keyFile string
	pool              *x509.CertPool
	jwtKey            *ecdsa.PrivateKey
	jwtPubFile        string
}

func newPKI(dir string) (*pki, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	p := &pki{
		certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"),
		jwtPubFile: filepath.Join(dir, "jwt.pub"), pool: x509.NewCertPool(),
	}
	p.pool.AddCert(cert)
	if p.jwtKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&p.jwtKey.PublicKey)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{p.certFile, "CERTIFICATE", der}, {p.keyFile, "PRIVATE KEY", keyDER}, {p.jwtPubFile, "PUBLIC KEY", pubDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.path, err)
		}
	}
	return p, nil
}

// token mints an ES256 access token for sub, valid for the whole run.
func (p *pki) token(sub string) (string, error) {
	now := time.Now()
	return jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": benchIssuer, "sub": sub, "aud": benchAudience,
		"iat": now.Unix(), "exp": now.Add(2 * time.Hour).Unix(), "scope": "mcp:tools",
	}).SignedString(p.jwtKey)
}
