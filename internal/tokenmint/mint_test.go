package tokenmint

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// decode reads a compact JWT's header and claims without verifying it.
func decode(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %d parts", len(parts))
	}
	for i, out := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}

// thumbprint is RFC 7638 §3 for a P-256 key, written out by hand (not through go-jose).
func thumbprint(t *testing.T, pemPub []byte) string {
	t.Helper()
	pub, err := ParsePublicKey(pemPub)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := pub.(*ecdsa.PublicKey).Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	canon := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, b64(raw[1:33]), b64(raw[33:]))
	sum := sha256.Sum256([]byte(canon))
	return b64(sum[:])
}

func TestMintedTokenIsWhatTheRuntimeAccepts(t *testing.T) {
	g := NewWithT(t)
	s := sampleServer("team-a", "demo")
	r := render(t, s, testOptions)
	is, err := IssuerFor(inputsOf(t, s, r))
	g.Expect(err).NotTo(HaveOccurred())

	tok, exp, err := is.Mint(Request{Subject: "alice", Scopes: []string{"mcp:tools", "mcp:admin"}, TTL: 10 * time.Minute, Now: t0})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(exp).To(Equal(t0.Add(10 * time.Minute)))

	// What the runtime serving this server checks, built from the same rendered config.
	p, err := verifier(t, r.runtime, r.secret, at(t0.Add(time.Minute))).VerifyToken(context.Background(), tok)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Expires).To(BeTemporally("==", exp.Add(30*time.Second)), "exp plus the runtime's default leeway")
	p.Expires = time.Time{}
	g.Expect(p).To(Equal(auth.Principal{
		Subject: "alice", Issuer: resources.GeneratedIssuer(s), Method: auth.MethodJWT,
		Scopes: []string{"mcp:tools", "mcp:admin"},
	}))
	g.Expect(auth.RequireScopes(p, []string{"mcp:tools"})).To(Succeed())

	header, claims := decode(t, tok)
	g.Expect(header).To(Equal(map[string]any{"alg": "ES256", "typ": "JWT", "kid": thumbprint(t, r.secret[resources.AuthKeyPublic])}))
	g.Expect(claims).To(HaveKeyWithValue("iss", "mcp-fleet-operator/team-a/demo"))
	g.Expect(claims).To(HaveKeyWithValue("aud", "https://demo.team-a.svc.cluster.local:8443/mcp"))
	g.Expect(claims).To(HaveKeyWithValue("aud", resources.URL(s, testOptions)))
	g.Expect(claims).To(HaveKeyWithValue("sub", "alice"))
	g.Expect(claims).To(HaveKeyWithValue("scope", "mcp:tools mcp:admin"))
	g.Expect(claims).To(HaveKeyWithValue("iat", float64(t0.Unix())))
	g.Expect(claims).To(HaveKeyWithValue("exp", float64(t0.Add(10*time.Minute).Unix())))
	g.Expect(claims["jti"]).To(MatchRegexp(`^[A-Za-z0-9_-]{22}$`))
	g.Expect(claims).To(HaveLen(7), "iss sub aud iat exp jti scope and nothing else")

	// Two tokens never share an id.
	tok2, _, err := is.Mint(Request{Subject: "alice", TTL: time.Minute, Now: t0})
	g.Expect(err).NotTo(HaveOccurred())
	_, claims2 := decode(t, tok2)
	g.Expect(claims2["jti"]).NotTo(Equal(claims["jti"]))
	g.Expect(claims2).NotTo(HaveKey("scope"), "no scopes asked, no scope claim")
}

func TestTokenExpiresWhenTheRuntimeSaysSo(t *testing.T) {
	g := NewWithT(t)
	s := sampleServer("team-a", "demo")
	r := render(t, s, testOptions)
	is, err := IssuerFor(inputsOf(t, s, r))
	g.Expect(err).NotTo(HaveOccurred())
	tok, _, err := is.Mint(Request{Subject: "alice", TTL: 2 * time.Minute, Now: t0})
	g.Expect(err).NotTo(HaveOccurred())

	// The runtime's default leeway is 30s.
	_, err = verifier(t, r.runtime, r.secret, at(t0.Add(2*time.Minute+29*time.Second))).VerifyToken(context.Background(), tok)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = verifier(t, r.runtime, r.secret, at(t0.Add(2*time.Minute+31*time.Second))).VerifyToken(context.Background(), tok)
	g.Expect(err).To(MatchError(auth.ErrExpired))
	_, err = verifier(t, r.runtime, r.secret, at(t0.Add(-time.Minute))).VerifyToken(context.Background(), tok)
	g.Expect(err).To(MatchError(auth.ErrNotYetValid), "iat in the future beyond the leeway")
}

func TestTokenIsBoundToItsServer(t *testing.T) {
	g := NewWithT(t)
	demo := sampleServer("team-a", "demo")
	rDemo := render(t, demo, testOptions)
	other := sampleServer("team-a", "other")
	rOther := render(t, other, testOptions)
	is, err := IssuerFor(inputsOf(t, demo, rDemo))
	g.Expect(err).NotTo(HaveOccurred())
	tok, _, err := is.Mint(Request{Subject: "alice", TTL: time.Minute, Now: t0})
	g.Expect(err).NotTo(HaveOccurred())

	_, err = verifier(t, rOther.runtime, rOther.secret, at(t0)).VerifyToken(context.Background(), tok)
	g.Expect(err).To(MatchError(auth.ErrUnknownIssuer), "another server's runtime does not trust this issuer")

	// Same issuer and audience, but the Secret was rotated: the old key's tokens fail.
	rotated := rendered{secret: render(t, demo, testOptions).secret, runtime: rDemo.runtime}
	_, err = verifier(t, rotated.runtime, rotated.secret, at(t0)).VerifyToken(context.Background(), tok)
	g.Expect(err).To(MatchError(auth.ErrSignature))
}

func TestAudienceAndIssuerComeFromTheRenderedConfig(t *testing.T) {
	g := NewWithT(t)
	// A cluster domain only the operator knows, and a server behind a public URL: the
	// audience is whatever the operator rendered, never a guess.
	corp := testOptions
	corp.ClusterDomain = "corp.internal"
	s := sampleServer("team-b", "svc")
	r := render(t, s, corp)
	is, err := IssuerFor(inputsOf(t, s, r))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(is.Audiences).To(Equal([]string{"https://svc.team-b.svc.corp.internal:8443/mcp"}))

	pub := sampleServer("team-b", "public")
	pub.Spec.Endpoint.PublicURL = "https://mcp.example.com/tools"
	// An external issuer next to the generated one: the generated one is picked.
	pub.Spec.Auth.JWT = []mcpv1alpha1.JWTProvider{{Issuer: "https://login.example.com", JWKSURL: "https://login.example.com/jwks"}}
	r = render(t, pub, corp)
	is, err = IssuerFor(inputsOf(t, pub, r))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(is.Issuer).To(Equal("mcp-fleet-operator/team-b/public"))
	g.Expect(is.Audiences).To(Equal([]string{"https://mcp.example.com/tools"}))
	tok, _, err := is.Mint(Request{Subject: "ci", TTL: time.Hour, Now: t0})
	g.Expect(err).NotTo(HaveOccurred())
	p, err := verifier(t, r.runtime, r.secret, at(t0)).VerifyToken(context.Background(), tok)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Subject).To(Equal("ci"))
}

func TestTTLBounds(t *testing.T) {
	g := NewWithT(t)
	s := sampleServer("team-a", "demo")
	is, err := IssuerFor(inputsOf(t, s, render(t, s, testOptions)))
	g.Expect(err).NotTo(HaveOccurred())
	for _, ttl := range []time.Duration{0, -time.Second, MaxTTL + time.Second, 7 * 24 * time.Hour} {
		_, _, err := is.Mint(Request{Subject: "a", TTL: ttl})
		g.Expect(err).To(MatchError(ErrTTL), "ttl %s", ttl)
		g.Expect(err.Error()).To(ContainSubstring("--ttl"))
	}
	_, exp, err := is.Mint(Request{Subject: "a", TTL: MaxTTL, Now: t0})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(exp).To(Equal(t0.Add(24 * time.Hour)))
}

func TestScopesAndSubjectAreChecked(t *testing.T) {
	g := NewWithT(t)
	s := sampleServer("team-a", "demo")
	is, err := IssuerFor(inputsOf(t, s, render(t, s, testOptions)))
	g.Expect(err).NotTo(HaveOccurred())
	for _, bad := range [][]string{{"a b"}, {""}, {`x"y`}} {
		_, _, err := is.Mint(Request{Subject: "a", Scopes: bad, TTL: time.Minute})
		g.Expect(err).To(MatchError(ContainSubstring("--scopes")), "%q", bad)
	}
	_, _, err = is.Mint(Request{Subject: "", TTL: time.Minute})
	g.Expect(err).To(MatchError(ContainSubstring("--subject")))
}

func TestScpClaimIsAList(t *testing.T) {
	g := NewWithT(t)
	// The generated provider reads "scope"; a config naming "scp" gets a JSON list, which
	// the runtime reads as well.
	s := sampleServer("team-a", "demo")
	r := render(t, s, testOptions)
	cfg, err := config.Parse(r.runtime)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.Auth.JWT[0].ScopeClaim).To(Equal("scope"))
	cfg.Auth.JWT[0].ScopeClaim = "scp"
	r.runtime, err = cfg.Marshal()
	g.Expect(err).NotTo(HaveOccurred())
	is, err := IssuerFor(inputsOf(t, s, r))
	g.Expect(err).NotTo(HaveOccurred())
	tok, _, err := is.Mint(Request{Subject: "a", Scopes: []string{"x", "y"}, TTL: time.Minute, Now: t0})
	g.Expect(err).NotTo(HaveOccurred())
	_, claims := decode(t, tok)
	g.Expect(claims).To(HaveKeyWithValue("scp", []any{"x", "y"}))
	p, err := verifier(t, r.runtime, r.secret, at(t0)).VerifyToken(context.Background(), tok)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Scopes).To(Equal([]string{"x", "y"}))
}

func TestIssuerForRefusesWithTheFix(t *testing.T) {
	demo := func() *mcpv1alpha1.MCPServer { return sampleServer("team-a", "demo") }
	good := render(t, demo(), testOptions)
	otherKeys := render(t, demo(), testOptions).secret

	disabled := demo()
	disabled.Spec.Auth.GeneratedIssuer.Disabled = true
	disabled.Spec.Auth.JWT = []mcpv1alpha1.JWTProvider{{Issuer: "https://login.example.com", Discovery: true}}
	disabled.Spec.Auth.APIKeys = &mcpv1alpha1.APIKeysSpec{SecretName: "demo-keys"}

	anon := demo()
	anon.Spec.Auth.InsecureAnonymous = true

	// The spec was just switched back on but the operator has not rendered it yet.
	stale := demo()
	stale.Generation, stale.Status.ObservedGeneration = 3, 2
	staleConfig := renderConfig(t, disabled, testOptions)

	mismatched := map[string][]byte{
		resources.AuthKeyPrivate: good.secret[resources.AuthKeyPrivate],
		resources.AuthKeyPublic:  otherKeys[resources.AuthKeyPublic],
	}

	cases := []struct {
		name   string
		server *mcpv1alpha1.MCPServer
		secret map[string][]byte
		config []byte
		is     error
		says   []string
	}{
		{"anonymous", anon, nil, nil, ErrNotGeneratedIssuer, []string{"MCPServer team-a/demo", "spec.auth.insecureAnonymous: true", "needs no token"}},
		{"generated issuer disabled", disabled, good.secret, good.runtime, ErrNotGeneratedIssuer, []string{
			"spec.auth.generatedIssuer.disabled: true", `issuer "https://login.example.com"`, "Secret team-a/demo-keys",
			"set spec.auth.generatedIssuer.disabled: false",
		}},
		{"no Secret", demo(), nil, good.runtime, ErrNotReconciled, []string{"Secret team-a/demo-auth does not exist", "kubectl wait --for=condition=Ready mcpserver/demo -n team-a"}},
		{"Secret without the private key", demo(), map[string][]byte{resources.AuthKeyPublic: good.secret[resources.AuthKeyPublic]}, good.runtime, ErrNotReconciled, []string{"lacks jwt.key or jwt.pub"}},
		{"garbage private key", demo(), map[string][]byte{resources.AuthKeyPrivate: []byte("nope"), resources.AuthKeyPublic: good.secret[resources.AuthKeyPublic]}, good.runtime, ErrBadKey, []string{"jwt.key", "no PEM block", "delete jwt.key and jwt.pub"}},
		{"mismatched pair", demo(), mismatched, good.runtime, ErrBadKey, []string{"jwt.pub is not the public half of jwt.key", "delete both keys"}},
		{"no ConfigMap", demo(), good.secret, nil, ErrNotReconciled, []string{"ConfigMap team-a/demo-runtime", "does not exist"}},
		{"invalid ConfigMap", demo(), good.secret, []byte("listen: 5\n"), ErrNotReconciled, []string{"not a valid runtime configuration"}},
		{"config without the generated provider", stale, good.secret, staleConfig, ErrNotReconciled, []string{
			"no JWT provider for the generated key (/etc/mcp-runtime/auth/jwt.pub)", "generation 3 is not reconciled yet (status.observedGeneration 2)",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := IssuerFor(Inputs{Server: serverOf(t, c.server), SecretData: c.secret, RuntimeConfig: c.config})
			g.Expect(err).To(MatchError(c.is))
			for _, s := range c.says {
				g.Expect(err.Error()).To(ContainSubstring(s))
			}
		})
	}
}

func TestKeysOfOtherFormsAndAlgorithms(t *testing.T) {
	g := NewWithT(t)
	s := sampleServer("team-a", "demo")
	r := render(t, s, testOptions)
	key, err := ParsePrivateKey(r.secret[resources.AuthKeyPrivate])
	g.Expect(err).NotTo(HaveOccurred())

	// A key rotated by hand with `openssl ecparam -genkey` is SEC 1 ("EC PRIVATE KEY").
	der, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	g.Expect(err).NotTo(HaveOccurred())
	sec1 := map[string][]byte{
		resources.AuthKeyPrivate: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}),
		resources.AuthKeyPublic:  r.secret[resources.AuthKeyPublic],
	}
	is, err := IssuerFor(Inputs{Server: serverOf(t, s), SecretData: sec1, RuntimeConfig: r.runtime})
	g.Expect(err).NotTo(HaveOccurred())
	tok, _, err := is.Mint(Request{Subject: "a", TTL: time.Minute, Now: t0})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = verifier(t, r.runtime, r.secret, at(t0)).VerifyToken(context.Background(), tok)
	g.Expect(err).NotTo(HaveOccurred())

	// A key that does not fit the pinned algorithm is refused before anything is signed.
	g.Expect(fits(key.Public(), "ES256")).To(BeTrue())
	for _, alg := range []string{"ES384", "RS256", "EdDSA", "HS256", "none"} {
		g.Expect(fits(key.Public(), alg)).To(BeFalse(), alg)
		bad := &Issuer{Issuer: "x", Audiences: []string{"y"}, Algorithm: alg, Key: key}
		_, _, err = bad.Mint(Request{Subject: "a", TTL: time.Minute})
		g.Expect(err).To(MatchError(ContainSubstring(`does not fit algorithm "` + alg + `"`)))
	}
	// The Secret holds an ES256 key, the config pins the key file to ES384: refused with the fix.
	cfg, err := config.Parse(r.runtime)
	g.Expect(err).NotTo(HaveOccurred())
	cfg.Auth.JWT[0].KeyFiles[0].Algorithm = "ES384"
	r.runtime, err = cfg.Marshal()
	g.Expect(err).NotTo(HaveOccurred())
	_, err = IssuerFor(inputsOf(t, s, r))
	g.Expect(err).To(MatchError(ErrBadKey))
	g.Expect(err.Error()).To(ContainSubstring("pins /etc/mcp-runtime/auth/jwt.pub to ES384"))
}

// The names are repeated from internal/resources so the runtime binary does not link the
// builders; this pins every one of them.
func TestNamesMatchTheBuilders(t *testing.T) {
	g := NewWithT(t)
	s := sampleServer("team-a", "demo")
	g.Expect(AuthSecretName(s.Name)).To(Equal(resources.AuthSecretName(s)))
	g.Expect(ConfigMapName(s.Name)).To(Equal(resources.ConfigMapName(s)))
	g.Expect(authKeyPrivate).To(Equal(resources.AuthKeyPrivate))
	g.Expect(authKeyPublic).To(Equal(resources.AuthKeyPublic))
	g.Expect(authDir).To(Equal(resources.AuthDir))

	cm, err := resources.ConfigMap(s, testOptions)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(*cm.Name).To(Equal(ConfigMapName(s.Name)))
	g.Expect(cm.Data).To(HaveKey(config.FileName))
	secret := resources.AuthSecret(s, map[string][]byte{})
	g.Expect(*secret.Name).To(Equal(AuthSecretName(s.Name)))

	cfg := resources.RuntimeConfig(s, testOptions)
	g.Expect(cfg.Auth.JWT).To(HaveLen(1))
	g.Expect(cfg.Auth.JWT[0].KeyFiles).To(ConsistOf(config.KeyFile{Path: path.Join(authDir, authKeyPublic), Algorithm: "ES256"}))
}

// Server mirrors a few api/v1alpha1 fields by JSON name; a renamed field must fail here.
func TestServerDecodesTheAPIType(t *testing.T) {
	g := NewWithT(t)
	s := sampleServer("team-a", "demo")
	s.Generation = 7
	s.Status.ObservedGeneration = 6
	s.Spec.Auth = mcpv1alpha1.AuthSpec{
		InsecureAnonymous: true,
		GeneratedIssuer:   mcpv1alpha1.GeneratedIssuerSpec{Disabled: true},
		JWT:               []mcpv1alpha1.JWTProvider{{Issuer: "https://a"}, {Issuer: "https://b"}},
		APIKeys:           &mcpv1alpha1.APIKeysSpec{SecretName: "keys"},
	}
	got := serverOf(t, s)
	g.Expect(got.Metadata.Name).To(Equal("demo"))
	g.Expect(got.Metadata.Namespace).To(Equal("team-a"))
	g.Expect(got.Metadata.Generation).To(Equal(int64(7)))
	g.Expect(got.Status.ObservedGeneration).To(Equal(int64(6)))
	a := got.Spec.Auth
	g.Expect(a.InsecureAnonymous).To(BeTrue())
	g.Expect(a.GeneratedIssuer.Disabled).To(BeTrue())
	g.Expect(a.JWT).To(HaveLen(2))
	g.Expect(a.JWT[1].Issuer).To(Equal("https://b"))
	g.Expect(a.APIKeys).NotTo(BeNil())
	g.Expect(a.APIKeys.SecretName).To(Equal("keys"))
}
