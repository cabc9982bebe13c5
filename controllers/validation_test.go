package controllers

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
)

// dryRunCreate sends an MCPServer with the given spec (YAML, as a user writes it) to the
// real API server without persisting it: defaulting, OpenAPI and CEL rules all run.
func dryRunCreate(ns, spec string) error { return dryRunCreateNamed(ns, "validation", spec) }

func dryRunCreateNamed(ns, name, spec string) error {
	var s map[string]any
	Expect(yaml.Unmarshal([]byte(spec), &s)).To(Succeed(), "test manifest must be YAML")
	u := &unstructured.Unstructured{Object: map[string]any{"spec": s}}
	u.SetGroupVersionKind(mcpv1alpha1.GroupVersion.WithKind("MCPServer"))
	u.SetNamespace(ns)
	u.SetName(name)
	return k8sClient.Create(ctx, u, client.DryRunAll)
}

const validStdio = `
image: ghcr.io/example/everything-server:v1.8.0
command: ["/everything-server"]
`

// Ordered only to share one namespace: every create is a dry run, nothing persists.
var _ = Describe("MCPServer validation by the API server", Ordered, func() {
	var ns string
	BeforeAll(func() { ns = newNamespace(nil) })

	DescribeTable("rejects an invalid server at create time, naming the field and the fix",
		func(spec string, wantParts ...string) {
			name := "validation"
			if len(wantParts) > 0 && strings.HasPrefix(wantParts[0], "!name=") {
				name, wantParts = strings.TrimPrefix(wantParts[0], "!name="), wantParts[1:]
			}
			err := dryRunCreateNamed(ns, name, spec)
			Expect(err).To(HaveOccurred(), "the API server accepted:\n%s", spec)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
			for _, p := range wantParts {
				Expect(err.Error()).To(ContainSubstring(p))
			}
		},
		Entry("stdio without command", `
image: ghcr.io/example/server:1
transport: stdio
`, "spec: Invalid value", "spec.command is required when spec.transport is stdio", `command: ["/server"]`),
		Entry("http without upstream.port", `
image: ghcr.io/example/server:1
transport: http
`, "spec.upstream.port is required when spec.transport is http", "the port your server listens on"),
		Entry("http with an upstream lacking its port", `
image: ghcr.io/example/server:1
transport: http
upstream: {path: /mcp}
`, "spec.upstream.port: Required value"),
		Entry("upstream with stdio", validStdio+`
upstream: {port: 8080}
`, "spec.upstream is only for spec.transport http", "remove it for stdio servers"),
		Entry("per-session with http", `
image: ghcr.io/example/server:1
transport: http
upstream: {port: 8080}
sessionMode: per-session
`, "spec.sessionMode per-session needs spec.transport stdio"),
		Entry("a name that cannot name a Service", validStdio, "!name=my.server", "metadata.name of an MCPServer names its Service", "no dots"),
		Entry("a name longer than a label value", validStdio, "!name="+strings.Repeat("a", 64), "at most 63 lowercase letters"),
		Entry("a pod label value a label cannot hold", validStdio+`
podLabels: {team: "`+strings.Repeat("x", 64)+`"}
`, "spec.podLabels values must be valid label values"),
		Entry("an AppArmor profile in pod annotations", validStdio+`
podAnnotations: {container.apparmor.security.beta.kubernetes.io/server: unconfined}
`, "spec.podAnnotations must not set AppArmor or seccomp profiles", "the pods' security context sets them"),
		Entry("a seccomp profile in pod annotations", validStdio+`
podAnnotations: {seccomp.security.alpha.kubernetes.io/pod: unconfined}
`, "spec.podAnnotations must not set AppArmor or seccomp profiles"),
		Entry("an allowed host with a scheme", validStdio+`
origins: {allowedHosts: ["https://mcp.example.com"]}
`, "spec.origins.allowedHosts[0]", "must be host, host:port, *.domain or *.domain:port"),
		Entry("an allowed host with a path", validStdio+`
origins: {allowedHosts: ["mcp.example.com/mcp"]}
`, "spec.origins.allowedHosts[0]", "without scheme or path"),
		Entry("a bare * origin", validStdio+`
origins: {allowed: ["*"]}
`, "spec.origins.allowed[0]", "a bare '*' origin is refused", "list the exact origins"),
		Entry("an origin with a path", validStdio+`
origins: {allowed: ["https://app.example.com/login"]}
`, "spec.origins.allowed[0]", "no path, query or trailing slash", "(e.g. https://app.example.com)"),
		Entry("an origin with a trailing slash", validStdio+`
origins: {allowed: ["https://app.example.com/"]}
`, "spec.origins.allowed[0]", "no path, query or trailing slash"),
		Entry("a wildcard on a TLD", validStdio+`
origins: {allowed: ["https://app.example.com", "https://*.com"]}
`, "spec.origins.allowed[1]", "a wildcard origin must be '*.' followed by a domain of at least two labels", "https://*.corp.example"),
		Entry("a wildcard in the middle", validStdio+`
origins: {allowed: ["https://app.*.example.com"]}
`, "spec.origins.allowed[0]", "a wildcard origin must be '*.'"),
		Entry("an uppercase origin", validStdio+`
origins: {allowed: ["https://App.Example.com"]}
`, "spec.origins.allowed[0]", "in lowercase"),
		Entry("an origin with another scheme", validStdio+`
origins: {allowed: ["chrome-extension://abcdef"]}
`, "spec.origins.allowed[0]", "scheme http or https"),
		Entry("insecureAnonymous with jwt", validStdio+`
auth:
  insecureAnonymous: true
  jwt: [{issuer: https://login.example.com, jwksURL: https://login.example.com/jwks}]
`, "spec.auth: Invalid value", "spec.auth.insecureAnonymous turns authentication off and cannot be combined with spec.auth.jwt or spec.auth.apiKeys"),
		Entry("insecureAnonymous with apiKeys", validStdio+`
auth:
  insecureAnonymous: true
  apiKeys: {secretName: keys}
`, "cannot be combined with spec.auth.jwt or spec.auth.apiKeys"),
		Entry("generatedIssuer disabled and no other auth", validStdio+`
auth: {generatedIssuer: {disabled: true}}
`, "spec.auth: Invalid value", "no authentication method left", "add spec.auth.jwt or spec.auth.apiKeys"),
		Entry("a jwt entry with two key sources", validStdio+`
auth:
  jwt: [{issuer: https://login.example.com, jwksURL: https://login.example.com/jwks, discovery: true}]
`, "spec.auth.jwt[0]", "set exactly one key source per spec.auth.jwt entry: jwksURL, discovery: true, or publicKeySecretRef"),
		Entry("a jwt entry with no key source", validStdio+`
auth:
  jwt: [{issuer: https://login.example.com}]
`, "spec.auth.jwt[0]", "set exactly one key source"),
		Entry("a jwksURL over plain http", validStdio+`
auth:
  jwt: [{issuer: https://login.example.com, jwksURL: "http://login.example.com/jwks"}]
`, "spec.auth.jwt[0].jwksURL", "must be an https URL"),
		Entry("a discovery issuer over plain http", validStdio+`
auth:
  jwt: [{issuer: "http://login.example.com", discovery: true}]
`, "spec.auth.jwt[0].issuer", "must be an https URL when discovery is true: the discovery document names the keys that sign tokens"),
		Entry("an HS256 algorithm", validStdio+`
auth:
  jwt: [{issuer: https://login.example.com, jwksURL: https://login.example.com/jwks, algorithms: [HS256]}]
`, "spec.auth.jwt[0].algorithms[0]", `Unsupported value: "HS256"`, `"RS256"`, `"EdDSA"`),
		Entry("the none algorithm", validStdio+`
auth:
  jwt: [{issuer: https://login.example.com, jwksURL: https://login.example.com/jwks, algorithms: [none]}]
`, "spec.auth.jwt[0].algorithms[0]", `Unsupported value: "none"`),
		Entry("a public key without its one algorithm", validStdio+`
auth:
  jwt: [{issuer: partner, publicKeySecretRef: {name: partner-key, key: pub.pem}}]
`, "spec.auth.jwt[0]", "algorithms must name the one algorithm of the key in publicKeySecretRef", "algorithms: [ES256]"),
		Entry("tls issuerRef and secretName", validStdio+`
tls: {issuerRef: {name: letsencrypt}, secretName: my-cert}
`, "spec.tls: Invalid value", "set spec.tls.issuerRef (cert-manager issues the certificate) or spec.tls.secretName (you provide it), not both"),
		Entry("tls clientAuth require without a CA", validStdio+`
tls: {clientAuth: require}
`, "spec.tls", "spec.tls.clientCASecretRef is required when spec.tls.clientAuth is request or require"),
		Entry("tls insecureDisabled with secretName", validStdio+`
tls: {insecureDisabled: true, secretName: my-cert}
`, "spec.tls", "spec.tls.insecureDisabled turns TLS off; remove issuerRef, secretName and clientAuth or keep TLS on"),
		Entry("tls insecureDisabled with client certificates", validStdio+`
tls: {insecureDisabled: true, clientAuth: request, clientCASecretRef: {name: ca, key: ca.crt}}
`, "spec.tls.insecureDisabled turns TLS off"),
		Entry("networkPolicy insecureDisabled with ingress rules", validStdio+`
networkPolicy:
  insecureDisabled: true
  ingress: [{podSelector: {matchLabels: {app: web}}}]
`, "spec.networkPolicy", "spec.networkPolicy.insecureDisabled removes the NetworkPolicy; remove ingress and egress rules or keep it on"),
		Entry("101 replicas", validStdio+`
replicas: 101
`, "spec.replicas", "should be less than or equal to 100"),
		Entry("negative replicas", validStdio+`
replicas: -1
`, "spec.replicas", "should be greater than or equal to 0"),
		Entry("an endpoint path under /.well-known", validStdio+`
endpoint: {path: /.well-known/mcp}
`, "spec.endpoint.path", "must not be under /.well-known or /auth/, which the runtime serves itself"),
		Entry("an endpoint path under /auth/", validStdio+`
endpoint: {path: /auth/mcp}
`, "spec.endpoint.path", "must not be under /.well-known or /auth/"),
		Entry("an endpoint path with a trailing slash", validStdio+`
endpoint: {path: /mcp/}
`, "spec.endpoint.path", "must be a clean path", "(e.g. /mcp)"),
		Entry("an endpoint path with a dot-dot segment", validStdio+`
endpoint: {path: /a/../mcp}
`, "spec.endpoint.path", "must be a clean path"),
		Entry("an endpoint path with a query", validStdio+`
endpoint: {path: "/mcp?x=1"}
`, "spec.endpoint.path", "should match"),
		Entry("maxMessageSize 64Gi", validStdio+`
rateLimit: {maxMessageSize: 64Gi}
`, "spec.rateLimit.maxMessageSize", "must be between 1Ki and 64Mi"),
		Entry("maxMessageSize just above 64Mi", validStdio+`
rateLimit: {maxMessageSize: "67108865"}
`, "spec.rateLimit.maxMessageSize must be between 1Ki and 64Mi"),
		Entry("maxMessageSize under 1Ki", validStdio+`
rateLimit: {maxMessageSize: "512"}
`, "spec.rateLimit.maxMessageSize must be between 1Ki and 64Mi"),
		Entry("maxConnectionsPerClient above maxConnections", validStdio+`
rateLimit: {maxConnections: 10, maxConnectionsPerClient: 100}
`, "spec.rateLimit", "spec.rateLimit.maxConnectionsPerClient must not exceed spec.rateLimit.maxConnections"),
		Entry("a ticket ttl of 10m", validStdio+`
auth: {webSocket: {tickets: {ttl: 10m}}}
`, "spec.auth.webSocket.tickets.ttl", "must be between 1s and 5m"),
		Entry("a first-message timeout of 2m", validStdio+`
auth: {webSocket: {firstMessage: {timeout: 2m}}}
`, "spec.auth.webSocket.firstMessage.timeout must be between 1s and 60s"),
		Entry("a negative read body timeout", validStdio+`
rateLimit: {readBodyTimeout: -1s}
`, "spec.rateLimit.readBodyTimeout must be between 1s and 10m"),
		Entry("a zero read header timeout", validStdio+`
rateLimit: {readHeaderTimeout: 0s}
`, "spec.rateLimit.readHeaderTimeout must be between 1s and 5m"),
		Entry("an idle timeout of a day", validStdio+`
rateLimit: {idleTimeout: 24h}
`, "spec.rateLimit.idleTimeout must be between 1s and 1h"),
		Entry("an empty JWT audience", validStdio+`
auth: {jwt: [{issuer: "https://idp.example", jwksURL: "https://idp.example/jwks", audiences: [""]}]}
`, "spec.auth.jwt[0].audiences[0]", "should be at least 1 chars long"),
		Entry("endpoint.port equal to metrics.port", validStdio+`
endpoint: {port: 9090}
`, "spec: Invalid value", "spec.metrics.port must differ from spec.endpoint.port"),
		Entry("upstream.port equal to endpoint.port", `
image: ghcr.io/example/server:1
transport: http
upstream: {port: 8443}
`, "spec.upstream.port must differ from spec.endpoint.port and spec.metrics.port"),
		Entry("a privileged endpoint port", validStdio+`
endpoint: {port: 443}
`, "spec.endpoint.port", "should be greater than or equal to 1024"),
		Entry("an unknown transport", validStdio+`
transport: grpc
`, "spec.transport", `Unsupported value: "grpc"`, `supported values: "stdio", "http"`),
		Entry("an unknown endpoint transport", validStdio+`
endpoint: {transports: [streamable-http, grpc]}
`, "spec.endpoint.transports[1]", `Unsupported value: "grpc"`, `"websocket"`),
		Entry("a publicURL that is not a URL", validStdio+`
endpoint: {publicURL: "mcp.example.com/mcp"}
`, "spec.endpoint.publicURL must be an absolute http(s) URL"),
		Entry("an uppercase TLS dnsName", validStdio+`
tls: {dnsNames: [MCP.example.com]}
`, "spec.tls.dnsNames[0]", "should match"),
		Entry("a TLS Secret name no Secret can have", validStdio+`
tls: {secretName: My_Cert}
`, "spec.tls.secretName", "must name a Secret: lowercase letters, digits, '-' and '.'"),
		Entry("a client CA Secret name no Secret can have", validStdio+`
tls: {clientAuth: require, clientCASecretRef: {name: "ca/bundle", key: ca.crt}}
`, "spec.tls.clientCASecretRef.name", "must name a Secret"),
		Entry("an API keys Secret name no Secret can have", validStdio+`
auth: {apiKeys: {secretName: API-Keys}}
`, "spec.auth.apiKeys.secretName", "must name a Secret"),
		Entry("an unknown image pull policy", validStdio+`
imagePullPolicy: Sometimes
`, "spec.imagePullPolicy", `Unsupported value: "Sometimes"`, `"IfNotPresent"`),
		Entry("a priority class name no PriorityClass can have", validStdio+`
priorityClassName: High Priority
`, "spec.priorityClassName", "must name a PriorityClass"),
		Entry("a certificate duration at or below the default renewBefore", validStdio+`
tls: {duration: 24h}
`, "spec.tls.renewBefore", "must be shorter than spec.tls.duration", "lower spec.tls.renewBefore"),
		Entry("a certificate duration in days, which no Go duration parses", validStdio+`
tls: {duration: 90d}
`, "spec.tls.duration"),
		Entry("a certificate duration under cert-manager's minimum", validStdio+`
tls: {duration: 30m, renewBefore: 10m}
`, "spec.tls.duration", "at least 1h"),
		Entry("a renewBefore under cert-manager's minimum", validStdio+`
tls: {renewBefore: 1m}
`, "spec.tls.renewBefore", "at least 5m"),
	)

	DescribeTable("accepts valid edge cases, so the rules are not over-strict",
		func(spec string) {
			Expect(dryRunCreate(ns, spec)).To(Succeed(), "the API server refused:\n%s", spec)
		},
		Entry("allowed hosts in every accepted form", validStdio+`
origins: {allowedHosts: ["mcp.example.com", "MCP.Example.com:8443", "*.corp.example", "*.corp.example:443", "10.0.0.1:8443", "[fd00::1]:8443", "*"]}
`),
		Entry("ordinary pod labels and annotations", validStdio+`
podLabels: {team: platform, tier: ""}
podAnnotations: {prometheus.io/scrape: "true", example.com/owner: "team a"}
`),
		Entry("a wildcard origin on a two-label domain", validStdio+`
origins: {allowed: ["https://*.corp.example"]}
`),
		Entry("localhost origins with ports, over http", validStdio+`
origins: {allowed: ["http://localhost:3000", "http://127.0.0.1:8080", "https://app.example.com:8443"]}
`),
		Entry("an http server with only its upstream port", `
image: ghcr.io/example/server:1
transport: http
upstream: {port: 8080}
`),
		Entry("per-session stdio", validStdio+`
sessionMode: per-session
`),
		Entry("the message size bounds themselves", validStdio+`
rateLimit: {maxMessageSize: 64Mi}
`),
		Entry("the smallest message size", validStdio+`
rateLimit: {maxMessageSize: 1Ki}
`),
		Entry("a public key with its algorithm", validStdio+`
auth:
  jwt: [{issuer: partner, publicKeySecretRef: {name: partner-key, key: pub.pem}, algorithms: [EdDSA]}]
`),
		Entry("OIDC discovery only, generated issuer off", validStdio+`
auth:
  generatedIssuer: {disabled: true}
  jwt: [{issuer: https://accounts.example.org, discovery: true}]
`),
		Entry("API keys only", validStdio+`
auth:
  generatedIssuer: {disabled: true}
  apiKeys: {secretName: keys}
`),
		Entry("every insecure option at once (explicit)", validStdio+`
tls: {insecureDisabled: true}
auth: {insecureAnonymous: true, generatedIssuer: {disabled: true}, webSocket: {insecureQueryToken: true}}
networkPolicy: {insecureDisabled: true}
`),
		Entry("mTLS with its CA", validStdio+`
tls: {clientAuth: require, clientCASecretRef: {name: ca, key: ca.crt}}
`),
		Entry("boundary durations and replicas", validStdio+`
replicas: 100
auth: {webSocket: {tickets: {ttl: 5m}, firstMessage: {timeout: 1s}}}
`),
		Entry("root and nested endpoint paths", validStdio+`
endpoint: {path: /v1/mcp-server.v2, port: 1024}
`),
		Entry("/auth as an endpoint path (only /auth/ is reserved)", validStdio+`
endpoint: {path: /authz}
`),
		Entry("a short certificate with its renewBefore", validStdio+`
tls: {duration: 1h, renewBefore: 5m}
`),
	)

	It("accepts every golden-test input of internal/resources as written", func() {
		files, err := filepath.Glob(filepath.Join("..", "internal", "resources", "testdata", "*.input.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(files).NotTo(BeEmpty())
		for _, f := range files {
			data, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			u := &unstructured.Unstructured{}
			Expect(yaml.Unmarshal(data, &u.Object)).To(Succeed(), f)
			u.SetNamespace(ns)
			Expect(k8sClient.Create(ctx, u, client.DryRunAll)).To(Succeed(), "%s is not a valid MCPServer", strings.TrimPrefix(f, "../"))
		}
	})
})
