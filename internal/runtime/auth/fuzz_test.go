package auth

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// fuzzNow is the fixed clock of the fuzz targets, so committed seeds stay meaningful.
var fuzzNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// seedTicket was issued at fuzzNow with fuzzTicketKey for alice and testOrigin: inside
// FuzzTicket it is a valid ticket, the one the fuzzer may redeem.
const seedTicket = "mt1.eyJzdWIiOiJhbGljZSIsImlzcyI6Imh0dHBzOi8vZGVtby50ZWFtLWEubWNwZmxlZXQuZGV2Iiwic2NwIjpbImEiXSwib3JnIjoiaHR0cHM6Ly9hcHAuZXhhbXBsZSIsImV4cCI6MTc4MDMxNTIzMDAwMCwianRpIjoibjZUTkFPYklsbTBIcDVjNWdjRHhYUSJ9.7wSWFq6211GMiTCa2Jsd2I6A5WzseI9gZi5seDxoagU"

const fuzzAPIKey = "mcpk_0123456789abcdefghijklmnopqrstuv"

func fuzzTicketKey() []byte {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	return key
}

// fixedMessages are the only error texts VerifyToken may produce without remote keys:
// "invalid credentials: <reason>", never anything taken from the token.
func fixedMessages() map[string]bool {
	m := map[string]bool{}
	for _, r := range reasons {
		m[ErrInvalidToken.Error()+": "+r.err.Error()] = true
	}
	return m
}

// fuzzAuthenticator trusts an ES256 and an RS256 key file and one API key, at fuzzNow.
func fuzzAuthenticator(f *testing.F) (*Authenticator, string) {
	testKeys(f)
	dir := f.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		f.Fatal(err)
	}
	writeFile(f, keys, "ci-bot", []byte(HashAPIKey(fuzzAPIKey)))
	a := newAuth(f, config.Auth{
		JWT: []config.JWTProvider{{Issuer: testIssuer, Leeway: config.D(30 * time.Second), KeyFiles: []config.KeyFile{
			{Path: writeFile(f, dir, "es.pub", pemPublic(f, &ecKey.PublicKey)), Algorithm: "ES256"},
			{Path: writeFile(f, dir, "rs.pub", pemPublic(f, &rsaKey.PublicKey)), Algorithm: "RS256"},
		}}},
		APIKeys: &config.APIKeys{Dir: keys},
	}, Options{Now: func() time.Time { return fuzzNow }})
	valid := sign(f, jwt.SigningMethodES256, ecKey, "k1", claims(fuzzNow))
	f.Add(valid)
	f.Add(sign(f, jwt.SigningMethodRS256, rsaKey, "", claims(fuzzNow)))
	f.Add(hs256(pemPublic(f, &rsaKey.PublicKey), claims(fuzzNow)))
	f.Add(unsigned(map[string]any{"alg": "none"}, claims(fuzzNow), ""))
	f.Add(fuzzAPIKey)
	return a, valid
}

// checkOutcome is the shared property: success only for the known principals, failure
// only with a fixed message.
func checkOutcome(t *testing.T, p Principal, err error, allowed map[string]bool) {
	if err != nil {
		if !allowed[err.Error()] {
			t.Fatalf("error text %q is not one of the fixed messages", err.Error())
		}
		return
	}
	if !(p.Subject == "alice" && p.Issuer == testIssuer) && !(p.Subject == "ci-bot" && p.Issuer == "") {
		t.Fatalf("accepted a credential for an unknown principal %+v", p)
	}
}

func FuzzVerifyToken(f *testing.F) {
	a, _ := fuzzAuthenticator(f)
	allowed := fixedMessages()
	f.Fuzz(func(t *testing.T, token string) {
		p, err := a.VerifyToken(context.Background(), token)
		checkOutcome(t, p, err, allowed)
		if err == nil && p.Method != MethodJWT && p.Method != MethodAPIKey {
			t.Fatalf("method %q", p.Method)
		}
	})
}

func FuzzFirstMessage(f *testing.F) {
	a, valid := fuzzAuthenticator(f)
	f.Add(`{"type":"auth","token":"` + valid + `"}`)
	f.Add(`{"type":"auth","token":"` + fuzzAPIKey + `"}`)
	allowed := fixedMessages()
	f.Fuzz(func(t *testing.T, frame string) {
		p, err := a.FirstMessage(context.Background(), []byte(frame))
		checkOutcome(t, p, err, allowed)
		if err == nil && p.Method != MethodFirstMessage {
			t.Fatalf("method %q", p.Method)
		}
	})
}

func FuzzTicket(f *testing.F) {
	f.Add(seedTicket, testOrigin)
	f.Add(seedTicket, "https://evil.example")
	f.Add("mt1.e30.", "")
	allowed := fixedMessages()
	opts := Options{Now: func() time.Time { return fuzzNow }}
	opts.defaults()
	f.Fuzz(func(t *testing.T, ticket, origin string) {
		tk := handMadeTicketer(fuzzTicketKey(), 30*time.Second, &opts, 4)
		p, err := tk.redeem(ticket, origin)
		if err != nil {
			if !allowed[err.Error()] {
				t.Fatalf("error text %q is not one of the fixed messages", err.Error())
			}
			return
		}
		if ticket != seedTicket || origin != testOrigin || p.Subject != "alice" || p.Method != MethodTicket {
			t.Fatalf("redeemed a ticket that was never issued: %+v", p)
		}
		if _, err := tk.redeem(ticket, origin); err == nil {
			t.Fatal("a ticket was redeemed twice")
		}
	})
}

// TestSeedTicketIsValidInFuzzTarget keeps FuzzTicket's success branch reachable.
func TestSeedTicketIsValidInFuzzTarget(t *testing.T) {
	opts := Options{Now: func() time.Time { return fuzzNow }}
	opts.defaults()
	tk := handMadeTicketer(fuzzTicketKey(), 30*time.Second, &opts, 4)
	if p, err := tk.redeem(seedTicket, testOrigin); err != nil || p.Subject != "alice" {
		t.Fatalf("seed ticket: %+v, %v", p, err)
	}
}
