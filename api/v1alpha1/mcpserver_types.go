package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Transport of the user's MCP server (the upstream behind the runtime).
// +kubebuilder:validation:Enum=stdio;http
type Transport string

const (
	// TransportStdio runs the server as a child of the runtime, speaking newline-delimited JSON-RPC.
	TransportStdio Transport = "stdio"
	// TransportHTTP runs the server in its own container, reached by the runtime on localhost.
	TransportHTTP Transport = "http"
)

// EndpointTransport is a client-facing MCP transport served by the runtime.
// +kubebuilder:validation:Enum=streamable-http;sse;websocket
type EndpointTransport string

const (
	EndpointStreamableHTTP EndpointTransport = "streamable-http"
	EndpointSSE            EndpointTransport = "sse"
	EndpointWebSocket      EndpointTransport = "websocket"
)

// Origin is an allowed browser Origin: "scheme://host[:port]", lowercase, with no path.
// A leading "*." on a domain of two or more labels is an opt-in wildcard for its subdomains.
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:XValidation:rule="self != '*'",message="a bare '*' origin is refused: list the exact origins (e.g. https://app.example.com) or a '*.domain' pattern"
// +kubebuilder:validation:XValidation:rule="self.matches('^https?://(\\\\*\\\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:[0-9]{1,5})?$')",message="an origin must be scheme://host[:port] in lowercase with scheme http or https and no path, query or trailing slash (e.g. https://app.example.com)"
// +kubebuilder:validation:XValidation:rule="!self.contains('*') || self.matches('^https?://\\\\*\\\\.[^.:]+\\\\.[^:]+(:[0-9]+)?$')",message="a wildcard origin must be '*.' followed by a domain of at least two labels (e.g. https://*.corp.example)"
type Origin string

// MCPServerSpec is the desired state of a secured MCP server.
// +kubebuilder:validation:XValidation:rule="self.transport != 'stdio' || (has(self.command) && size(self.command) > 0)",message="spec.command is required when spec.transport is stdio: the runtime starts it as its child (e.g. command: [\"/server\"])"
// +kubebuilder:validation:XValidation:rule="self.transport != 'http' || (has(self.upstream) && has(self.upstream.port))",message="spec.upstream.port is required when spec.transport is http: the port your server listens on inside the pod"
// +kubebuilder:validation:XValidation:rule="self.transport != 'stdio' || !has(self.upstream)",message="spec.upstream is only for spec.transport http; remove it for stdio servers"
// +kubebuilder:validation:XValidation:rule="self.sessionMode != 'per-session' || self.transport == 'stdio'",message="spec.sessionMode per-session needs spec.transport stdio"
// +kubebuilder:validation:XValidation:rule="!has(self.upstream) || !has(self.upstream.port) || (self.upstream.port != self.endpoint.port && self.upstream.port != self.metrics.port)",message="spec.upstream.port must differ from spec.endpoint.port and spec.metrics.port"
// +kubebuilder:validation:XValidation:rule="self.endpoint.port != self.metrics.port",message="spec.metrics.port must differ from spec.endpoint.port"
type MCPServerSpec struct {
	// Image of the user's MCP server.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image"`

	// ImagePullPolicy of the server image.
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// ImagePullSecrets for the server image.
	// +optional
	// +listType=atomic
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// Command starts the server. Required for stdio servers, which the runtime runs as its child.
	// For http servers it overrides the image entrypoint.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Command []string `json:"command,omitempty"`

	// Args for Command.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=256
	Args []string `json:"args,omitempty"`

	// Env of the server container. Put secrets in Secrets and refer to them with valueFrom;
	// the operator never copies values into ConfigMaps.
	// +optional
	// +listType=map
	// +listMapKey=name
	Env []corev1.EnvVar `json:"env,omitempty"`

	// EnvFrom of the server container (ConfigMap or Secret references).
	// +optional
	// +listType=atomic
	EnvFrom []corev1.EnvFromSource `json:"envFrom,omitempty"`

	// Transport the server speaks: stdio (the runtime starts it as a child and relays
	// newline-delimited JSON-RPC) or http (Streamable HTTP on localhost in its own container).
	// +kubebuilder:default=stdio
	// +optional
	Transport Transport `json:"transport,omitempty"`

	// Upstream describes an http server's listener inside the pod.
	// +optional
	Upstream *UpstreamSpec `json:"upstream,omitempty"`

	// SessionMode: shared multiplexes every client session onto one server process per
	// replica; per-session gives each session its own process from a pre-warmed pool
	// (for stateful stdio servers).
	// +kubebuilder:validation:Enum=shared;per-session
	// +kubebuilder:default=shared
	// +optional
	SessionMode string `json:"sessionMode,omitempty"`

	// Replicas of the server. A PodDisruptionBudget is created when more than one.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Resources of the server container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// RuntimeResources of the runtime container (http) or init container (stdio).
	// Default: requests 50m CPU and 32Mi, memory limit 512Mi. With transport http the
	// runtime sidecar's GOMEMLIMIT is set to 90% of its memory limit.
	// +optional
	RuntimeResources *corev1.ResourceRequirements `json:"runtimeResources,omitempty"`

	// KeepSchedulerAwake runs the runtime with GODEBUG=schedtrace set, so that Go's monitor
	// thread does not restart its 20 µs polling each time the runtime wakes from idle: ~16–20%
	// less runtime CPU per request when requests come one at a time, for a wake-up every 10 ms
	// while idle (~4 ms of CPU per second). Worth it from a few tens of requests per second
	// per replica. Your server process does not get the setting.
	// +optional
	KeepSchedulerAwake bool `json:"keepSchedulerAwake,omitempty"`

	// StaticProcs keeps the runtime's GOMAXPROCS at Go's default (the CPU limit, else the
	// node's CPUs). By default the runtime runs on one P and doubles GOMAXPROCS, up to that
	// default, while it keeps most of its Ps busy: a relay given more Ps than its load needs
	// spends about a quarter of its CPU per request on idle threads waking to look for work.
	// Your server process is not affected either way.
	// +optional
	StaticProcs bool `json:"staticProcs,omitempty"`

	// NodeSelector of the pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations of the pods.
	// +optional
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Affinity of the pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// TopologySpreadConstraints of the pods.
	// +optional
	// +listType=atomic
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`

	// PriorityClassName of the pods.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="must name a PriorityClass: lowercase letters, digits, '-' and '.' (e.g. high-priority)"
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// PodLabels are added to the pods (the operator's own app.kubernetes.io labels win).
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 63)",message="spec.podLabels values must be valid label values: at most 63 characters"
	PodLabels map[string]string `json:"podLabels,omitempty"`

	// PodAnnotations are added to the pods. AppArmor and seccomp annotations are refused:
	// the pods' security context sets those profiles (Pod Security "restricted").
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('container.apparmor.security.beta.kubernetes.io/') && !k.startsWith('seccomp.security.alpha.kubernetes.io/') && !k.startsWith('container.seccomp.security.alpha.kubernetes.io/'))",message="spec.podAnnotations must not set AppArmor or seccomp profiles (container.apparmor.security.beta.kubernetes.io/*, *seccomp.security.alpha.kubernetes.io/*): the pods' security context sets them, as Pod Security 'restricted' requires"
	PodAnnotations map[string]string `json:"podAnnotations,omitempty"`

	// Endpoint is the client-facing MCP endpoint served by the runtime.
	// +kubebuilder:default={}
	// +optional
	Endpoint EndpointSpec `json:"endpoint"`

	// TLS of the endpoint. On by default, with a certificate from cert-manager.
	// +kubebuilder:default={}
	// +optional
	TLS TLSSpec `json:"tls"`

	// Origins is the browser Origin allowlist, checked on every request including
	// WebSocket upgrades. Empty means no browser origin is allowed.
	// +kubebuilder:default={}
	// +optional
	Origins OriginsSpec `json:"origins"`

	// Auth configures how callers authenticate. Required by default.
	// +kubebuilder:default={}
	// +optional
	Auth AuthSpec `json:"auth"`

	// Tools is the tool policy.
	// +kubebuilder:default={}
	// +optional
	Tools ToolsSpec `json:"tools"`

	// RateLimit bounds rates, connections, message sizes and time.
	// +kubebuilder:default={}
	// +optional
	RateLimit RateLimitSpec `json:"rateLimit"`

	// NetworkPolicy is on by default and default-deny.
	// +kubebuilder:default={}
	// +optional
	NetworkPolicy NetworkPolicySpec `json:"networkPolicy"`

	// Audit log of tool calls and auth decisions (JSON lines on the runtime's stdout).
	// +kubebuilder:default={}
	// +optional
	Audit AuditSpec `json:"audit"`

	// Metrics served by the runtime in Prometheus format, with its health endpoints.
	// +kubebuilder:default={}
	// +optional
	Metrics MetricsSpec `json:"metrics"`
}

// UpstreamSpec is an http server's listener inside the pod.
type UpstreamSpec struct {
	// Port the server listens on. Prefer binding 127.0.0.1: the NetworkPolicy is the
	// second wall, not the only one.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// Path of the server's Streamable HTTP endpoint.
	// +kubebuilder:default="/mcp"
	// +kubebuilder:validation:Pattern=`^/[-a-zA-Z0-9._~/]*$`
	// +optional
	Path string `json:"path,omitempty"`
}

// EndpointSpec is the client-facing endpoint.
type EndpointSpec struct {
	// Transports served to clients.
	// +kubebuilder:default={"streamable-http"}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=3
	// +listType=set
	// +optional
	Transports []EndpointTransport `json:"transports,omitempty"`

	// Path of the MCP endpoint.
	// +kubebuilder:default="/mcp"
	// +kubebuilder:validation:Pattern=`^/[-a-zA-Z0-9._~/]*$`
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/.well-known') && !self.startsWith('/auth/')",message="spec.endpoint.path must not be under /.well-known or /auth/, which the runtime serves itself"
	// +kubebuilder:validation:XValidation:rule="self == '/' || (!self.endsWith('/') && !self.contains('//') && !self.matches('/\\\\.\\\\.?(/|$)'))",message="spec.endpoint.path must be a clean path without a trailing slash, '//', '.' or '..' segments (e.g. /mcp)"
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Path string `json:"path,omitempty"`

	// Port of the endpoint on the pod and the Service.
	// +kubebuilder:default=8443
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// ServiceType of the Service. A NodePort or LoadBalancer Service carries the MCP
	// endpoint only; the plain-HTTP metrics port stays off it (scrape the pods).
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +kubebuilder:default=ClusterIP
	// +optional
	ServiceType corev1.ServiceType `json:"serviceType,omitempty"`

	// PublicURL is the canonical URL clients use when it differs from the Service URL
	// (e.g. behind a TLS-passthrough load balancer). It is the default JWT audience.
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^/?#]+(/[^?#]*)?$')",message="spec.endpoint.publicURL must be an absolute http(s) URL"
	// +optional
	PublicURL string `json:"publicURL,omitempty"`
}

// IssuerReference names a cert-manager Issuer or ClusterIssuer.
type IssuerReference struct {
	// Name of the issuer.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Kind of the issuer.
	// +kubebuilder:validation:Enum=Issuer;ClusterIssuer
	// +kubebuilder:default=ClusterIssuer
	// +optional
	Kind string `json:"kind,omitempty"`
	// Group of the issuer.
	// +kubebuilder:default=cert-manager.io
	// +optional
	Group string `json:"group,omitempty"`
}

// SecretKeyReference selects a key of a Secret in the server's namespace.
type SecretKeyReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="must name a Secret: lowercase letters, digits, '-' and '.' (e.g. my-secret)"
	Name string `json:"name"`
	// Key in the Secret.
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
}

// TLSSpec configures TLS of the endpoint.
// +kubebuilder:validation:XValidation:rule="!(has(self.issuerRef) && has(self.secretName))",message="set spec.tls.issuerRef (cert-manager issues the certificate) or spec.tls.secretName (you provide it), not both"
// +kubebuilder:validation:XValidation:rule="!(has(self.insecureDisabled) && self.insecureDisabled) || (!has(self.issuerRef) && !has(self.secretName) && (!has(self.clientAuth) || self.clientAuth == 'none'))",message="spec.tls.insecureDisabled turns TLS off; remove issuerRef, secretName and clientAuth or keep TLS on"
// +kubebuilder:validation:XValidation:rule="!has(self.clientAuth) || self.clientAuth == 'none' || has(self.clientCASecretRef)",message="spec.tls.clientCASecretRef is required when spec.tls.clientAuth is request or require"
// +kubebuilder:validation:XValidation:rule="!has(self.duration) || !has(self.renewBefore) || duration(self.renewBefore) < duration(self.duration)",message="spec.tls.renewBefore (default 360h) must be shorter than spec.tls.duration, or cert-manager refuses the Certificate: lower spec.tls.renewBefore or raise spec.tls.duration",fieldPath=".renewBefore"
type TLSSpec struct {
	// IssuerRef is the cert-manager issuer of the serving certificate. Default: the
	// operator-wide issuer (--default-issuer).
	// +optional
	IssuerRef *IssuerReference `json:"issuerRef,omitempty"`

	// SecretName of a kubernetes.io/tls Secret you provide instead of cert-manager.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="must name a Secret: lowercase letters, digits, '-' and '.' (e.g. my-cert)"
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// DNSNames added to the certificate besides the Service names and the host of
	// spec.endpoint.publicURL.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	DNSNames []string `json:"dnsNames,omitempty"`

	// Duration of the certificate; at least 1h (cert-manager's minimum).
	// +kubebuilder:default="2160h0m0s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="spec.tls.duration must be at least 1h, cert-manager's minimum"
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`

	// RenewBefore expiry; at least 5m (cert-manager's minimum) and shorter than Duration.
	// +kubebuilder:default="360h0m0s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('5m')",message="spec.tls.renewBefore must be at least 5m, cert-manager's minimum"
	// +optional
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`

	// ClientAuth asks clients for certificates (mTLS): none, request (verified when
	// presented) or require.
	// +kubebuilder:validation:Enum=none;request;require
	// +kubebuilder:default=none
	// +optional
	ClientAuth string `json:"clientAuth,omitempty"`

	// ClientCASecretRef is the PEM CA bundle that verifies client certificates.
	// +optional
	ClientCASecretRef *SecretKeyReference `json:"clientCASecretRef,omitempty"`

	// InsecureDisabled serves plain HTTP. INSECURE: tokens cross the network in clear text.
	// Reported in status.insecureOptions.
	// +optional
	// +kubebuilder:default=false
	InsecureDisabled bool `json:"insecureDisabled,omitempty"`
}

// OriginsSpec is the browser Origin allowlist.
type OriginsSpec struct {
	// Allowed origins ("https://app.example.com"), or opt-in "https://*.example.com" patterns.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	Allowed []Origin `json:"allowed,omitempty"`

	// AllowMissing lets requests without an Origin header through: non-browser clients
	// send none, and browsers always send one on cross-site requests.
	// +kubebuilder:default=true
	// +optional
	AllowMissing *bool `json:"allowMissing,omitempty"`

	// AllowedHosts is the Host header allowlist against DNS rebinding: host, host:port,
	// *.domain or *.domain:port. Default: the Service DNS names, the TLS dnsNames and the
	// publicURL host. A lone "*" turns the check off and is reported in
	// status.insecureOptions.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=260
	// +kubebuilder:validation:items:XValidation:rule="self == '*' || self.lowerAscii().matches('^((\\\\*\\\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*|\\\\[[0-9a-f:.]+\\\\])(:[0-9]{1,5})?$')",message="each spec.origins.allowedHosts entry must be host, host:port, *.domain or *.domain:port, without scheme or path (e.g. mcp.example.com or mcp.example.com:8443)"
	AllowedHosts []string `json:"allowedHosts,omitempty"`
}

// AuthSpec configures authentication.
// +kubebuilder:validation:XValidation:rule="!(has(self.insecureAnonymous) && self.insecureAnonymous) || ((!has(self.jwt) || size(self.jwt) == 0) && !has(self.apiKeys))",message="spec.auth.insecureAnonymous turns authentication off and cannot be combined with spec.auth.jwt or spec.auth.apiKeys"
// +kubebuilder:validation:XValidation:rule="(has(self.insecureAnonymous) && self.insecureAnonymous) || !has(self.generatedIssuer) || !has(self.generatedIssuer.disabled) || !self.generatedIssuer.disabled || (has(self.jwt) && size(self.jwt) > 0) || has(self.apiKeys)",message="no authentication method left: keep spec.auth.generatedIssuer, add spec.auth.jwt or spec.auth.apiKeys, or set spec.auth.insecureAnonymous: true (insecure)"
type AuthSpec struct {
	// InsecureAnonymous serves every caller without authentication. INSECURE; reported in
	// status.insecureOptions.
	// +optional
	// +kubebuilder:default=false
	InsecureAnonymous bool `json:"insecureAnonymous,omitempty"`

	// GeneratedIssuer is a per-server signing key pair the operator generates into the
	// auth Secret; tokens signed with it (`mcp-runtime token`) are accepted.
	// +kubebuilder:default={}
	// +optional
	GeneratedIssuer GeneratedIssuerSpec `json:"generatedIssuer"`

	// JWT providers (OIDC / OAuth authorization servers) whose bearer tokens are accepted.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	JWT []JWTProvider `json:"jwt,omitempty"`

	// APIKeys accepts static API keys, stored hashed.
	// +optional
	APIKeys *APIKeysSpec `json:"apiKeys,omitempty"`

	// WebSocket configures how browser WebSocket clients authenticate.
	// +kubebuilder:default={}
	// +optional
	WebSocket WebSocketAuthSpec `json:"webSocket"`

	// ResourceMetadata is published at /.well-known/oauth-protected-resource (RFC 9728).
	// +optional
	ResourceMetadata ResourceMetadataSpec `json:"resourceMetadata,omitempty"`
}

// GeneratedIssuerSpec configures the operator-generated token issuer.
type GeneratedIssuerSpec struct {
	// Disabled stops accepting tokens of the generated issuer.
	// +optional
	// +kubebuilder:default=false
	Disabled bool `json:"disabled,omitempty"`
}

// JWTProvider accepts bearer JWTs of one issuer.
// +kubebuilder:validation:XValidation:rule="(has(self.jwksURL) ? 1 : 0) + ((has(self.discovery) && self.discovery) ? 1 : 0) + (has(self.publicKeySecretRef) ? 1 : 0) == 1",message="set exactly one key source per spec.auth.jwt entry: jwksURL, discovery: true, or publicKeySecretRef"
// +kubebuilder:validation:XValidation:rule="!has(self.publicKeySecretRef) || (has(self.algorithms) && size(self.algorithms) == 1)",message="spec.auth.jwt[].algorithms must name the one algorithm of the key in publicKeySecretRef (e.g. algorithms: [ES256]): a key file is pinned to a single algorithm"
// +kubebuilder:validation:XValidation:rule="!(has(self.discovery) && self.discovery) || self.issuer.startsWith('https://')",message="spec.auth.jwt[].issuer must be an https URL when discovery is true: the discovery document names the keys that sign tokens",fieldPath=".issuer"
type JWTProvider struct {
	// Issuer is the expected "iss" claim.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Issuer string `json:"issuer"`

	// Audiences accepted in "aud". Default: the server's URL.
	// +optional
	// +listType=set
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=512
	Audiences []string `json:"audiences,omitempty"`

	// JWKSURL serves the issuer's keys (https).
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://')",message="spec.auth.jwt[].jwksURL must be an https URL"
	// +optional
	JWKSURL string `json:"jwksURL,omitempty"`

	// Discovery finds the JWKS through the issuer's OpenID Connect discovery document; the
	// issuer must then be an https URL.
	// +optional
	// +kubebuilder:default=false
	Discovery bool `json:"discovery,omitempty"`

	// PublicKeySecretRef is a PEM public key in a Secret.
	// +optional
	PublicKeySecretRef *SecretKeyReference `json:"publicKeySecretRef,omitempty"`

	// Algorithms accepted (asymmetric only: HS* and none are refused). Default for
	// jwksURL and discovery: RS256 and ES256. With publicKeySecretRef, exactly one: the
	// key is pinned to it.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10
	Algorithms []JWTAlgorithm `json:"algorithms,omitempty"`
}

// JWTAlgorithm is an asymmetric JWS algorithm.
// +kubebuilder:validation:Enum=RS256;RS384;RS512;PS256;PS384;PS512;ES256;ES384;ES512;EdDSA
type JWTAlgorithm string

// APIKeysSpec accepts static API keys.
type APIKeysSpec struct {
	// SecretName holds one entry per key: the entry name is the key id (the caller's
	// identity), the value is "sha256:<hex of the key>". Only hashes are stored.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="must name a Secret: lowercase letters, digits, '-' and '.' (e.g. api-keys)"
	SecretName string `json:"secretName"`
}

// WebSocketAuthSpec configures WebSocket authentication for browsers, which cannot set
// an Authorization header on an upgrade.
type WebSocketAuthSpec struct {
	// Tickets: POST /auth/ticket with a bearer token returns a single-use ticket bound to
	// the caller and its Origin, redeemed once with ?ticket= at the upgrade.
	// +kubebuilder:default={}
	// +optional
	Tickets TicketsSpec `json:"tickets"`

	// FirstMessage lets a client authenticate with a first frame {"type":"auth","token":…}.
	// +kubebuilder:default={}
	// +optional
	FirstMessage FirstMessageSpec `json:"firstMessage"`

	// InsecureQueryToken accepts ?access_token= at the upgrade. INSECURE: URLs end up in
	// logs and browser history. Reported in status.insecureOptions.
	// +optional
	InsecureQueryToken bool `json:"insecureQueryToken,omitempty"`
}

// TicketsSpec configures single-use WebSocket tickets.
type TicketsSpec struct {
	// Disabled turns tickets off.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
	// TTL of a ticket.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('5m')",message="spec.auth.webSocket.tickets.ttl must be between 1s and 5m"
	// +optional
	TTL *metav1.Duration `json:"ttl,omitempty"`
}

// FirstMessageSpec configures first-message authentication.
type FirstMessageSpec struct {
	// Disabled turns first-message authentication off.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
	// Timeout for the auth frame; the connection is closed (1008) after it.
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('60s')",message="spec.auth.webSocket.firstMessage.timeout must be between 1s and 60s"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// ResourceMetadataSpec holds OAuth Protected Resource Metadata (RFC 9728) fields.
type ResourceMetadataSpec struct {
	// AuthorizationServers that issue tokens for this server.
	// +optional
	// +listType=atomic
	AuthorizationServers []string `json:"authorizationServers,omitempty"`
	// ScopesSupported by this server.
	// +optional
	// +listType=atomic
	ScopesSupported []string `json:"scopesSupported,omitempty"`
	// Documentation URL for humans.
	// +optional
	Documentation string `json:"documentation,omitempty"`
}

// ToolsSpec is the tool policy.
type ToolsSpec struct {
	// Allow globs of tool names; empty allows every tool not denied.
	// +optional
	// +listType=set
	Allow []string `json:"allow,omitempty"`
	// Deny globs of tool names; deny wins over allow. Denied tools are hidden from tools/list.
	// +optional
	// +listType=set
	Deny []string `json:"deny,omitempty"`
	// ValidateArguments checks tools/call arguments against each tool's inputSchema
	// before they reach the server. false is reported in status.insecureOptions.
	// +kubebuilder:default=true
	// +optional
	ValidateArguments *bool `json:"validateArguments,omitempty"`
	// Scopes required per tool (token scopes).
	// +optional
	// +listType=atomic
	Scopes []ToolScopes `json:"scopes,omitempty"`
}

// ToolScopes requires scopes for the tools matching a glob.
type ToolScopes struct {
	// Tool name glob.
	// +kubebuilder:validation:MinLength=1
	Tool string `json:"tool"`
	// Scopes all required.
	// +kubebuilder:validation:MinItems=1
	// +listType=set
	Scopes []string `json:"scopes"`
}

// RateLimitSpec bounds rates, connections, sizes and time.
// +kubebuilder:validation:XValidation:rule="!has(self.maxConnections) || !has(self.maxConnectionsPerClient) || self.maxConnectionsPerClient <= self.maxConnections",message="spec.rateLimit.maxConnectionsPerClient must not exceed spec.rateLimit.maxConnections"
type RateLimitSpec struct {
	// RequestsPerSecond per client (token subject, else client IP).
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	RequestsPerSecond int32 `json:"requestsPerSecond,omitempty"`
	// Burst per client. Default: twice RequestsPerSecond.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Burst *int32 `json:"burst,omitempty"`
	// PerTool limits per client and tool glob.
	// +optional
	// +listType=atomic
	PerTool []ToolRateLimit `json:"perTool,omitempty"`
	// MaxConnections overall per replica.
	// +kubebuilder:default=10000
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxConnections int32 `json:"maxConnections,omitempty"`
	// MaxConnectionsPerClient per replica.
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxConnectionsPerClient int32 `json:"maxConnectionsPerClient,omitempty"`
	// MaxMessageSize of an HTTP body or WebSocket frame.
	// +kubebuilder:default="1Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(self).isGreaterThan(quantity('1023')) && !quantity(self).isGreaterThan(quantity('64Mi'))",message="spec.rateLimit.maxMessageSize must be between 1Ki and 64Mi"
	// +optional
	MaxMessageSize *resource.Quantity `json:"maxMessageSize,omitempty"`
	// IdleTimeout of a keep-alive connection.
	// +kubebuilder:default="2m0s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="spec.rateLimit.idleTimeout must be between 1s and 1h"
	// +optional
	IdleTimeout *metav1.Duration `json:"idleTimeout,omitempty"`
	// ReadHeaderTimeout for request headers (slow-header defence).
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('5m')",message="spec.rateLimit.readHeaderTimeout must be between 1s and 5m"
	// +optional
	ReadHeaderTimeout *metav1.Duration `json:"readHeaderTimeout,omitempty"`
	// ReadBodyTimeout for a request body once its headers are in (slow-body defence).
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('10m')",message="spec.rateLimit.readBodyTimeout must be between 1s and 10m"
	// +optional
	ReadBodyTimeout *metav1.Duration `json:"readBodyTimeout,omitempty"`
}

// ToolRateLimit limits the tools matching a glob.
type ToolRateLimit struct {
	// Tool name glob.
	// +kubebuilder:validation:MinLength=1
	Tool string `json:"tool"`
	// RequestsPerSecond per client.
	// +kubebuilder:validation:Minimum=1
	RequestsPerSecond int32 `json:"requestsPerSecond"`
	// Burst per client.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Burst *int32 `json:"burst,omitempty"`
}

// NetworkPolicySpec configures the generated NetworkPolicy.
// +kubebuilder:validation:XValidation:rule="!(has(self.insecureDisabled) && self.insecureDisabled) || ((!has(self.ingress) || size(self.ingress) == 0) && (!has(self.egress) || size(self.egress) == 0))",message="spec.networkPolicy.insecureDisabled removes the NetworkPolicy; remove ingress and egress rules or keep it on"
type NetworkPolicySpec struct {
	// InsecureDisabled creates no NetworkPolicy. INSECURE; reported in status.insecureOptions.
	// +optional
	// +kubebuilder:default=false
	InsecureDisabled bool `json:"insecureDisabled,omitempty"`
	// Ingress peers allowed to reach the endpoint port. Default: pods of the same namespace.
	// +optional
	// +listType=atomic
	Ingress []networkingv1.NetworkPolicyPeer `json:"ingress,omitempty"`
	// Egress rules besides DNS (which is always allowed). Default: nothing else, so a
	// server whose auth.jwt uses jwksURL or discovery needs a rule to reach its issuer.
	// +optional
	// +listType=atomic
	Egress []networkingv1.NetworkPolicyEgressRule `json:"egress,omitempty"`
}

// AuditSpec configures the audit log.
type AuditSpec struct {
	// Disabled turns the audit log off; reported in status.insecureOptions.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
	// LogArguments logs full tool arguments instead of their size and SHA-256 (any secret
	// in them too); reported in status.insecureOptions.
	// +optional
	LogArguments bool `json:"logArguments,omitempty"`
}

// MetricsSpec configures the runtime's metrics and health port.
type MetricsSpec struct {
	// Disabled turns /metrics off (health endpoints stay).
	// +optional
	Disabled bool `json:"disabled,omitempty"`
	// Port of /metrics, /healthz and /readyz (plain HTTP).
	// +kubebuilder:default=9090
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
}

// MCPServerStatus is the observed state of an MCPServer.
type MCPServerStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready summarises; Reconciling and Stalled appear only while true;
	// CertificateReady tracks the serving certificate.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// URL clients connect to.
	// +optional
	URL string `json:"url,omitempty"`

	// Replicas desired (scale subresource).
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// ReadyReplicas of the Deployment.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// Selector of the pods (scale subresource).
	// +optional
	Selector string `json:"selector,omitempty"`

	// CertificateNotAfter is the expiry of the serving certificate.
	// +optional
	CertificateNotAfter *metav1.Time `json:"certificateNotAfter,omitempty"`

	// InsecureOptions lists the insecure options this server was explicitly given.
	// +optional
	// +listType=atomic
	InsecureOptions []string `json:"insecureOptions,omitempty"`
}

// MCPServer runs a secured MCP server: the user's server behind the mcp-runtime, which
// enforces TLS, the Origin allowlist, authentication, rate limits, tool policy and audit.
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name of an MCPServer names its Service and labels its pods: at most 63 lowercase letters, digits and '-', starting with a letter (no dots)"
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=mcps,categories=mcp
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Transport",type=string,JSONPath=`.spec.transport`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Compliant",type=string,JSONPath=`.status.conditions[?(@.type=="PolicyCompliant")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MCPServer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec MCPServerSpec `json:"spec"`
	// +optional
	Status MCPServerStatus `json:"status,omitempty"`
}

// MCPServerList is a list of MCPServers.
// +kubebuilder:object:root=true
type MCPServerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MCPServer `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MCPServer{}, &MCPServerList{})
}
