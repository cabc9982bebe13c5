package auth

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

func jwksAuth(t *testing.T, url string, clk *clock, opts Options) *Authenticator {
	t.Helper()
	opts.Now = clk.Now
	return newAuth(t, config.Auth{JWT: []config.JWTProvider{{
		Issuer:     testIssuer,
		JWKSURL:    url,
		Algorithms: []string{"RS256", "ES256"},
		Leeway:     config.D(30 * time.Second),
	}}}, opts)
}

func TestJWKSRotationAndRefetchBound(t *testing.T) {
	g := NewWithT(t)
	testKeys(t)
	clk := newClock()
	srv := newJWKSServer(t, jwk(&ecKey.PublicKey, "k1", "ES256"))
	a := jwksAuth(t, srv.URL, clk, Options{MinRefetchInterval: 10 * time.Second})
	ctx := context.Background()
	g.Expect(srv.count()).To(Equal(1), "New fetches the JWKS once")

	_, err := a.VerifyToken(ctx, sign(t, jwt.SigningMethodES256, ecKey, "k1", claims(clk.Now())))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(srv.count()).To(Equal(1), "known keys are served from the cache")

	// The IdP rotates to k2. Right after the last fetch an unknown kid does not refetch.
	srv.set(t, jwk(&ecKey.PublicKey, "k1", "ES256"), jwk(&ecKey2.PublicKey, "k2", "ES256"))
	tok2 := sign(t, jwt.SigningMethodES256, ecKey2, "k2", claims(clk.Now()))
	_, err = a.VerifyToken(ctx, tok2)
	g.Expect(err).To(MatchError(ErrUnknownKey))
	g.Expect(srv.count()).To(Equal(1))

	// Once the interval has passed, one unknown kid refetches and the new key is used.
	clk.Advance(10 * time.Second)
	_, err = a.VerifyToken(ctx, tok2)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(srv.count()).To(Equal(2))

	// A flood of unknown kids costs at most one fetch per interval.
	clk.Advance(10 * time.Second)
	for i := range 50 {
		_, err = a.VerifyToken(ctx, sign(t, jwt.SigningMethodES256, ecKey2, "nope-"+string(rune('a'+i%26)), claims(clk.Now())))
		g.Expect(err).To(MatchError(ErrUnknownKey))
	}
	g.Expect(srv.count()).To(Equal(3))

	// k1 is removed: after the next refetch it is refused.
	srv.set(t, jwk(&ecKey2.PublicKey, "k2", "ES256"))
	clk.Advance(16 * time.Minute) // older than RefreshInterval: a background refresh starts
	_, _ = a.VerifyToken(ctx, tok2)
	g.Eventually(srv.count).Should(Equal(4))
	g.Eventually(func() error {
		_, err := a.VerifyToken(ctx, sign(t, jwt.SigningMethodES256, ecKey, "k1", claims(clk.Now())))
		return err
	}).Should(MatchError(ErrUnknownKey))
}

func TestJWKSKeyAlgorithms(t *testing.T) {
	testKeys(t)
	clk := newClock()
	now := clk.Now()
	srv := newJWKSServer(t,
		jwk(&ecKey.PublicKey, "ec-noalg", ""),       // derived: ES256
		jwk(&rsaKey.PublicKey, "rs-ps", "PS256"),    // PS256 is not in Algorithms
		jwk(&ecKey384.PublicKey, "ec384", "ES384"),  // not in Algorithms
		jwk(&ecKey2.PublicKey, "ec-as-rs", "RS256"), // alg does not fit the key
		jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "enc", Algorithm: "RS256", Use: "enc"},
	)
	// Append a symmetric key (go-jose will not marshal one into a public set) and junk.
	srv.body = []byte(strings.Replace(string(srv.body), `{"keys":[`,
		`{"keys":[{"kty":"oct","kid":"oct","alg":"HS256","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"},{"kty":"bogus"},42,`, 1))
	a := jwksAuth(t, srv.URL, clk, Options{})
	cases := map[string]struct {
		token string
		want  error
	}{
		"alg derived from key type":        {sign(t, jwt.SigningMethodES256, ecKey, "ec-noalg", claims(now)), nil},
		"alg not accepted by the provider": {sign(t, jwt.SigningMethodPS256, rsaKey, "rs-ps", claims(now)), ErrAlgorithm},
		"key pinned to PS256 not RS256":    {sign(t, jwt.SigningMethodRS256, rsaKey, "rs-ps", claims(now)), ErrUnknownKey},
		"ES384 key skipped":                {sign(t, jwt.SigningMethodES256, ecKey, "ec384", claims(now)), ErrUnknownKey},
		"EC key labelled RS256":            {sign(t, jwt.SigningMethodRS256, rsaKey, "ec-as-rs", claims(now)), ErrUnknownKey},
		"oct key never used":               {hs256([]byte("0123456789abcdef0123456789abcdef"), claims(now)), ErrAlgorithm},
		"encryption key skipped":           {sign(t, jwt.SigningMethodRS256, rsaKey, "enc", claims(now)), ErrUnknownKey},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := a.VerifyToken(context.Background(), tc.token)
			if tc.want == nil {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(tc.want))
		})
	}
}

func TestJWKSFetchIsBounded(t *testing.T) {
	testKeys(t)
	t.Run("huge", func(t *testing.T) {
		g := NewWithT(t)
		srv := newJWKSServer(t)
		srv.handler = func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"keys":[`))
			chunk := []byte(strings.Repeat(" ", 64<<10))
			for range 64 { // 4 MiB; the client stops reading at the limit
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}
		clk := newClock()
		a := jwksAuth(t, srv.URL, clk, Options{MaxFetchBytes: 256 << 10})
		clk.Advance(time.Minute)
		_, err := a.VerifyToken(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "k1", claims(clk.Now())))
		g.Expect(err).To(MatchError(ErrKeysUnavailable))
		g.Expect(err.Error()).To(ContainSubstring("larger than 262144 bytes"))
	})
	t.Run("slow", func(t *testing.T) {
		g := NewWithT(t)
		srv := newJWKSServer(t)
		srv.handler = func(_ http.ResponseWriter, r *http.Request) {
			select { // hold the response until the client gives up (bounded for Close)
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}
		clk := newClock()
		start := time.Now()
		a := jwksAuth(t, srv.URL, clk, Options{FetchTimeout: 200 * time.Millisecond})
		clk.Advance(time.Minute)
		_, err := a.VerifyToken(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "k1", claims(clk.Now())))
		g.Expect(err).To(MatchError(ErrKeysUnavailable))
		g.Expect(time.Since(start)).To(BeNumerically("<", 2*time.Second), "two bounded fetches (New, then the unknown kid)")
	})
	t.Run("error status", func(t *testing.T) {
		g := NewWithT(t)
		srv := newJWKSServer(t)
		srv.handler = func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }
		a := jwksAuth(t, srv.URL, newClock(), Options{})
		_, err := a.VerifyToken(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "k1", claims(newClock().Now())))
		g.Expect(err).To(MatchError(ErrKeysUnavailable))
	})
}

func discoveryServer(t *testing.T, docIssuer func(self string) string) *jwksServer {
	t.Helper()
	testKeys(t)
	srv := newJWKSServer(t, jwk(&ecKey.PublicKey, "k1", "ES256"))
	keys := srv.body
	srv.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			self := "http://" + r.Host
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": docIssuer(self), "jwks_uri": self + "/keys"})
		case "/keys":
			_, _ = w.Write(keys)
		default:
			http.NotFound(w, r)
		}
	}
	return srv
}

func TestOIDCDiscovery(t *testing.T) {
	g := NewWithT(t)
	srv := discoveryServer(t, func(self string) string { return self })
	clk := newClock()
	a := newAuth(t, config.Auth{JWT: []config.JWTProvider{{Issuer: srv.URL, Discovery: true, Algorithms: []string{"ES256"}}}}, Options{Now: clk.Now})
	c := claims(clk.Now())
	c["iss"] = srv.URL
	p, err := a.VerifyToken(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "k1", c))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Issuer).To(Equal(srv.URL))
	g.Expect(a.metadata.AuthorizationServers).To(Equal([]string{srv.URL}), "discovery issuers are advertised as authorization servers")
}

func TestOIDCDiscoveryWithMismatchedIssuerIsRefused(t *testing.T) {
	g := NewWithT(t)
	srv := discoveryServer(t, func(string) string { return "https://evil.example" })
	clk := newClock()
	a := newAuth(t, config.Auth{JWT: []config.JWTProvider{{Issuer: srv.URL, Discovery: true, Algorithms: []string{"ES256"}}}}, Options{Now: clk.Now})
	clk.Advance(time.Minute)
	c := claims(clk.Now())
	c["iss"] = srv.URL
	_, err := a.VerifyToken(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "k1", c))
	g.Expect(err).To(MatchError(ErrKeysUnavailable))
	g.Expect(err.Error()).To(ContainSubstring("must equal the configured issuer"))
}

// roundTripFunc lets a test answer HTTP requests without a network.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A network attacker answering a plain-http discovery request would name its own JWKS;
// the runtime must not even ask.
func TestOIDCDiscoveryOverPlainHTTPIsRefused(t *testing.T) {
	for _, issuer := range []string{"http://idp.corp.example", "http://idp.corp.example:443/realm", "idp.corp.example"} {
		t.Run(issuer, func(t *testing.T) {
			g := NewWithT(t)
			testKeys(t)
			var fetched []string
			var mu sync.Mutex
			client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				fetched = append(fetched, r.URL.String())
				mu.Unlock()
				return nil, http.ErrUseLastResponse
			})}
			a := newAuth(t, config.Auth{JWT: []config.JWTProvider{{Issuer: issuer, Discovery: true, Algorithms: []string{"ES256"}}}}, Options{HTTPClient: client})
			c := claims(time.Now())
			c["iss"] = issuer
			_, err := a.VerifyToken(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "k1", c))
			g.Expect(err).To(MatchError(ErrKeysUnavailable))
			g.Expect(err.Error()).To(ContainSubstring("must be an https URL"))
			mu.Lock()
			defer mu.Unlock()
			g.Expect(fetched).To(BeEmpty(), "nothing is fetched from a plain-http issuer")
		})
	}
}

func TestJWKSConcurrentUnknownKidsShareOneFetch(t *testing.T) {
	g := NewWithT(t)
	testKeys(t)
	srv := newJWKSServer(t, jwk(&ecKey.PublicKey, "k1", "ES256"))
	clk := newClock()
	a := jwksAuth(t, srv.URL, clk, Options{})
	body := srv.body
	srv.mu.Lock()
	srv.handler = func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(50 * time.Millisecond) // keep the fetch in flight while the others arrive
		_, _ = w.Write(body)
	}
	srv.mu.Unlock()
	clk.Advance(time.Minute)
	tok := sign(t, jwt.SigningMethodES256, ecKey2, "k2", claims(clk.Now()))
	errs := make(chan error, 20)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, err := a.VerifyToken(context.Background(), tok)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		g.Expect(err).To(MatchError(ErrUnknownKey))
	}
	g.Expect(srv.count()).To(Equal(2), "the initial fetch plus one shared refetch")
}

// A password in jwksURL (Go's client sends it as basic auth) stays out of the log line of a
// failed fetch and out of the verification error.
func TestJWKSURLPasswordIsNotLogged(t *testing.T) {
	g := NewWithT(t)
	testKeys(t)
	srv := newJWKSServer(t)
	srv.handler = func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }
	var logs strings.Builder
	withPassword := strings.Replace(srv.URL, "http://", "http://idp:s3cret-pw@", 1)
	clk := newClock()
	a := jwksAuth(t, withPassword, clk, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	g.Expect(logs.String()).To(ContainSubstring("JWKS not available yet"))
	g.Expect(logs.String()).NotTo(ContainSubstring("s3cret-pw"))

	_, err := a.VerifyToken(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "k1", claims(clk.Now())))
	g.Expect(err).To(MatchError(ErrKeysUnavailable))
	g.Expect(err.Error()).NotTo(ContainSubstring("s3cret-pw"))
}
