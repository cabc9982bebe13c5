package auth

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// maxKeyFileBytes bounds a PEM key file or an API key file.
const maxKeyFileBytes = 64 << 10

// readBounded reads at most limit bytes of a file and fails if it is longer.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// fileKeys are PEM public keys, each pinned to the algorithm configured for its file. The
// files are re-read at most every ReloadInterval so a rotated Secret takes effect.
type fileKeys struct {
	files []config.KeyFile
	opts  *Options

	mu       sync.Mutex
	byFile   [][]verificationKey // the last good keys of each file
	keys     []verificationKey   // all of them
	loadedAt time.Time
	gen      uint64 // bumped when a reload changes the keys
}

func newFileKeys(files []config.KeyFile, opts *Options) (*fileKeys, error) {
	f := &fileKeys{files: files, opts: opts, byFile: make([][]verificationKey, len(files))}
	for i := range files {
		keys, err := f.loadFile(i)
		if err != nil {
			return nil, err
		}
		f.byFile[i] = keys
	}
	f.keys, f.loadedAt = slices.Concat(f.byFile...), opts.Now()
	return f, nil
}

func (f *fileKeys) loadFile(i int) ([]verificationKey, error) {
	kf := f.files[i]
	if !asymmetric(kf.Algorithm) {
		return nil, fmt.Errorf("keyFiles[%d]: algorithm %q is not an asymmetric JWS algorithm", i, kf.Algorithm)
	}
	data, err := readBounded(kf.Path, maxKeyFileBytes)
	if err != nil {
		return nil, fmt.Errorf("keyFiles[%d]: %w", i, err)
	}
	pubs, err := parsePublicKeys(data)
	if err != nil {
		return nil, fmt.Errorf("keyFiles[%d] %s: %w", i, kf.Path, err)
	}
	keys := make([]verificationKey, 0, len(pubs))
	for _, pub := range pubs {
		if !keyFitsAlg(pub, kf.Algorithm) {
			return nil, fmt.Errorf("keyFiles[%d] %s: the key does not fit algorithm %s (wrong type, curve, or RSA under 2048 bits)", i, kf.Path, kf.Algorithm)
		}
		keys = append(keys, verificationKey{alg: kf.Algorithm, pub: pub})
	}
	return keys, nil
}

// parsePublicKeys decodes every PEM block: PUBLIC KEY (PKIX), RSA PUBLIC KEY (PKCS#1) or
// CERTIFICATE. Private keys are refused: only the public half belongs in the runtime.
func parsePublicKeys(data []byte) ([]any, error) {
	var out []any
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var pub any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			if strings.Contains(block.Type, "PRIVATE") {
				return nil, errors.New("holds a private key; mount only the public key")
			}
			return nil, fmt.Errorf("unsupported PEM block %q (want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
		}
		out = append(out, pub)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return out, nil
}

// reloadIfDueLocked re-reads the files when ReloadInterval has passed. f.mu is held.
func (f *fileKeys) reloadIfDueLocked() {
	now := f.opts.Now()
	if now.Sub(f.loadedAt) < f.opts.ReloadInterval {
		return
	}
	f.loadedAt = now
	// Each file keeps its last good keys on its own: a broken file must not also keep a
	// key that was just rotated out of another one.
	for i := range f.files {
		keys, err := f.loadFile(i)
		if err != nil {
			f.opts.Logger.Warn("Keeping the previous keys of a JWT key file: reloading it failed", "error", err)
			continue
		}
		f.byFile[i] = keys
	}
	keys := slices.Concat(f.byFile...)
	if !sameKeys(f.keys, keys) {
		f.gen++
	}
	f.keys = keys
}

func (f *fileKeys) generation() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloadIfDueLocked()
	return f.gen
}

func (f *fileKeys) lookup(_ context.Context, _, alg string) ([]verificationKey, error) {
	f.mu.Lock()
	f.reloadIfDueLocked()
	keys := f.keys
	f.mu.Unlock()
	// Key files carry no kid: every key pinned to the token's algorithm is tried.
	var out []verificationKey
	for _, k := range keys {
		if k.alg == alg {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, invalid(ErrUnknownKey)
	}
	return out, nil
}

// remoteKeys is a cached JWKS, fetched from a URL or found through OIDC discovery.
// Refreshed in the background when older than RefreshInterval; a token with an unknown kid
// triggers a refetch at most once per MinRefetchInterval. Fetches are single-flight,
// bounded in time and size, and never run on a request's context (a cancelled request
// must not abort the shared fetch).
type remoteKeys struct {
	issuer    string
	jwksURL   string
	discovery bool
	algs      []string
	opts      *Options
	baseCtx   context.Context
	bg        atomic.Bool // a background refresh is running

	mu          sync.Mutex
	keys        []verificationKey
	gen         uint64    // bumped when a fetch changes the keys
	fetchedAt   time.Time // last success
	lastAttempt time.Time
	lastErr     error
	inflight    chan struct{}
}

func newRemoteKeys(ctx context.Context, issuer, jwksURL string, discovery bool, algs []string, opts *Options) *remoteKeys {
	r := &remoteKeys{issuer: issuer, jwksURL: jwksURL, discovery: discovery, algs: algs, opts: opts, baseCtx: context.WithoutCancel(ctx)}
	if err := r.refresh(ctx, true); err != nil {
		opts.Logger.Warn("JWKS not available yet; tokens from this issuer are refused until it is", "issuer", issuer, "error", err)
	}
	return r
}

// refreshIfStale starts a background refresh when the keys are older than RefreshInterval.
func (r *remoteKeys) refreshIfStale(fetchedAt time.Time) {
	if !fetchedAt.IsZero() && r.opts.Now().Sub(fetchedAt) >= r.opts.RefreshInterval {
		if r.bg.CompareAndSwap(false, true) { // one background goroutine at most
			go func() {
				defer r.bg.Store(false)
				_ = r.refresh(r.baseCtx, false)
			}()
		}
	}
}

func (r *remoteKeys) generation() uint64 {
	r.mu.Lock()
	gen, fetchedAt := r.gen, r.fetchedAt
	r.mu.Unlock()
	r.refreshIfStale(fetchedAt)
	return gen
}

func (r *remoteKeys) lookup(ctx context.Context, kid, alg string) ([]verificationKey, error) {
	r.mu.Lock()
	keys, fetchedAt := r.keys, r.fetchedAt
	r.mu.Unlock()
	r.refreshIfStale(fetchedAt)
	if out := matchKeys(keys, kid, alg); len(out) > 0 {
		return out, nil
	}
	if err := r.refresh(ctx, false); err != nil {
		return nil, invalidDetail(ErrKeysUnavailable, err)
	}
	r.mu.Lock()
	keys = r.keys
	r.mu.Unlock()
	if out := matchKeys(keys, kid, alg); len(out) > 0 {
		return out, nil
	}
	return nil, invalid(ErrUnknownKey)
}

// sameKeys reports whether two key lists hold the same keys with the same kids and
// algorithms, in the same order (a reordered JWKS counts as a change: harmless).
func sameKeys(a, b []verificationKey) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		pub, ok := a[i].pub.(interface{ Equal(crypto.PublicKey) bool })
		if a[i].kid != b[i].kid || a[i].alg != b[i].alg || !ok || !pub.Equal(b[i].pub) {
			return false
		}
	}
	return true
}

// matchKeys returns the keys with the token's kid (all keys when the token has none)
// that are pinned to the token's algorithm.
func matchKeys(keys []verificationKey, kid, alg string) []verificationKey {
	var out []verificationKey
	for _, k := range keys {
		if k.alg == alg && (kid == "" || k.kid == kid) {
			out = append(out, k)
		}
	}
	return out
}

// refresh fetches the JWKS unless another fetch is in flight (then it waits for that one)
// or the last attempt is younger than MinRefetchInterval (then it reports that attempt).
func (r *remoteKeys) refresh(ctx context.Context, force bool) error {
	r.mu.Lock()
	if ch := r.inflight; ch != nil {
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.lastErr
	}
	now := r.opts.Now()
	if !force && !r.lastAttempt.IsZero() && now.Sub(r.lastAttempt) < r.opts.MinRefetchInterval {
		err := r.lastErr
		r.mu.Unlock()
		return err
	}
	r.lastAttempt = now
	ch := make(chan struct{})
	r.inflight = ch
	r.mu.Unlock()

	keys, err := r.fetch(r.baseCtx)

	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		if !sameKeys(r.keys, keys) {
			r.gen++
		}
		r.keys, r.fetchedAt = keys, r.opts.Now()
	}
	r.lastErr = err
	r.inflight = nil
	close(ch)
	return err
}

func (r *remoteKeys) fetch(ctx context.Context) ([]verificationKey, error) {
	jwksURL := r.jwksURL
	if r.discovery {
		u, err := r.discover(ctx)
		if err != nil {
			return nil, err
		}
		jwksURL = u
	}
	body, err := r.get(ctx, jwksURL)
	if err != nil {
		return nil, err
	}
	return parseJWKS(body, r.algs)
}

// discover reads issuer/.well-known/openid-configuration; its issuer must equal the
// configured one exactly (OpenID Connect Discovery §4.3), else keys from it are refused.
func (r *remoteKeys) discover(ctx context.Context) (string, error) {
	// The document names the signing keys: over plain http, anyone on the path picks them.
	// config.Validate refuses such issuers too; this guards callers that skip it.
	if u, err := url.Parse(r.issuer); err != nil || !config.SafeKeyURL(u) {
		return "", fmt.Errorf("discovery for issuer %q refused: the issuer must be an https URL, since its discovery document names the keys that sign tokens", r.issuer)
	}
	body, err := r.get(ctx, strings.TrimSuffix(r.issuer, "/")+"/.well-known/openid-configuration")
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("decoding the discovery document of %s: %w", r.issuer, err)
	}
	if doc.Issuer != r.issuer {
		return "", fmt.Errorf("discovery document of %s names issuer %q: it must equal the configured issuer", r.issuer, doc.Issuer)
	}
	u, err := url.Parse(doc.JWKSURI)
	if err != nil || !config.SafeKeyURL(u) {
		return "", fmt.Errorf("discovery document of %s has jwks_uri %q: want an https URL", r.issuer, doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

// get fetches a small JSON document with a timeout and a size limit.
func (r *remoteKeys) get(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.FetchTimeout)
	defer cancel()
	shown := config.RedactURL(u)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", shown, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", shown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: status %d", shown, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, r.opts.MaxFetchBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", shown, err)
	}
	if int64(len(body)) > r.opts.MaxFetchBytes {
		return nil, fmt.Errorf("fetching %s: larger than %d bytes", shown, r.opts.MaxFetchBytes)
	}
	return body, nil
}

// parseJWKS keeps the public signing keys whose algorithm — from "alg", else derived from
// the key type and curve — is accepted and fits the key. Keys that do not parse, symmetric
// and private keys, and encryption keys are skipped rather than failing the whole set.
func parseJWKS(body []byte, algs []string) ([]verificationKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decoding JWKS: %w", err)
	}
	if set.Keys == nil {
		return nil, errors.New("decoding JWKS: no \"keys\" member")
	}
	var keys []verificationKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || !k.Valid() || !k.IsPublic() {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		alg := k.Algorithm
		if alg == "" {
			alg = algForKey(k.Key)
		}
		if !slices.Contains(algs, alg) || !keyFitsAlg(k.Key, alg) {
			continue
		}
		keys = append(keys, verificationKey{kid: k.KeyID, alg: alg, pub: k.Key})
	}
	return keys, nil
}
