package resources

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/api/resource"
)

// EnsureAuthKeys returns the auth Secret data: existing keys are kept as they are and
// only missing ones are generated, so a reconcile never rotates a key by accident. The
// signing key pair is generated (and regenerated) as a pair. rnd feeds the ticket key;
// since Go 1.26 the signing key always comes from the system's secure source (tests make
// it deterministic with testing/cryptotest).
func EnsureAuthKeys(existing map[string][]byte, rnd io.Reader) (map[string][]byte, error) {
	out := map[string][]byte{}
	for k, v := range existing {
		out[k] = v
	}
	if len(out[AuthKeyPrivate]) == 0 || len(out[AuthKeyPublic]) == 0 {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
		if err != nil {
			return nil, fmt.Errorf("generating signing key: %w", err)
		}
		priv, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("encoding signing key: %w", err)
		}
		pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("encoding public key: %w", err)
		}
		out[AuthKeyPrivate] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv})
		out[AuthKeyPublic] = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	}
	if len(out[AuthKeyTicketKey]) == 0 {
		b := make([]byte, 32)
		if _, err := io.ReadFull(rnd, b); err != nil {
			return nil, fmt.Errorf("generating ticket key: %w", err)
		}
		out[AuthKeyTicketKey] = []byte(base64.StdEncoding.EncodeToString(b))
	}
	return out, nil
}

func resourceQuantity(s string) resource.Quantity { return resource.MustParse(s) }
