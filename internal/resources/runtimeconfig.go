package resources

import (
	"fmt"
	"net/url"
	"path"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// RuntimeConfig renders the runtime configuration of a server: the same schema the
// runtime loads. It holds file paths, never secret values.
func RuntimeConfig(s *mcpv1alpha1.MCPServer, o Options) *config.Config {
	sp := s.Spec
	c := &config.Config{
		Listen: config.Listen{
			Address:       ":" + strconv.Itoa(int(endpointPort(s))),
			HealthAddress: ":" + strconv.Itoa(int(metricsPort(s))),
		},
		Endpoint: config.Endpoint{Path: endpointPath(s), PublicURL: URL(s, o)},
		Audit:    config.Audit{Disabled: sp.Audit.Disabled, LogArguments: sp.Audit.LogArguments},
		Metrics:  config.Metrics{Disabled: sp.Metrics.Disabled},
	}
	for _, t := range sp.Endpoint.Transports {
		c.Endpoint.Transports = append(c.Endpoint.Transports, string(t))
	}

	if sp.TLS.InsecureDisabled {
		c.TLS.Insecure = true
	} else {
		c.TLS.CertFile = path.Join(TLSDir, "tls.crt")
		c.TLS.KeyFile = path.Join(TLSDir, "tls.key")
		if sp.TLS.ClientAuth != "" && sp.TLS.ClientAuth != config.ClientAuthNone && sp.TLS.ClientCASecretRef != nil {
			c.TLS.ClientAuth = sp.TLS.ClientAuth
			c.TLS.ClientCAFile = path.Join(ClientCADir, "ca.crt")
		}
	}

	c.Upstream.SessionMode = sp.SessionMode
	switch sp.Transport {
	case mcpv1alpha1.TransportHTTP:
		c.Upstream.Transport = config.UpstreamHTTP
		p := "/mcp"
		if sp.Upstream != nil && sp.Upstream.Path != "" {
			p = sp.Upstream.Path
		}
		var port int32
		if sp.Upstream != nil {
			port = sp.Upstream.Port
		}
		c.Upstream.URL = (&url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port), Path: p}).String()
	default:
		// The command arrives after "--" on the runtime's command line.
		c.Upstream.Transport = config.UpstreamStdio
	}

	c.Origins.AllowMissing = sp.Origins.AllowMissing
	for _, a := range sp.Origins.Allowed {
		c.Origins.Allowed = append(c.Origins.Allowed, string(a))
	}
	c.Origins.AllowedHosts = sp.Origins.AllowedHosts
	if len(c.Origins.AllowedHosts) == 0 {
		c.Origins.AllowedHosts = defaultAllowedHosts(s, o)
	}

	c.Auth = runtimeAuth(s, o)
	c.Tuning.KeepSchedulerAwake = sp.KeepSchedulerAwake
	c.Tuning.StaticProcs = sp.StaticProcs

	c.Tools = config.Tools{
		Allow:                  sp.Tools.Allow,
		Deny:                   sp.Tools.Deny,
		SkipArgumentValidation: sp.Tools.ValidateArguments != nil && !*sp.Tools.ValidateArguments,
	}
	for _, ts := range sp.Tools.Scopes {
		c.Tools.Scopes = append(c.Tools.Scopes, config.ToolScopes{Tool: ts.Tool, Scopes: ts.Scopes})
	}

	rl := sp.RateLimit
	c.Limits = config.Limits{
		RequestsPerSecond:          float64(rl.RequestsPerSecond),
		MaxConnections:             int(rl.MaxConnections),
		MaxConnectionsPerPrincipal: int(rl.MaxConnectionsPerClient),
		ReadHeaderTimeout:          duration(rl.ReadHeaderTimeout),
		IdleTimeout:                duration(rl.IdleTimeout),
		ReadBodyTimeout:            duration(rl.ReadBodyTimeout),
	}
	if rl.Burst != nil {
		c.Limits.Burst = int(*rl.Burst)
	}
	if rl.MaxMessageSize != nil {
		c.Limits.MaxMessageBytes = rl.MaxMessageSize.Value()
	}
	for _, t := range rl.PerTool {
		tl := config.ToolLimit{Tool: t.Tool, RequestsPerSecond: float64(t.RequestsPerSecond)}
		if t.Burst != nil {
			tl.Burst = int(*t.Burst)
		}
		c.Limits.PerTool = append(c.Limits.PerTool, tl)
	}
	return c
}

func runtimeAuth(s *mcpv1alpha1.MCPServer, o Options) config.Auth {
	a := s.Spec.Auth
	out := config.Auth{Anonymous: a.InsecureAnonymous}
	if a.InsecureAnonymous {
		return out
	}
	if !a.GeneratedIssuer.Disabled {
		out.JWT = append(out.JWT, config.JWTProvider{
			Issuer:   GeneratedIssuer(s),
			KeyFiles: []config.KeyFile{{Path: path.Join(AuthDir, AuthKeyPublic), Algorithm: "ES256"}},
		})
	}
	for i, p := range a.JWT {
		jp := config.JWTProvider{Issuer: p.Issuer, Audiences: p.Audiences, JWKSURL: p.JWKSURL, Discovery: p.Discovery}
		for _, alg := range p.Algorithms {
			jp.Algorithms = append(jp.Algorithms, string(alg))
		}
		if p.PublicKeySecretRef != nil {
			alg := "RS256"
			if len(p.Algorithms) > 0 {
				alg = string(p.Algorithms[0])
			}
			jp.KeyFiles = []config.KeyFile{{Path: path.Join(JWTKeysDir, strconv.Itoa(i), "key.pem"), Algorithm: alg}}
		}
		out.JWT = append(out.JWT, jp)
	}
	if a.APIKeys != nil {
		out.APIKeys = &config.APIKeys{Dir: APIKeysDir}
	}
	ws := a.WebSocket
	out.WebSocket = config.WebSocketAuth{
		Tickets:            config.Tickets{Disabled: ws.Tickets.Disabled, TTL: duration(ws.Tickets.TTL), KeyFile: path.Join(AuthDir, AuthKeyTicketKey)},
		FirstMessage:       config.FirstMessage{Disabled: ws.FirstMessage.Disabled, Timeout: duration(ws.FirstMessage.Timeout)},
		InsecureQueryToken: ws.InsecureQueryToken,
	}
	rm := a.ResourceMetadata
	out.ResourceMetadata = config.ResourceMetadata{
		AuthorizationServers: rm.AuthorizationServers,
		ScopesSupported:      rm.ScopesSupported,
		Documentation:        rm.Documentation,
	}
	return out
}

// defaultAllowedHosts are the names clients may reach the server by: the Service names,
// the certificate's extra names, the public URL's host and localhost (port-forwarding).
func defaultAllowedHosts(s *mcpv1alpha1.MCPServer, o Options) []string {
	hosts := append(ServiceDNSNames(s, o), s.Spec.TLS.DNSNames...)
	if h := publicURLHost(s); h != "" {
		hosts = append(hosts, h)
	}
	return dedupe(append(hosts, "localhost"))
}

// publicURLHost is the host of spec.endpoint.publicURL ("" when unset).
func publicURLHost(s *mcpv1alpha1.MCPServer) string {
	if s.Spec.Endpoint.PublicURL == "" {
		return ""
	}
	u, err := url.Parse(s.Spec.Endpoint.PublicURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// dedupe drops repeated strings, keeping the first of each in order.
func dedupe(xs []string) []string {
	seen := map[string]bool{}
	out := xs[:0]
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// duration converts an optional API duration; nil leaves the runtime default.
func duration(d *metav1.Duration) config.Duration {
	if d == nil {
		return config.Duration{}
	}
	return config.D(d.Duration)
}
