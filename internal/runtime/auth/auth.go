// Package auth authenticates callers of the runtime: bearer JWTs (keys from PEM files, a
// JWKS URL or OIDC discovery, algorithm pinned per key), hashed API keys, single-use
// WebSocket tickets and first-message WebSocket auth. It serves the OAuth Protected Resource
// Metadata (RFC 9728) and answers 401/403 with the matching WWW-Authenticate challenges.
//
// Tokens and tickets never appear in errors, logs or decisions: every failure is reported
// with a fixed reason code (see Reason).
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// Authentication methods reported in Principal.Method and Decision.Method.
const (
	MethodJWT          = "jwt"
	MethodAPIKey       = "apikey"
	MethodTicket       = "ticket"
	MethodFirstMessage = "first-message"
	MethodAnonymous    = "anonymous"
)

// Decision outcomes.
const (
	OutcomeAllow = "allow"
	OutcomeDeny  = "deny"
)

// MaxTokenBytes bounds a presented token or ticket; longer ones are refused unparsed.
const MaxTokenBytes = 16 << 10

// MaxFirstMessageBytes bounds a WebSocket's first-message auth frame: the token and its
// JSON wrapping. The server reads no larger frame from a socket that has not authenticated.
const MaxFirstMessageBytes = MaxTokenBytes + 256

// Principal is an authenticated caller.
type Principal struct {
	Subject string
	Issuer  string // JWT issuer; empty for API keys and anonymous callers
	Method  string // jwt, apikey, ticket, first-message or anonymous
	Scopes  []string
	// Expires is when the credential stops being valid (a JWT's exp, carried over into the
	// tickets minted for it); zero for credentials without an expiry (API keys). A
	// connection that outlives one request — a WebSocket, an SSE stream — ends then.
	Expires time.Time
	// Revoked is closed when the credential is revoked before any expiry (an API key removed
	// from the directory); nil when it cannot be. A connection that outlives one request
	// ends then too.
	Revoked <-chan struct{}

	apiKeySerial uint64 // which key an API key principal presented (tickets carry it)
}

// Decision is one authentication outcome, reported to Options.OnDecision (the audit log).
// It never carries the token.
type Decision struct {
	Outcome string // allow or deny
	Method  string // the method tried; empty when no credential was presented
	Subject string // empty on deny
	Issuer  string
	Reason  string // a Reason code on deny; "" or "ticket_issued" on allow
}

// Options tunes an Authenticator. The zero value is safe: every field has a bounded default.
type Options struct {
	// HTTPClient fetches discovery documents and JWKS. Default: a client with FetchTimeout
	// that refuses redirects to plain http.
	HTTPClient *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// WebSocketPath is the one path WebSocket upgrades are served on. Only an upgrade of
	// that path may authenticate with a ticket, a query token or its first message; a
	// request elsewhere that merely carries Upgrade headers needs a bearer like any other.
	// Empty (the WebSocket transport is off): no request may.
	WebSocketPath string
	// OnDecision, when set, is called for every authentication decision. r may be nil for
	// FirstMessage calls whose context does not come from Middleware.
	OnDecision func(r *http.Request, d Decision)
	// FetchTimeout bounds one discovery or JWKS fetch. Default 10s.
	FetchTimeout time.Duration
	// MaxFetchBytes bounds a discovery document or JWKS. Default 1 MiB.
	MaxFetchBytes int64
	// MinRefetchInterval: a token with an unknown kid triggers a JWKS refetch at most this
	// often. Default 10s.
	MinRefetchInterval time.Duration
	// RefreshInterval: cached JWKS older than this are refreshed in the background. Default 15m.
	RefreshInterval time.Duration
	// ReloadInterval: key files and the API key directory are re-read (on use) at most
	// this often, so rotated Secrets take effect. Default 1m.
	ReloadInterval time.Duration
	// Logger reports background refresh failures. Default slog.Default().
	Logger *slog.Logger
	// TokenCacheSize bounds how many verified JWTs are remembered (by SHA-256, for at most
	// a minute and never past exp, dropped when the issuer's keys change). Default 10000;
	// negative turns the cache off.
	TokenCacheSize int
	// Throttle, when set, bounds failed authentications per client: Middleware asks it
	// before verifying credentials it does not already know to be good (a JWT in the
	// cache), and tells it of every failure of presented credentials. Guessing API keys or
	// sending forged tokens then costs the runtime at most the throttle's rate of
	// verifications per client, and the client gets 429 with Retry-After beyond it.
	Throttle FailureThrottle
}

// FailureThrottle bounds the failed authentications of one client (Options.Throttle).
type FailureThrottle interface {
	// Admit reports whether r's client may have credentials verified now; when not,
	// retryAfter is how long until it may.
	Admit(r *http.Request) (retryAfter time.Duration, ok bool)
	// Failed charges r's client with one failed authentication.
	Failed(r *http.Request)
}

func (o *Options) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = 10 * time.Second
	}
	if o.MaxFetchBytes <= 0 {
		o.MaxFetchBytes = 1 << 20
	}
	if o.MinRefetchInterval <= 0 {
		o.MinRefetchInterval = 10 * time.Second
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = 15 * time.Minute
	}
	if o.ReloadInterval <= 0 {
		o.ReloadInterval = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.TokenCacheSize == 0 {
		o.TokenCacheSize = defaultTokenCacheSize
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{
			Timeout: o.FetchTimeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 3 {
					return errors.New("too many redirects")
				}
				if !config.SafeKeyURL(req.URL) {
					return fmt.Errorf("refusing redirect to non-https %s", req.URL.Redacted())
				}
				return nil
			},
		}
	}
}

// Authenticator verifies credentials. Safe for concurrent use.
type Authenticator struct {
	opts      Options
	anonymous bool
	providers []*provider
	apiKeys   *apiKeyStore
	tickets   *ticketer   // nil when tickets are disabled
	tokens    *tokenCache // verified JWTs; nil when off or no JWT provider
	ws        config.WebSocketAuth

	publicURL        string
	metadata         metadataDoc
	resourceMetaPath string // path of the metadata document with the resource path suffix
}

// New builds an Authenticator from the defaulted and validated config (config.Config.Default
// and Validate). publicURL is config.Endpoint.PublicURL. Local key material (PEM files, API
// key directory, ticket key) must load; remote JWKS that cannot be fetched yet do not fail
// New: tokens are refused until the keys arrive. Fetches, the first one included, are
// bounded by FetchTimeout; they use ctx's values but not its cancellation, because a fetch
// is shared by every request waiting on it.
func New(ctx context.Context, cfg config.Auth, publicURL string, opts Options) (*Authenticator, error) {
	opts.defaults()
	a := &Authenticator{opts: opts, anonymous: cfg.Anonymous, ws: cfg.WebSocket, publicURL: publicURL}
	if !cfg.Anonymous && len(cfg.JWT) == 0 && cfg.APIKeys == nil {
		return nil, errors.New("auth: no authentication configured (set auth.jwt, auth.apiKeys or auth.anonymous)")
	}
	for i, pc := range cfg.JWT {
		p, err := newProvider(ctx, pc, publicURL, &a.opts)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt[%d]: %w", i, err)
		}
		a.providers = append(a.providers, p)
	}
	if len(a.providers) > 0 && opts.TokenCacheSize > 0 {
		a.tokens = newTokenCache(opts.TokenCacheSize)
	}
	if cfg.APIKeys != nil {
		s, err := newAPIKeyStore(cfg.APIKeys.Dir, &a.opts)
		if err != nil {
			return nil, fmt.Errorf("auth.apiKeys: %w", err)
		}
		a.apiKeys = s
		go s.watch(ctx)
	}
	if !cfg.Anonymous && !cfg.WebSocket.Tickets.Disabled {
		t, err := newTicketer(cfg.WebSocket.Tickets, &a.opts)
		if err != nil {
			return nil, fmt.Errorf("auth.webSocket.tickets: %w", err)
		}
		if a.apiKeys != nil {
			t.revocation = a.apiKeys.revocation
		}
		a.tickets = t
	}
	a.metadata = buildMetadata(cfg, publicURL)
	if u, err := url.Parse(a.metadata.Resource); err == nil && u.Path != "" && u.Path != "/" {
		a.resourceMetaPath = MetadataPath + u.Path
	}
	return a, nil
}

// Anonymous reports whether authentication is off (auth.anonymous).
func (a *Authenticator) Anonymous() bool { return a.anonymous }

// VerifyToken verifies a bearer credential: an API key when it matches one, else a JWT
// from a configured issuer. Errors wrap ErrInvalidToken and a reason sentinel; they never
// contain the token.
func (a *Authenticator) VerifyToken(ctx context.Context, token string) (Principal, error) {
	if token == "" {
		return Principal{}, invalid(ErrMalformed)
	}
	if len(token) > MaxTokenBytes {
		return Principal{}, invalid(ErrTooLong)
	}
	if a.apiKeys != nil {
		if k, ok := a.apiKeys.lookup(token); ok {
			return Principal{Subject: k.id, Method: MethodAPIKey, Revoked: k.revoked, apiKeySerial: k.serial}, nil
		}
	}
	if len(a.providers) > 0 && strings.Count(token, ".") == 2 {
		return a.verifyJWT(ctx, token)
	}
	if a.apiKeys != nil {
		return Principal{}, invalid(ErrUnknownAPIKey)
	}
	return Principal{}, invalid(ErrMalformed)
}

// decide reports a decision to the hook.
func (a *Authenticator) decide(r *http.Request, d Decision) {
	if a.opts.OnDecision != nil {
		a.opts.OnDecision(r, d)
	}
}

type ctxKey int

const (
	principalKey ctxKey = iota
	pendingKey
)

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey, p)
}

// PrincipalFrom returns the principal Middleware (or WithPrincipal) stored in ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey).(Principal)
	return p, ok
}

// pending marks a WebSocket upgrade admitted without credentials; the first frame must
// authenticate. It keeps the upgrade request for the decision hook.
type pending struct{ r *http.Request }

// FirstMessagePending reports a WebSocket upgrade that Middleware admitted without
// credentials because first-message auth is on: the server must call FirstMessage on the
// first frame (within config FirstMessage.Timeout) and close with 1008 on failure.
func FirstMessagePending(ctx context.Context) bool {
	_, ok := ctx.Value(pendingKey).(pending)
	return ok
}
