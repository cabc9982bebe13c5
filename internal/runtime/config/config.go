// Package config is the one schema of the mcp-runtime configuration. The operator renders
// it into the ConfigMap of every MCPServer; the runtime loads and validates it at start.
// Zero values are safe: an empty section means "secure default", never "off".
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/glob"
)

// FileName is the key of the runtime configuration inside the ConfigMap.
const FileName = "runtime.yaml"

// Transport names the client-facing transports the runtime can serve.
const (
	TransportStreamableHTTP = "streamable-http"
	TransportSSE            = "sse"
	TransportWebSocket      = "websocket"
)

// Upstream transports.
const (
	UpstreamStdio = "stdio"
	UpstreamHTTP  = "http"
)

// Client certificate modes.
const (
	ClientAuthNone    = "none"
	ClientAuthRequest = "request" // verified when presented
	ClientAuthRequire = "require"
)

// Config is the whole runtime configuration.
type Config struct {
	// Listen holds the addresses the runtime binds.
	Listen Listen `json:"listen"`
	// TLS configures the client-facing listener. TLS is on unless Insecure is set.
	TLS TLS `json:"tls"`
	// Endpoint describes the client-facing MCP endpoint.
	Endpoint Endpoint `json:"endpoint"`
	// Upstream is the MCP server the runtime fronts.
	Upstream Upstream `json:"upstream"`
	// Origins is the browser Origin allowlist and Host check.
	Origins Origins `json:"origins"`
	// Auth configures caller authentication.
	Auth Auth `json:"auth"`
	// Tools is the tool policy.
	Tools Tools `json:"tools"`
	// Limits bounds rates, connections, sizes and time.
	Limits Limits `json:"limits"`
	// Audit configures the audit log.
	Audit Audit `json:"audit"`
	// Metrics configures the Prometheus endpoint on the health address.
	Metrics Metrics `json:"metrics"`
	// Tuning holds process settings of the Go runtime: how the scheduler spends CPU.
	Tuning Tuning `json:"tuning,omitzero"`
}

// Tuning holds process settings of the Go runtime: how the scheduler spends CPU.
type Tuning struct {
	// KeepSchedulerAwake runs `serve` with GODEBUG=schedtrace set (see package
	// internal/runtime/sysmon): Go's monitor thread then stops restarting its 20 µs polling
	// every time the process wakes from idle, which cut the CPU per request by 16–20% at one
	// connection, and in exchange wakes every 10 ms while idle (~4 ms of CPU per second on a
	// 2-vCPU VM). Worth it from some tens of requests per second; off by default, because
	// most servers of a fleet are idle most of the time.
	KeepSchedulerAwake bool `json:"keepSchedulerAwake,omitempty"`
	// StaticProcs keeps GOMAXPROCS at Go's default (the CPU limit, else the node's CPUs).
	// Off, `serve` starts on one P and doubles GOMAXPROCS, up to that default, while the
	// process keeps most of its Ps busy (package internal/runtime/procs): more Ps than the
	// load needs cost a relay a quarter of its CPU per request in idle threads waking to
	// look for work. A GOMAXPROCS environment variable also keeps the setting as it is.
	StaticProcs bool `json:"staticProcs,omitempty"`
}

// Listen holds listener addresses.
type Listen struct {
	// Address of the client-facing listener. Default ":8443".
	Address string `json:"address,omitempty"`
	// HealthAddress serves /healthz, /readyz and /metrics over plain HTTP. Default ":9090".
	HealthAddress string `json:"healthAddress,omitempty"`
}

// TLS configures the client-facing listener.
type TLS struct {
	// CertFile and KeyFile are PEM files, reloaded when they change on disk.
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// ClientCAFile is a PEM bundle used to verify client certificates.
	ClientCAFile string `json:"clientCAFile,omitempty"`
	// ClientAuth is none, request or require. Default none; needs ClientCAFile otherwise.
	ClientAuth string `json:"clientAuth,omitempty"`
	// MinVersion is "1.2" or "1.3". Default "1.2".
	MinVersion string `json:"minVersion,omitempty"`
	// Insecure serves plain HTTP. Only for local development; reported loudly.
	Insecure bool `json:"insecure,omitempty"`
}

// Endpoint describes the client-facing MCP endpoint.
type Endpoint struct {
	// Path of the MCP endpoint. Default "/mcp".
	Path string `json:"path,omitempty"`
	// Transports served. Default [streamable-http].
	Transports []string `json:"transports,omitempty"`
	// PublicURL is the canonical URL clients use (also the default JWT audience and the
	// resource of the Protected Resource Metadata).
	PublicURL string `json:"publicURL,omitempty"`
}

// Upstream is the MCP server behind the runtime.
type Upstream struct {
	// Transport is stdio (command given after "--" on the command line, or Command) or http.
	Transport string `json:"transport,omitempty"`
	// Command and Args start a stdio server when none is given on the command line.
	Command []string `json:"command,omitempty"`
	// URL of an HTTP upstream (Streamable HTTP), normally on localhost.
	URL string `json:"url,omitempty"`
	// SessionMode is "shared" (one child, sessions multiplexed) or "per-session"
	// (a process per client session, from a pre-warmed pool). Default shared.
	SessionMode string `json:"sessionMode,omitempty"`
	// PoolSize is the number of pre-warmed processes in per-session mode. Default 2.
	PoolSize int `json:"poolSize,omitempty"`
	// MaxSessions bounds per-session processes. Default 16.
	MaxSessions int `json:"maxSessions,omitempty"`
	// MaxSessionsPerPrincipal bounds the per-session processes one principal (its subject,
	// else its client address) holds at a time, so that one caller cannot take them all.
	// Default: a quarter of MaxSessions, at least 1.
	MaxSessionsPerPrincipal int `json:"maxSessionsPerPrincipal,omitempty"`
	// ShutdownGrace is how long a child gets after SIGTERM. Default 10s.
	ShutdownGrace Duration `json:"shutdownGrace,omitzero"`
	// RequestTimeout bounds one upstream request. Default 60s.
	RequestTimeout Duration `json:"requestTimeout,omitzero"`
}

// Origins configures the Origin allowlist.
type Origins struct {
	// Allowed origins: exact "scheme://host[:port]", or "scheme://*.domain" patterns.
	Allowed []string `json:"allowed,omitempty"`
	// AllowMissing lets requests without an Origin header through (non-browser clients).
	// Default true: browsers always send Origin on cross-site requests.
	AllowMissing *bool `json:"allowMissing,omitempty"`
	// AllowedHosts is the Host header allowlist against DNS rebinding ("host" or
	// "host:port"; "*.domain" patterns allowed). Empty: the PublicURL host, localhost
	// names and IP literals pass (a rebinding attack needs a DNS name, never an IP).
	AllowedHosts []string `json:"allowedHosts,omitempty"`
}

// Auth configures authentication.
type Auth struct {
	// Anonymous disables authentication. Explicitly insecure.
	Anonymous bool `json:"anonymous,omitempty"`
	// JWT providers; a token is accepted if any provider verifies it.
	JWT []JWTProvider `json:"jwt,omitempty"`
	// APIKeys configures static API keys (stored hashed).
	APIKeys *APIKeys `json:"apiKeys,omitempty"`
	// WebSocket configures how browser WebSocket clients authenticate.
	WebSocket WebSocketAuth `json:"webSocket"`
	// ResourceMetadata is served at /.well-known/oauth-protected-resource (RFC 9728).
	ResourceMetadata ResourceMetadata `json:"resourceMetadata"`
}

// JWTProvider verifies bearer JWTs from one issuer.
type JWTProvider struct {
	// Issuer is the expected "iss".
	Issuer string `json:"issuer"`
	// Audiences accepted in "aud". Default: Endpoint.PublicURL.
	Audiences []string `json:"audiences,omitempty"`
	// JWKSURL to fetch keys from (cached and refreshed).
	JWKSURL string `json:"jwksURL,omitempty"`
	// Discovery fetches the JWKS URL from the issuer's OIDC discovery document.
	Discovery bool `json:"discovery,omitempty"`
	// KeyFiles are PEM public keys, each with its pinned algorithm.
	KeyFiles []KeyFile `json:"keyFiles,omitempty"`
	// Algorithms accepted for JWKS keys. Default [RS256, ES256].
	Algorithms []string `json:"algorithms,omitempty"`
	// Leeway for exp/nbf/iat. Default 30s, at most 5m.
	Leeway Duration `json:"leeway,omitzero"`
	// ScopeClaim holds granted scopes ("scope" space-separated, or "scp" list). Default "scope".
	ScopeClaim string `json:"scopeClaim,omitempty"`
}

// KeyFile is one PEM public key with its pinned algorithm.
type KeyFile struct {
	Path      string `json:"path"`
	Algorithm string `json:"algorithm"`
}

// APIKeys are static keys stored as hashes.
type APIKeys struct {
	// Dir holds one file per key: the file name is the key id (the principal), the content
	// is "sha256:<hex>" of the key.
	Dir string `json:"dir"`
}

// WebSocketAuth configures WebSocket authentication.
type WebSocketAuth struct {
	// Tickets: POST /auth/ticket with a valid bearer returns a single-use ticket redeemed
	// at upgrade with ?ticket=. Default on.
	Tickets Tickets `json:"tickets"`
	// FirstMessage lets a client send {"type":"auth","token":...} as its first frame.
	FirstMessage FirstMessage `json:"firstMessage"`
	// InsecureQueryToken accepts ?access_token= at upgrade. Tokens in URLs leak into logs.
	InsecureQueryToken bool `json:"insecureQueryToken,omitempty"`
}

// Tickets configures single-use WebSocket tickets.
type Tickets struct {
	// Disabled turns tickets off.
	Disabled bool `json:"disabled,omitempty"`
	// TTL of a ticket. Default 30s, at most 5m.
	TTL Duration `json:"ttl,omitzero"`
	// KeyFile holds the HMAC key tickets are signed with (shared across replicas).
	// Default: a random key per process.
	KeyFile string `json:"keyFile,omitempty"`
}

// FirstMessage configures first-message authentication.
type FirstMessage struct {
	Disabled bool `json:"disabled,omitempty"`
	// Timeout for the auth frame. Default 10s.
	Timeout Duration `json:"timeout,omitzero"`
}

// ResourceMetadata are the RFC 9728 fields.
type ResourceMetadata struct {
	// Resource defaults to Endpoint.PublicURL.
	Resource             string   `json:"resource,omitempty"`
	AuthorizationServers []string `json:"authorizationServers,omitempty"`
	ScopesSupported      []string `json:"scopesSupported,omitempty"`
	Documentation        string   `json:"documentation,omitempty"`
}

// Tools is the tool policy.
type Tools struct {
	// Allow globs; empty allows every tool not denied.
	Allow []string `json:"allow,omitempty"`
	// Deny globs; win over Allow.
	Deny []string `json:"deny,omitempty"`
	// SkipArgumentValidation turns off inputSchema validation of tools/call. Default off.
	SkipArgumentValidation bool `json:"skipArgumentValidation,omitempty"`
	// Scopes required per tool glob.
	Scopes []ToolScopes `json:"scopes,omitempty"`
}

// ToolScopes requires scopes for tools matching a glob.
type ToolScopes struct {
	Tool   string   `json:"tool"`
	Scopes []string `json:"scopes"`
}

// Limits bounds everything.
type Limits struct {
	// RequestsPerSecond per principal (subject, else client IP). Default 20. Negative: off.
	RequestsPerSecond float64 `json:"requestsPerSecond,omitempty"`
	// Burst per principal. Default 2×RequestsPerSecond (at least 1).
	Burst int `json:"burst,omitempty"`
	// PerTool limits, per principal and tool glob.
	PerTool []ToolLimit `json:"perTool,omitempty"`
	// MaxConnections overall. Default 10000.
	MaxConnections int `json:"maxConnections,omitempty"`
	// MaxConnectionsPerPrincipal. Default 100.
	MaxConnectionsPerPrincipal int `json:"maxConnectionsPerPrincipal,omitempty"`
	// MaxMessageBytes for HTTP bodies and WebSocket frames. Default 1 MiB.
	MaxMessageBytes int64 `json:"maxMessageBytes,omitempty"`
	// MaxDepth of JSON nesting. Default 64.
	MaxDepth int `json:"maxDepth,omitempty"`
	// ReadHeaderTimeout default 10s; IdleTimeout default 120s.
	ReadHeaderTimeout Duration `json:"readHeaderTimeout,omitzero"`
	IdleTimeout       Duration `json:"idleTimeout,omitzero"`
	// ReadBodyTimeout bounds reading a request body once its headers are in (slow-body
	// defence; refused requests included, whose rest net/http reads). Default 30s.
	ReadBodyTimeout Duration `json:"readBodyTimeout,omitzero"`
}

// ToolLimit is a token bucket for tools matching a glob.
type ToolLimit struct {
	Tool              string  `json:"tool"`
	RequestsPerSecond float64 `json:"requestsPerSecond"`
	Burst             int     `json:"burst,omitempty"`
}

// Audit configures the audit log (JSON lines on stdout, or a file).
type Audit struct {
	Disabled bool `json:"disabled,omitempty"`
	// LogArguments logs full tool arguments instead of size + SHA-256. Default off.
	LogArguments bool `json:"logArguments,omitempty"`
	// File to append to; default stdout.
	File string `json:"file,omitempty"`
}

// Metrics configures /metrics on the health address.
type Metrics struct {
	Disabled bool `json:"disabled,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration struct{ time.Duration }

// D makes a Duration.
func D(d time.Duration) Duration { return Duration{d} }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads "30s" (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err2 := json.Unmarshal(b, &secs); err2 != nil {
			return fmt.Errorf("duration must be a string such as \"30s\": %w", err)
		}
		d.Duration = time.Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (use e.g. \"30s\", \"5m\"): %w", s, err)
	}
	d.Duration = v
	return nil
}

// IsZero lets omitempty-aware encoders skip unset durations.
func (d Duration) IsZero() bool { return d.Duration == 0 }

// Load reads, defaults and validates a config file (YAML or JSON).
func Load(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(data)
}

// Parse decodes (unknown fields are errors), defaults and validates a config.
func Parse(data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("decoding config: %w", err)
	}
	c.Default()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Marshal writes the config as YAML (the ConfigMap form).
func (c *Config) Marshal() ([]byte, error) { return yaml.Marshal(c) }

// Default fills unset fields with their documented defaults. It is idempotent.
func (c *Config) Default() {
	setS := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setD := func(p *Duration, v time.Duration) {
		if p.Duration == 0 {
			p.Duration = v
		}
	}
	setI := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setS(&c.Listen.Address, ":8443")
	setS(&c.Listen.HealthAddress, ":9090")
	setS(&c.TLS.ClientAuth, ClientAuthNone)
	setS(&c.TLS.MinVersion, "1.2")
	setS(&c.Endpoint.Path, "/mcp")
	if len(c.Endpoint.Transports) == 0 {
		c.Endpoint.Transports = []string{TransportStreamableHTTP}
	}
	setS(&c.Upstream.Transport, UpstreamStdio)
	setS(&c.Upstream.SessionMode, "shared")
	setI(&c.Upstream.PoolSize, 2)
	setI(&c.Upstream.MaxSessions, 16)
	setI(&c.Upstream.MaxSessionsPerPrincipal, max(1, c.Upstream.MaxSessions/4))
	setD(&c.Upstream.ShutdownGrace, 10*time.Second)
	setD(&c.Upstream.RequestTimeout, 60*time.Second)
	if c.Origins.AllowMissing == nil {
		t := true
		c.Origins.AllowMissing = &t
	}
	for i := range c.Auth.JWT {
		p := &c.Auth.JWT[i]
		if len(p.Audiences) == 0 && c.Endpoint.PublicURL != "" {
			p.Audiences = []string{c.Endpoint.PublicURL}
		}
		if len(p.Algorithms) == 0 {
			p.Algorithms = []string{"RS256", "ES256"}
		}
		setD(&p.Leeway, 30*time.Second)
		setS(&p.ScopeClaim, "scope")
	}
	setD(&c.Auth.WebSocket.Tickets.TTL, 30*time.Second)
	setD(&c.Auth.WebSocket.FirstMessage.Timeout, 10*time.Second)
	setS(&c.Auth.ResourceMetadata.Resource, c.Endpoint.PublicURL)
	if c.Limits.RequestsPerSecond == 0 {
		c.Limits.RequestsPerSecond = 20
	}
	if c.Limits.Burst == 0 {
		c.Limits.Burst = max(1, int(2*c.Limits.RequestsPerSecond))
	}
	for i := range c.Limits.PerTool {
		if c.Limits.PerTool[i].Burst == 0 {
			c.Limits.PerTool[i].Burst = max(1, int(c.Limits.PerTool[i].RequestsPerSecond))
		}
	}
	setI(&c.Limits.MaxConnections, 10000)
	setI(&c.Limits.MaxConnectionsPerPrincipal, 100)
	if c.Limits.MaxMessageBytes == 0 {
		c.Limits.MaxMessageBytes = 1 << 20
	}
	setI(&c.Limits.MaxDepth, 64)
	setD(&c.Limits.ReadHeaderTimeout, 10*time.Second)
	setD(&c.Limits.IdleTimeout, 120*time.Second)
	setD(&c.Limits.ReadBodyTimeout, 30*time.Second)
}

// Validate reports every problem, each naming the field and the fix.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	checkAddr := func(field, v string) {
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(field, "%q is not host:port (e.g. \":8443\")", v)
		}
	}
	checkAddr("listen.address", c.Listen.Address)
	checkAddr("listen.healthAddress", c.Listen.HealthAddress)
	if c.Listen.Address == c.Listen.HealthAddress {
		bad("listen.healthAddress", "must differ from listen.address")
	}

	if !c.TLS.Insecure && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		bad("tls.certFile", "certFile and keyFile are required unless tls.insecure is true")
	}
	switch c.TLS.ClientAuth {
	case ClientAuthNone:
		if c.TLS.ClientCAFile != "" { // a CA bundle alone looks like mTLS but asks for nothing
			bad("tls.clientCAFile", "client certificates are only verified with tls.clientAuth request or require: set one, or remove tls.clientCAFile")
		}
	case ClientAuthRequest, ClientAuthRequire:
		if c.TLS.ClientCAFile == "" {
			bad("tls.clientCAFile", "required when tls.clientAuth is %q", c.TLS.ClientAuth)
		}
		if c.TLS.Insecure {
			bad("tls.clientAuth", "client certificates need TLS; unset tls.insecure")
		}
	default:
		bad("tls.clientAuth", "%q is not one of none, request, require", c.TLS.ClientAuth)
	}
	if c.TLS.MinVersion != "1.2" && c.TLS.MinVersion != "1.3" {
		bad("tls.minVersion", "%q is not \"1.2\" or \"1.3\"", c.TLS.MinVersion)
	}

	if !strings.HasPrefix(c.Endpoint.Path, "/") || path.Clean(c.Endpoint.Path) != c.Endpoint.Path {
		bad("endpoint.path", "%q must be a clean absolute path such as /mcp", c.Endpoint.Path)
	} else if reservedPath(c.Endpoint.Path) {
		bad("endpoint.path", "%q is a path the runtime serves itself (/healthz, /readyz, /auth/…, /.well-known/…): choose another, such as /mcp", c.Endpoint.Path)
	}
	seen := map[string]bool{}
	for i, t := range c.Endpoint.Transports {
		switch t {
		case TransportStreamableHTTP, TransportSSE, TransportWebSocket:
		default:
			bad(fmt.Sprintf("endpoint.transports[%d]", i), "%q is not one of streamable-http, sse, websocket", t)
		}
		if seen[t] {
			bad(fmt.Sprintf("endpoint.transports[%d]", i), "%q is listed twice", t)
		}
		seen[t] = true
	}
	if c.Endpoint.PublicURL != "" {
		if u, err := url.Parse(c.Endpoint.PublicURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			bad("endpoint.publicURL", "%q must be an absolute http(s) URL", RedactURL(c.Endpoint.PublicURL))
		}
	}

	switch c.Upstream.Transport {
	case UpstreamStdio:
		if c.Upstream.URL != "" {
			bad("upstream.url", "only for upstream.transport http")
		}
	case UpstreamHTTP:
		u, err := url.Parse(c.Upstream.URL)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			bad("upstream.url", "%q must be an absolute http(s) URL such as http://127.0.0.1:8080/mcp", RedactURL(c.Upstream.URL))
		}
		if len(c.Upstream.Command) > 0 {
			bad("upstream.command", "only for upstream.transport stdio")
		}
	default:
		bad("upstream.transport", "%q is not stdio or http", c.Upstream.Transport)
	}
	switch c.Upstream.SessionMode {
	case "shared":
	case "per-session":
		if c.Upstream.Transport != UpstreamStdio {
			bad("upstream.sessionMode", "per-session needs upstream.transport stdio")
		}
		if c.Upstream.PoolSize < 0 || c.Upstream.PoolSize > c.Upstream.MaxSessions {
			bad("upstream.poolSize", "must be between 0 and upstream.maxSessions (%d)", c.Upstream.MaxSessions)
		}
		if c.Upstream.MaxSessionsPerPrincipal < 1 || c.Upstream.MaxSessionsPerPrincipal > c.Upstream.MaxSessions {
			bad("upstream.maxSessionsPerPrincipal", "must be between 1 and upstream.maxSessions (%d)", c.Upstream.MaxSessions)
		}
	default:
		bad("upstream.sessionMode", "%q is not shared or per-session", c.Upstream.SessionMode)
	}
	// A negative timeout would fail every request at once (the server's own timers use it
	// as given), a negative grace would kill the child without one.
	if c.Upstream.RequestTimeout.Duration <= 0 {
		bad("upstream.requestTimeout", "must be positive")
	}
	if c.Upstream.ShutdownGrace.Duration <= 0 {
		bad("upstream.shutdownGrace", "must be positive")
	}

	for i, o := range c.Origins.Allowed {
		if err := ValidateOrigin(o); err != nil {
			bad(fmt.Sprintf("origins.allowed[%d]", i), "%v", err)
		}
	}

	jwtOrKeys := len(c.Auth.JWT) > 0 || c.Auth.APIKeys != nil
	if !c.Auth.Anonymous && !jwtOrKeys {
		bad("auth", "no authentication configured: add auth.jwt or auth.apiKeys, or set auth.anonymous: true to serve without authentication (insecure)")
	}
	if c.Auth.Anonymous && jwtOrKeys {
		bad("auth.anonymous", "cannot be combined with auth.jwt or auth.apiKeys")
	}
	for i, p := range c.Auth.JWT {
		f := fmt.Sprintf("auth.jwt[%d]", i)
		if p.Issuer == "" {
			bad(f+".issuer", "required")
		}
		for j, a := range p.Audiences {
			if strings.TrimSpace(a) == "" {
				bad(fmt.Sprintf("%s.audiences[%d]", f, j), "must not be empty: a token whose aud lists \"\" would match it")
			}
		}
		if len(p.Audiences) == 0 {
			bad(f+".audiences", "required when endpoint.publicURL is not set")
		}
		sources := 0
		if p.JWKSURL != "" {
			sources++
			if !httpsOrLoopback(p.JWKSURL) {
				bad(f+".jwksURL", "%q must be an https URL", RedactURL(p.JWKSURL))
			}
		}
		if p.Discovery {
			sources++
			if p.Issuer != "" && !httpsOrLoopback(p.Issuer) {
				bad(f+".issuer", "%q must be an https URL when discovery is true: the discovery document names the keys that sign tokens, so fetching it over plain http lets anyone on the network path choose them (use the issuer's https URL, or jwksURL/keyFiles)", p.Issuer)
			}
		}
		if len(p.KeyFiles) > 0 {
			sources++
		}
		if sources != 1 {
			bad(f, "set exactly one of jwksURL, discovery, keyFiles")
		}
		for j, k := range p.KeyFiles {
			if k.Path == "" {
				bad(fmt.Sprintf("%s.keyFiles[%d].path", f, j), "required")
			}
			if !asymmetricAlg(k.Algorithm) {
				bad(fmt.Sprintf("%s.keyFiles[%d].algorithm", f, j), "%q is not an asymmetric JWS algorithm (RS256/384/512, PS256/384/512, ES256/384/512, EdDSA)", k.Algorithm)
			}
		}
		for j, a := range p.Algorithms {
			if !asymmetricAlg(a) {
				bad(fmt.Sprintf("%s.algorithms[%d]", f, j), "%q is not an asymmetric JWS algorithm; HS* and none are refused", a)
			}
		}
		if p.Leeway.Duration < 0 || p.Leeway.Duration > 5*time.Minute {
			bad(f+".leeway", "must be between 0s and 5m")
		}
	}
	if c.Auth.APIKeys != nil && c.Auth.APIKeys.Dir == "" {
		bad("auth.apiKeys.dir", "required")
	}
	if ttl := c.Auth.WebSocket.Tickets.TTL.Duration; ttl < time.Second || ttl > 5*time.Minute {
		bad("auth.webSocket.tickets.ttl", "must be between 1s and 5m")
	}
	// An unauthenticated socket holds a connection slot of its client and of the runtime
	// until then: at most the MCPServer API's bound.
	if d := c.Auth.WebSocket.FirstMessage.Timeout.Duration; d <= 0 || d > time.Minute {
		bad("auth.webSocket.firstMessage.timeout", "must be positive and at most 60s")
	}

	for i, s := range c.Tools.Scopes {
		if s.Tool == "" || len(s.Scopes) == 0 {
			bad(fmt.Sprintf("tools.scopes[%d]", i), "needs a tool glob and at least one scope")
		}
		if err := glob.Validate(s.Tool); err != nil {
			bad(fmt.Sprintf("tools.scopes[%d].tool", i), "%q: %v", s.Tool, err)
		}
	}
	for i, g := range c.Tools.Allow {
		if err := glob.Validate(g); err != nil {
			bad(fmt.Sprintf("tools.allow[%d]", i), "%q: %v", g, err)
		}
	}
	for i, g := range c.Tools.Deny {
		if err := glob.Validate(g); err != nil {
			bad(fmt.Sprintf("tools.deny[%d]", i), "%q: %v", g, err)
		}
	}

	l := c.Limits
	if l.RequestsPerSecond > 0 && l.Burst < 1 {
		bad("limits.burst", "must be at least 1")
	}
	for i, t := range l.PerTool {
		if t.Tool == "" || t.RequestsPerSecond <= 0 || t.Burst < 1 {
			bad(fmt.Sprintf("limits.perTool[%d]", i), "needs a tool glob, requestsPerSecond > 0 and burst >= 1")
		}
		if err := glob.Validate(t.Tool); err != nil {
			bad(fmt.Sprintf("limits.perTool[%d].tool", i), "%q: %v", t.Tool, err)
		}
	}
	if l.MaxConnections < 1 || l.MaxConnectionsPerPrincipal < 1 || l.MaxConnectionsPerPrincipal > l.MaxConnections {
		bad("limits.maxConnectionsPerPrincipal", "must be between 1 and limits.maxConnections")
	}
	if l.MaxMessageBytes < 1024 || l.MaxMessageBytes > 64<<20 {
		bad("limits.maxMessageBytes", "must be between 1024 and 67108864")
	}
	if l.MaxDepth < 2 || l.MaxDepth > 1000 {
		bad("limits.maxDepth", "must be between 2 and 1000")
	}
	for _, d := range []struct {
		field string
		d     Duration
	}{{"limits.readHeaderTimeout", l.ReadHeaderTimeout}, {"limits.idleTimeout", l.IdleTimeout}, {"limits.readBodyTimeout", l.ReadBodyTimeout}} {
		if d.d.Duration <= 0 {
			bad(d.field, "must be positive")
		}
	}
	return errors.Join(errs...)
}

// ValidateOrigin checks an allowlist entry: "scheme://host[:port]" or "scheme://*.domain[:port]",
// lowercase, no path, query or userinfo; a bare "*" is refused.
func ValidateOrigin(o string) error {
	if o == "*" || o == "null" {
		return fmt.Errorf("%q is refused: list the exact origins (e.g. https://app.example.com)", o)
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q must be scheme://host[:port] with scheme http or https", o)
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.HasSuffix(o, "/") {
		return fmt.Errorf("%q must not have a path, query, fragment or user info", o)
	}
	if strings.ToLower(o) != o {
		return fmt.Errorf("%q must be lowercase", o)
	}
	host := u.Hostname()
	if strings.Contains(host, "*") {
		rest, ok := strings.CutPrefix(host, "*.")
		if !ok || rest == "" || strings.Contains(rest, "*") || !strings.Contains(rest, ".") {
			return fmt.Errorf("%q: a wildcard must be a leading \"*.\" on a domain of two or more labels", o)
		}
	}
	return nil
}

// reservedPath reports an endpoint path the runtime's own handlers would take: health
// checks, the ticket endpoint, the protected-resource metadata. The MCP endpoint there would
// be served in part (its GET, WebSocket and SSE requests answered by another handler).
func reservedPath(p string) bool {
	return p == "/healthz" || p == "/readyz" || strings.HasPrefix(p, "/auth/") || strings.HasPrefix(p, "/.well-known/")
}

func asymmetricAlg(a string) bool {
	switch a {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
		return true
	}
	return false
}

// httpsOrLoopback reports whether keys may be fetched from raw (see SafeKeyURL).
func httpsOrLoopback(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && SafeKeyURL(u)
}

// SafeKeyURL reports whether signing keys, or a document naming them, may be fetched from
// u: https, or plain http to a loopback address, where no network attacker sits in between.
func SafeKeyURL(u *url.URL) bool {
	if u.Host == "" {
		return false
	}
	if u.Scheme == "https" {
		return true
	}
	h := u.Hostname()
	ip := net.ParseIP(h)
	return u.Scheme == "http" && (h == "localhost" || ip != nil && ip.IsLoopback())
}

// RedactURL masks the password of a URL quoted in an error or a log line (Go's client sends
// it as basic auth, so it is a credential), also when the URL does not parse.
func RedactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	at, scheme := strings.LastIndex(raw, "@"), strings.Index(raw, "://")
	if scheme >= 0 && at > scheme {
		return raw[:scheme+3] + "xxxxx" + raw[at:]
	}
	return raw
}
