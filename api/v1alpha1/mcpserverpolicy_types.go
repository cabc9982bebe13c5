package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PolicyRule names one rule of an MCPServerPolicy. Violations, waiver annotations and
// spec.waivers.rules use these names.
// +kubebuilder:validation:Enum=requireAuth;forbidInsecureQueryToken;requireTLS;allowedOrigins;allowedIssuers;allowedImageRegistries;requireImageDigest;maxRequestsPerSecond;maxBurst;maxConnections;maxConnectionsPerClient;maxMessageSize;maxReplicas;requireNetworkPolicy;forbiddenIngressPeers;requireAudit
type PolicyRule string

// The rules of an MCPServerPolicy.
const (
	RuleRequireAuth              PolicyRule = "requireAuth"
	RuleForbidInsecureQueryToken PolicyRule = "forbidInsecureQueryToken"
	RuleRequireTLS               PolicyRule = "requireTLS"
	RuleAllowedOrigins           PolicyRule = "allowedOrigins"
	RuleAllowedIssuers           PolicyRule = "allowedIssuers"
	RuleAllowedImageRegistries   PolicyRule = "allowedImageRegistries"
	RuleRequireImageDigest       PolicyRule = "requireImageDigest"
	RuleMaxRequestsPerSecond     PolicyRule = "maxRequestsPerSecond"
	RuleMaxBurst                 PolicyRule = "maxBurst"
	RuleMaxConnections           PolicyRule = "maxConnections"
	RuleMaxConnectionsPerClient  PolicyRule = "maxConnectionsPerClient"
	RuleMaxMessageSize           PolicyRule = "maxMessageSize"
	RuleMaxReplicas              PolicyRule = "maxReplicas"
	RuleRequireNetworkPolicy     PolicyRule = "requireNetworkPolicy"
	RuleForbiddenIngressPeers    PolicyRule = "forbiddenIngressPeers"
	RuleRequireAudit             PolicyRule = "requireAudit"
)

// WaiverAnnotationPrefix starts the annotation that waives one rule on one MCPServer:
// "waivers.mcp.mcpfleet.dev/<rule>: <why>". It takes effect only for policies whose
// spec.waivers.rules list that rule.
const WaiverAnnotationPrefix = "waivers.mcp.mcpfleet.dev/"

// EnforcementAction says what happens to a server that violates a policy.
// +kubebuilder:validation:Enum=Deny;Audit
type EnforcementAction string

const (
	// EnforcementDeny rejects violating servers at admission and reports existing ones.
	EnforcementDeny EnforcementAction = "Deny"
	// EnforcementAudit admits violating servers with a warning and reports them in status:
	// the dry run of a policy before it is switched to Deny.
	EnforcementAudit EnforcementAction = "Audit"
)

// IngressPeerClass is a class of NetworkPolicy ingress peers a policy can forbid.
// +kubebuilder:validation:Enum=AllNamespaces;AnyIP
type IngressPeerClass string

const (
	// PeerAllNamespaces is a peer whose namespaceSelector is empty: every namespace.
	PeerAllNamespaces IngressPeerClass = "AllNamespaces"
	// PeerAnyIP is an ipBlock with a /0 prefix (0.0.0.0/0 or ::/0): every address.
	PeerAnyIP IngressPeerClass = "AnyIP"
)

// MCPServerPolicySpec selects servers and lists the rules they must follow.
type MCPServerPolicySpec struct {
	// NamespaceSelector selects the namespaces whose servers the policy applies to, by
	// namespace labels. Unset or empty: every namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// ServerSelector selects servers by their labels. Unset or empty: every server.
	// +optional
	ServerSelector *metav1.LabelSelector `json:"serverSelector,omitempty"`

	// EnforcementAction: Deny rejects violating servers at admission; Audit admits them
	// with a warning. Both report violations in the servers' PolicyCompliant condition
	// and in this policy's status.
	// +kubebuilder:default=Deny
	// +optional
	EnforcementAction EnforcementAction `json:"enforcementAction,omitempty"`

	// Rules the selected servers must follow. An unset rule does not constrain.
	// +kubebuilder:default={}
	// +optional
	Rules PolicyRules `json:"rules"`

	// Waivers says which rules a server may waive with the annotation
	// waivers.mcp.mcpfleet.dev/<rule>: <why>. None by default.
	// +optional
	Waivers PolicyWaivers `json:"waivers,omitempty"`
}

// PolicyRules are the rules of a policy. Several matching policies all apply: a server
// must satisfy each of them, so the strictest value of every rule wins.
type PolicyRules struct {
	// RequireAuth forbids spec.auth.insecureAnonymous.
	// +optional
	RequireAuth bool `json:"requireAuth,omitempty"`

	// ForbidInsecureQueryToken forbids spec.auth.webSocket.insecureQueryToken.
	// +optional
	ForbidInsecureQueryToken bool `json:"forbidInsecureQueryToken,omitempty"`

	// RequireTLS forbids spec.tls.insecureDisabled.
	// +optional
	RequireTLS bool `json:"requireTLS,omitempty"`

	// AllowedOrigins are the browser origins servers may allow: exact origins
	// ("https://app.corp.example") or "*." patterns ("https://*.corp.example", which
	// covers every subdomain and narrower patterns). Unset: any origin.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	AllowedOrigins []Origin `json:"allowedOrigins,omitempty"`

	// AllowedIssuers are the only JWT issuers (spec.auth.jwt[].issuer) servers may trust.
	// Unset: any issuer.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	AllowedIssuers []string `json:"allowedIssuers,omitempty"`

	// AllowedImageRegistries are the registries, or registry/repository prefixes, server
	// images may come from ("ghcr.io/corp", "registry.corp.example"). Docker Hub is
	// "index.docker.io". Unset: any registry.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9._/-]+)?$`
	AllowedImageRegistries []string `json:"allowedImageRegistries,omitempty"`

	// RequireImageDigest requires spec.image to be pinned by digest (image@sha256:…).
	// +optional
	RequireImageDigest bool `json:"requireImageDigest,omitempty"`

	// MaxRequestsPerSecond caps spec.rateLimit.requestsPerSecond and every perTool limit.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxRequestsPerSecond *int32 `json:"maxRequestsPerSecond,omitempty"`

	// MaxBurst caps spec.rateLimit.burst (default twice requestsPerSecond) and every
	// perTool burst.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxBurst *int32 `json:"maxBurst,omitempty"`

	// MaxConnections caps spec.rateLimit.maxConnections.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxConnections *int32 `json:"maxConnections,omitempty"`

	// MaxConnectionsPerClient caps spec.rateLimit.maxConnectionsPerClient.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxConnectionsPerClient *int32 `json:"maxConnectionsPerClient,omitempty"`

	// MaxMessageSize caps spec.rateLimit.maxMessageSize.
	// +optional
	MaxMessageSize *resource.Quantity `json:"maxMessageSize,omitempty"`

	// MaxReplicas caps spec.replicas.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxReplicas *int32 `json:"maxReplicas,omitempty"`

	// RequireNetworkPolicy forbids spec.networkPolicy.insecureDisabled.
	// +optional
	RequireNetworkPolicy bool `json:"requireNetworkPolicy,omitempty"`

	// ForbiddenIngressPeers are classes of spec.networkPolicy.ingress peers servers may
	// not admit: AllNamespaces (an empty namespaceSelector) or AnyIP (a /0 ipBlock).
	// +optional
	// +listType=set
	ForbiddenIngressPeers []IngressPeerClass `json:"forbiddenIngressPeers,omitempty"`

	// RequireAudit forbids spec.audit.disabled.
	// +optional
	RequireAudit bool `json:"requireAudit,omitempty"`
}

// PolicyWaivers lists the rules a server may waive.
type PolicyWaivers struct {
	// Rules that servers may waive with the annotation waivers.mcp.mcpfleet.dev/<rule>
	// whose value says why. A waiver of a rule not listed here is ignored.
	// +optional
	// +listType=set
	Rules []PolicyRule `json:"rules,omitempty"`
}

// MCPServerPolicyStatus counts the servers the policy selects.
type MCPServerPolicyStatus struct {
	// ObservedGeneration is the generation the counts were computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// MatchedServers is the number of servers the policy selects.
	// +optional
	MatchedServers int32 `json:"matchedServers"`

	// ViolatingServers is the number of selected servers that break at least one rule
	// (waived rules excluded).
	// +optional
	ViolatingServers int32 `json:"violatingServers"`

	// WaivedServers is the number of selected servers that carry a waiver this policy honours.
	// +optional
	WaivedServers int32 `json:"waivedServers"`

	// Violating names up to 20 violating servers as namespace/name, sorted.
	// +optional
	// +listType=atomic
	Violating []string `json:"violating,omitempty"`
}

// MCPServerPolicy is a fleet guardrail: rules every selected MCPServer must follow,
// enforced by the admission webhook and reported on existing servers.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=mcpp,categories=mcp
// +kubebuilder:printcolumn:name="Enforcement",type=string,JSONPath=`.spec.enforcementAction`
// +kubebuilder:printcolumn:name="Matched",type=integer,JSONPath=`.status.matchedServers`
// +kubebuilder:printcolumn:name="Violating",type=integer,JSONPath=`.status.violatingServers`
// +kubebuilder:printcolumn:name="Waived",type=integer,JSONPath=`.status.waivedServers`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MCPServerPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec MCPServerPolicySpec `json:"spec"`
	// +optional
	Status MCPServerPolicyStatus `json:"status,omitempty"`
}

// MCPServerPolicyList is a list of MCPServerPolicies.
// +kubebuilder:object:root=true
type MCPServerPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MCPServerPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MCPServerPolicy{}, &MCPServerPolicyList{})
}
