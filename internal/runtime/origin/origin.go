// Package origin enforces the browser Origin allowlist and the Host check against DNS
// rebinding, on every request: POST, SSE GET and the WebSocket upgrade alike (the check runs
// before any handler, so a refused upgrade is answered 403 before it happens).
//
// Origins match on scheme, host and port exactly, with default ports normalised
// ("https://a.example" equals "https://a.example:443"). A "scheme://*.domain[:port]" entry
// matches one or more labels below domain, never domain itself.
//
// For an allowed Origin the middleware also answers CORS preflights and sets the CORS
// response headers, so browser clients at allowed origins can read responses.
package origin

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// Checker decides whether an Origin and a Host may reach the runtime. It is immutable and
// safe for concurrent use.
type Checker struct {
	origins      []pattern
	allowMissing bool

	anyHost    bool
	hosts      []pattern // scheme unused; port "" matches any port
	publicHost string    // hostname of the public URL, allowed when hosts is empty
}

// pattern is a parsed origin or host entry. When wildcard is set, host holds the domain
// below which one or more labels must appear.
type pattern struct {
	scheme, host, port string
	wildcard           bool
}

// New builds a Checker from the config. publicURL (config.Endpoint.PublicURL) names the host
// that passes the Host check when cfg.AllowedHosts is empty.
func New(cfg config.Origins, publicURL string) (*Checker, error) {
	c := &Checker{allowMissing: cfg.AllowMissing == nil || *cfg.AllowMissing}
	for i, o := range cfg.Allowed {
		if err := config.ValidateOrigin(o); err != nil {
			return nil, fmt.Errorf("origins.allowed[%d]: %w", i, err)
		}
		p, ok := parseOrigin(o, true)
		if !ok {
			return nil, fmt.Errorf("origins.allowed[%d]: %q is not scheme://host[:port] or scheme://*.domain[:port]", i, o)
		}
		c.origins = append(c.origins, p)
	}
	for i, h := range cfg.AllowedHosts {
		if h == "*" {
			c.anyHost = true
			continue
		}
		p, ok := parseHost(strings.ToLower(h), true)
		if !ok {
			return nil, fmt.Errorf("origins.allowedHosts[%d]: %q is not host, host:port, *.domain or *.domain:port", i, h)
		}
		c.hosts = append(c.hosts, p)
	}
	if publicURL != "" {
		u, err := url.Parse(publicURL)
		if err != nil || u.Hostname() == "" {
			return nil, fmt.Errorf("endpoint.publicURL %q is not an absolute URL", publicURL)
		}
		c.publicHost = strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	}
	return c, nil
}

// Allowed reports whether a present Origin header value is on the allowlist. "null",
// non-http(s) schemes and anything that is not a serialised origin are refused.
func (c *Checker) Allowed(origin string) bool {
	o, ok := parseOrigin(origin, false)
	if !ok {
		return false
	}
	for _, p := range c.origins {
		if p.scheme == o.scheme && p.port == o.port && hostMatches(p, o.host) {
			return true
		}
	}
	return false
}

// AllowMissing reports the policy for requests that carry no Origin header.
func (c *Checker) AllowMissing() bool { return c.allowMissing }

// HostAllowed reports whether a Host header value ("host" or "host:port") may be served.
// With no AllowedHosts configured, the public URL's host, localhost names and IP literals
// pass. An entry without a port matches any port; a Host without a port is taken to be on
// the default port (80 or 443).
func (c *Checker) HostAllowed(host string) bool {
	h, ok := parseHost(strings.ToLower(host), false)
	if !ok {
		return false
	}
	h.host = strings.TrimSuffix(h.host, ".")
	if c.anyHost {
		return true
	}
	// An IP literal cannot be the result of DNS rebinding, so it always passes (pods and
	// Services are often reached by address, e.g. by kubelet probes or port-forwards).
	if net.ParseIP(strings.Trim(h.host, "[]")) != nil {
		return true
	}
	if len(c.hosts) == 0 {
		return h.host == c.publicHost || isLocalhost(h.host)
	}
	for _, p := range c.hosts {
		if !hostMatches(p, h.host) {
			continue
		}
		if p.port == "" || p.port == h.port || (h.port == "" && (p.port == "443" || p.port == "80")) {
			return true
		}
	}
	return false
}

// Middleware refuses a bad Host with 421 and a present, non-allowed Origin (or a missing
// one when AllowMissing is false) with 403, before next runs. Several Origin headers are
// refused too. For an allowed Origin it answers CORS preflights itself.
func (c *Checker) Middleware(next http.Handler) http.Handler { return c.Guard(nil)(next) }

// Guard is Middleware that also tells onReject (when set) of each refusal: "host" or
// "origin" (for metrics, without wrapping the response to see its status).
func (c *Checker) Guard(onReject func(reason string)) func(http.Handler) http.Handler {
	refuse := func(w http.ResponseWriter, status int, reason string) {
		if onReject != nil {
			onReject(reason)
		}
		writeError(w, status, reason+"_not_allowed")
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c.serve(w, r, next, refuse)
		})
	}
}

// HostGuard refuses a bad Host with 421 (telling onReject "host") and lets any Origin
// through: for public documents that browsers of any site may read, but whose content
// must not be chosen by a rebinding DNS name (the protected-resource metadata names the
// request's host when no public URL is configured).
func (c *Checker) HostGuard(onReject func(reason string)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !c.HostAllowed(r.Host) {
				if onReject != nil {
					onReject("host")
				}
				writeError(w, http.StatusMisdirectedRequest, "host_not_allowed")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func (c *Checker) serve(w http.ResponseWriter, r *http.Request, next http.Handler, refuse func(http.ResponseWriter, int, string)) {
	if !c.HostAllowed(r.Host) {
		refuse(w, http.StatusMisdirectedRequest, "host")
		return
	}
	values := r.Header.Values("Origin")
	switch {
	case len(values) == 0:
		if !c.allowMissing {
			refuse(w, http.StatusForbidden, "origin")
			return
		}
		next.ServeHTTP(w, r)
		return
	case len(values) > 1 || !c.Allowed(values[0]):
		refuse(w, http.StatusForbidden, "origin")
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", values[0])
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", exposedHeaders)
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", allowHeaders(r.Header.Get("Access-Control-Request-Headers")))
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	next.ServeHTTP(w, r)
}

// exposedHeaders are the response headers browser clients of MCP need to read.
const exposedHeaders = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate, Retry-After"

// defaultAllowHeaders are allowed when a preflight's header list is unusable.
const defaultAllowHeaders = "Authorization, Content-Type, Accept, Last-Event-ID, Mcp-Session-Id, Mcp-Protocol-Version"

// allowHeaders echoes a preflight's requested header list (the Origin is trusted at this
// point), bounded and limited to header-name characters.
func allowHeaders(requested string) string {
	if requested == "" || len(requested) > 1024 {
		return defaultAllowHeaders
	}
	for _, r := range requested {
		if !(r == ',' || r == ' ' || r == '-' || r == '_' || r == '.' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9')) {
			return defaultAllowHeaders
		}
	}
	return requested
}

func writeError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "{\"error\":%q}\n", code)
}

// parseOrigin parses a serialised origin "scheme://host[:port]" (http or https only) and
// normalises the port. Wildcard hosts are accepted only for allowlist entries.
func parseOrigin(s string, entry bool) (pattern, bool) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return pattern{}, false
	}
	scheme = strings.ToLower(scheme)
	if scheme != "http" && scheme != "https" {
		return pattern{}, false
	}
	p, ok := parseHost(strings.ToLower(rest), entry)
	if !ok {
		return pattern{}, false
	}
	p.scheme = scheme
	if p.port == "" {
		p.port = defaultPort(scheme)
	}
	return p, true
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// parseHost parses "host", "host:port", "[v6]" or "[v6]:port" (lowercase input). With
// entry set, "*.domain" is accepted as a wildcard. Anything with path, userinfo, spaces or
// other stray characters is refused.
func parseHost(s string, entry bool) (pattern, bool) {
	var p pattern
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return p, false
		}
		host, rest := s[1:end], s[end+1:]
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil || strings.Contains(host, "%") {
			return p, false
		}
		if rest != "" {
			var ok bool
			if port, ok = strings.CutPrefix(rest, ":"); !ok || !validPort(port) {
				return p, false
			}
		}
		return pattern{host: host, port: port}, true
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if !validPort(port) {
			return p, false
		}
	}
	if entry {
		if rest, ok := strings.CutPrefix(host, "*."); ok {
			if !validHostname(rest) || !strings.Contains(rest, ".") || net.ParseIP(rest) != nil {
				return p, false
			}
			return pattern{host: rest, port: port, wildcard: true}, true
		}
	}
	if !validHostname(host) {
		return p, false
	}
	return pattern{host: host, port: port}, true
}

// validHostname accepts dot-separated non-empty labels of [a-z0-9-_] (IPv4 literals
// included), with at most one trailing dot.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 || (p[0] == '0') {
		return false
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// hostMatches compares a hostname to an exact or wildcard pattern. A wildcard needs at
// least one label below its domain and never matches an IP literal.
func hostMatches(p pattern, host string) bool {
	if !p.wildcard {
		return host == p.host
	}
	if net.ParseIP(host) != nil {
		return false
	}
	prefix, ok := strings.CutSuffix(host, "."+p.host)
	return ok && prefix != ""
}

// isLocalhost reports localhost and names under .localhost, which resolve to loopback
// (RFC 6761) and so cannot be rebound by an attacker's DNS.
func isLocalhost(h string) bool {
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}
