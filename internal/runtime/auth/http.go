package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// MetadataPath is where the OAuth Protected Resource Metadata (RFC 9728) is served; the
// document is also served at MetadataPath + the resource's path (RFC 9728 §3.1).
const MetadataPath = "/.well-known/oauth-protected-resource"

// TicketPath is where the server mounts TicketHandler.
const TicketPath = "/auth/ticket"

type metadataDoc struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers,omitempty"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceDocumentation  string   `json:"resource_documentation,omitempty"`
}

// buildMetadata fills the RFC 9728 document. Without configured authorization servers,
// the issuers of discovery providers are listed: they are known to be OIDC servers, while
// a key-file issuer may be a name only.
func buildMetadata(cfg config.Auth, publicURL string) metadataDoc {
	rm := cfg.ResourceMetadata
	d := metadataDoc{
		Resource:               rm.Resource,
		AuthorizationServers:   rm.AuthorizationServers,
		ScopesSupported:        rm.ScopesSupported,
		BearerMethodsSupported: []string{"header"},
		ResourceDocumentation:  rm.Documentation,
	}
	if d.Resource == "" {
		d.Resource = publicURL
	}
	if len(d.AuthorizationServers) == 0 {
		for _, p := range cfg.JWT {
			if p.Discovery {
				d.AuthorizationServers = append(d.AuthorizationServers, p.Issuer)
			}
		}
	}
	return d
}

// MetadataHandler serves the OAuth Protected Resource Metadata document (GET or HEAD);
// 404 in anonymous mode, where no authorization server exists.
func (a *Authenticator) MetadataHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.anonymous {
			writeJSONError(w, http.StatusNotFound, "not_found")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed")
			return
		}
		doc := a.metadata
		if doc.Resource == "" {
			doc.Resource = requestOrigin(r)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_ = json.NewEncoder(w).Encode(doc)
	})
}

func (a *Authenticator) isMetadataRequest(r *http.Request) bool {
	return !a.anonymous && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		(r.URL.Path == MetadataPath || (a.resourceMetaPath != "" && r.URL.Path == a.resourceMetaPath))
}

// ResourceMetadataURL is the metadata URL advertised in WWW-Authenticate: the public URL's
// origin (else the request's) + MetadataPath.
func (a *Authenticator) ResourceMetadataURL(r *http.Request) string {
	base := ""
	if u, err := url.Parse(a.publicURL); err == nil && u.Host != "" {
		base = u.Scheme + "://" + u.Host
	} else if r != nil {
		base = requestOrigin(r)
	}
	return base + MetadataPath
}

func requestOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// quoteSafe drops the characters that could end an auth-param quoted string.
func quoteSafe(s string) string {
	return strings.Map(func(c rune) rune {
		if c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			return -1
		}
		return c
	}, s)
}

// writeUnauthorized answers 401 with the Bearer challenge; errCode is the RFC 6750 error
// ("" when no credentials were presented).
func (a *Authenticator) writeUnauthorized(w http.ResponseWriter, r *http.Request, errCode string) {
	ch := `Bearer resource_metadata="` + quoteSafe(a.ResourceMetadataURL(r)) + `"`
	if errCode != "" {
		ch += `, error="` + errCode + `"`
	}
	w.Header().Set("WWW-Authenticate", ch)
	body := errCode
	if body == "" {
		body = "unauthorized"
	}
	writeJSONError(w, http.StatusUnauthorized, body)
}

// InsufficientScopeChallenge is the WWW-Authenticate value for a 403 step-up.
func InsufficientScopeChallenge(scopes []string, resourceMetadataURL string) string {
	safe := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if s = quoteSafe(s); s != "" {
			safe = append(safe, s)
		}
	}
	ch := `Bearer error="insufficient_scope", scope="` + strings.Join(safe, " ") + `"`
	if resourceMetadataURL != "" {
		ch += `, resource_metadata="` + quoteSafe(resourceMetadataURL) + `"`
	}
	return ch
}

// WriteInsufficientScope answers 403 with an insufficient_scope challenge naming scopes
// (the tool policy uses it on HTTP transports). body, if nil, is {"error":"insufficient_scope"}.
func (a *Authenticator) WriteInsufficientScope(w http.ResponseWriter, r *http.Request, scopes []string, body []byte) {
	w.Header().Set("WWW-Authenticate", InsufficientScopeChallenge(scopes, a.ResourceMetadataURL(r)))
	if body == nil {
		writeJSONError(w, http.StatusForbidden, "insufficient_scope")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write(body)
}

func writeJSONError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "{\"error\":%q}\n", code)
}

// isWebSocketUpgrade reports a WebSocket opening handshake.
func isWebSocketUpgrade(r *http.Request) bool {
	if r.Method != http.MethodGet || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return false
}

// Middleware authenticates every request before next runs; see the package comment.
//   - GET/HEAD of the metadata document is served here, unauthenticated.
//   - Anonymous mode: every request passes with an anonymous principal.
//   - Authorization: Bearer <JWT or API key>.
//   - WebSocket upgrades of Options.WebSocketPath may instead carry ?ticket= (from TicketHandler, bound to the
//     Origin) or, only with InsecureQueryToken, ?access_token=; these parameters are removed
//     from the URL next sees. With neither and first-message auth on, the upgrade passes
//     with FirstMessagePending and no principal.
//
// Failures answer 401 with `WWW-Authenticate: Bearer resource_metadata="…"` (plus
// error="invalid_token" when a credential was presented) and never reach next.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.isMetadataRequest(r) {
			a.MetadataHandler().ServeHTTP(w, r)
			return
		}
		if a.anonymous {
			a.decide(r, Decision{Outcome: OutcomeAllow, Method: MethodAnonymous})
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), Principal{Method: MethodAnonymous})))
			return
		}
		throttle := a.opts.Throttle
		p, known := a.cachedBearer(r)
		var method string
		r2, err := r, error(nil)
		switch {
		case known: // verified earlier: a throttled client's good token still works
		case throttle != nil:
			if wait, ok := throttle.Admit(r); !ok {
				a.decide(r, Decision{Outcome: OutcomeDeny, Reason: Reason(ErrTooManyFailures)})
				w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
				writeJSONError(w, http.StatusTooManyRequests, "too_many_failed_authentications")
				return
			}
			fallthrough
		default:
			p, method, r2, err = a.authenticate(r)
		}
		switch {
		case err == nil && p.Method == "":
			next.ServeHTTP(w, r2) // first-message pending
		case err == nil:
			a.decide(r, Decision{Outcome: OutcomeAllow, Method: p.Method, Subject: p.Subject, Issuer: p.Issuer})
			next.ServeHTTP(w, r2.WithContext(WithPrincipal(r2.Context(), p)))
		default:
			a.decide(r, Decision{Outcome: OutcomeDeny, Method: method, Reason: Reason(err)})
			if throttle != nil && !errors.Is(err, ErrNoCredentials) {
				throttle.Failed(r)
			}
			code := "invalid_token"
			switch {
			case errors.Is(err, ErrNoCredentials):
				code = ""
			case errors.Is(err, ErrBadRequest):
				code = "invalid_request"
			}
			a.writeUnauthorized(w, r, code)
		}
	})
}

// cachedBearer returns the principal of a request whose bearer is a JWT verified earlier
// and still in the token cache (what authenticate would return for it), without asking
// the throttle: verifying it again costs nothing.
func (a *Authenticator) cachedBearer(r *http.Request) (Principal, bool) {
	if a.tokens == nil || a.opts.Throttle == nil {
		return Principal{}, false // authenticate reads the cache itself
	}
	token, ok := bearer(r.Header.Values("Authorization"))
	if !ok || len(token) > MaxTokenBytes || strings.Count(token, ".") != 2 {
		return Principal{}, false
	}
	return a.tokens.get(sha256.Sum256([]byte(token)), a.opts.Now())
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// authenticate finds and verifies the request's credentials. It returns the request to
// pass on (query credentials stripped; first-message marker set) and the method tried.
func (a *Authenticator) authenticate(r *http.Request) (Principal, string, *http.Request, error) {
	ctx := r.Context()
	if authz := r.Header.Values("Authorization"); len(authz) > 0 {
		token, ok := bearer(authz)
		if !ok {
			return Principal{}, "", r, invalid(ErrBadRequest)
		}
		p, method, err := a.verify(ctx, token)
		return p, method, r, err
	}
	if a.opts.WebSocketPath == "" || r.URL.Path != a.opts.WebSocketPath || !isWebSocketUpgrade(r) {
		return Principal{}, "", r, invalid(ErrNoCredentials)
	}
	q := r.URL.Query()
	switch {
	case q.Has("ticket"):
		r = withoutQuery(r, "ticket", "access_token")
		if a.tickets == nil {
			return Principal{}, MethodTicket, r, invalid(ErrTicketsDisabled)
		}
		if len(q["ticket"]) != 1 {
			return Principal{}, MethodTicket, r, invalid(ErrTicketInvalid)
		}
		p, err := a.tickets.redeem(q.Get("ticket"), r.Header.Get("Origin"))
		return p, MethodTicket, r, err
	case q.Has("access_token") && a.ws.InsecureQueryToken:
		r = withoutQuery(r, "access_token")
		if len(q["access_token"]) != 1 {
			return Principal{}, "", r, invalid(ErrBadRequest)
		}
		p, method, err := a.verify(ctx, q.Get("access_token"))
		return p, method, r, err
	case !a.ws.FirstMessage.Disabled:
		r = withoutQuery(r, "access_token")
		return Principal{}, "", r.WithContext(context.WithValue(ctx, pendingKey, pending{r: r})), nil
	}
	return Principal{}, "", withoutQuery(r, "access_token"), invalid(ErrNoCredentials)
}

// bearer extracts the token of a single "Bearer <token>" Authorization header.
func bearer(values []string) (string, bool) {
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// withoutQuery returns a shallow copy of r whose URL lacks the given query parameters, so
// no later handler or log sees credentials.
func withoutQuery(r *http.Request, names ...string) *http.Request {
	q := r.URL.Query()
	found := false
	for _, n := range names {
		if q.Has(n) {
			q.Del(n)
			found = true
		}
	}
	if !found {
		return r
	}
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = q.Encode()
	r2.RequestURI = r2.URL.RequestURI()
	return r2
}

// verify is VerifyToken that also names the method tried (for decisions on failure).
func (a *Authenticator) verify(ctx context.Context, token string) (Principal, string, error) {
	p, err := a.VerifyToken(ctx, token)
	method := p.Method
	if err != nil {
		method = MethodAPIKey
		if len(a.providers) > 0 && strings.Count(token, ".") == 2 {
			method = MethodJWT
		}
	}
	return p, method, err
}

// TicketHandler serves POST /auth/ticket: with a valid bearer (JWT or API key; already
// verified by Middleware, or verified here) it returns a single-use ticket bound to the
// subject and the request's Origin: {"ticket":"…","expiresIn":30}. 404 when tickets are
// off or authentication is anonymous.
func (a *Authenticator) TicketHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.tickets == nil {
			writeJSONError(w, http.StatusNotFound, "tickets_disabled")
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed")
			return
		}
		p, ok := PrincipalFrom(r.Context())
		if !ok || (p.Method != MethodJWT && p.Method != MethodAPIKey) {
			token, ok := bearer(r.Header.Values("Authorization"))
			if !ok {
				reason := ErrNoCredentials
				code := ""
				if len(r.Header.Values("Authorization")) > 0 {
					reason, code = ErrBadRequest, "invalid_request"
				}
				a.decide(r, Decision{Outcome: OutcomeDeny, Reason: Reason(reason)})
				a.writeUnauthorized(w, r, code)
				return
			}
			var method string
			var err error
			if p, method, err = a.verify(r.Context(), token); err != nil {
				a.decide(r, Decision{Outcome: OutcomeDeny, Method: method, Reason: Reason(err)})
				a.writeUnauthorized(w, r, "invalid_token")
				return
			}
		}
		ticket, ttl, err := a.tickets.issue(p, r.Header.Get("Origin"))
		if errors.Is(err, ErrTicketTooLarge) {
			a.decide(r, Decision{Outcome: OutcomeDeny, Method: p.Method, Subject: p.Subject, Issuer: p.Issuer, Reason: "ticket_too_large"})
			writeJSONError(w, http.StatusBadRequest, "ticket_too_large")
			return
		}
		if err != nil {
			a.decide(r, Decision{Outcome: OutcomeDeny, Method: p.Method, Reason: "ticket_unavailable"})
			writeJSONError(w, http.StatusInternalServerError, "ticket_unavailable")
			return
		}
		a.decide(r, Decision{Outcome: OutcomeAllow, Method: p.Method, Subject: p.Subject, Issuer: p.Issuer, Reason: "ticket_issued"})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(struct {
			Ticket    string `json:"ticket"`
			ExpiresIn int    `json:"expiresIn"`
		}{ticket, int(ttl / time.Second)})
	})
}

// TicketsEnabled reports whether TicketHandler issues tickets (mount it at TicketPath).
func (a *Authenticator) TicketsEnabled() bool { return a.tickets != nil }

// FirstMessageEnabled reports whether upgrades without credentials may authenticate with
// their first frame.
func (a *Authenticator) FirstMessageEnabled() bool {
	return !a.anonymous && !a.ws.FirstMessage.Disabled
}

// FirstMessageTimeout is how long the server waits for the auth frame.
func (a *Authenticator) FirstMessageTimeout() time.Duration {
	if d := a.ws.FirstMessage.Timeout.Duration; d > 0 {
		return d
	}
	return 10 * time.Second
}

// FirstMessage verifies the first WebSocket frame of an upgrade admitted with
// FirstMessagePending: it must be {"type":"auth","token":"<JWT or API key>"}. The server
// enforces FirstMessageTimeout and closes with 1008 on any error.
func (a *Authenticator) FirstMessage(ctx context.Context, frame []byte) (Principal, error) {
	r := pendingRequest(ctx)
	p, method, err := a.firstMessage(ctx, frame)
	if err != nil {
		a.decide(r, Decision{Outcome: OutcomeDeny, Method: method, Reason: Reason(err)})
		return Principal{}, err
	}
	a.decide(r, Decision{Outcome: OutcomeAllow, Method: MethodFirstMessage, Subject: p.Subject, Issuer: p.Issuer})
	return p, nil
}

// Reasons for a first-message authentication that ended before a frame could be checked.
const (
	FirstMessageTimeout = "first_message_timeout" // no frame within the deadline
	FirstMessageNotText = "first_message_not_text"
	FirstMessageUnread  = "first_message_unread" // the socket closed, or the frame was too large to read
)

// FirstMessageFailed records the deny decision of a first-message socket that was closed
// before its first frame reached FirstMessage (reason: one of the FirstMessage* codes), so
// that every unauthenticated socket leaves an audit line.
func (a *Authenticator) FirstMessageFailed(ctx context.Context, reason string) {
	a.decide(pendingRequest(ctx), Decision{Outcome: OutcomeDeny, Method: MethodFirstMessage, Reason: reason})
}

// pendingRequest is the upgrade request of a socket awaiting first-message authentication
// (nil if ctx is not one), which its decisions are reported with.
func pendingRequest(ctx context.Context) *http.Request {
	if pd, ok := ctx.Value(pendingKey).(pending); ok {
		return pd.r
	}
	return nil
}

func (a *Authenticator) firstMessage(ctx context.Context, frame []byte) (Principal, string, error) {
	if a.anonymous || a.ws.FirstMessage.Disabled {
		return Principal{}, MethodFirstMessage, invalid(ErrFirstMessage)
	}
	if len(frame) > MaxFirstMessageBytes {
		return Principal{}, MethodFirstMessage, invalid(ErrTooLong)
	}
	var m struct {
		Type  string  `json:"type"`
		Token *string `json:"token"`
	}
	if err := json.Unmarshal(frame, &m); err != nil || m.Type != "auth" || m.Token == nil {
		return Principal{}, MethodFirstMessage, invalid(ErrFirstMessage)
	}
	p, method, err := a.verify(ctx, *m.Token)
	if err != nil {
		return Principal{}, method, err
	}
	p.Method = MethodFirstMessage
	return p, MethodFirstMessage, nil
}
