// Package resources holds the pure builders: an MCPServer (+ operator options) in,
// apply configurations of its children out. No client, no I/O; golden-file tested.
package resources

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
)

// FieldOwner is the one server-side apply field manager of the operator.
const FieldOwner = "mcp-fleet-operator"

// Label keys and values the operator puts on every child.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelPartOf    = "app.kubernetes.io/part-of"

	AppName   = "mcp-server"
	ManagedBy = "mcp-fleet-operator"
	PartOf    = "mcp-fleet"

	// AnnotationConfigHash rolls the pods when the runtime config or auth material changes.
	AnnotationConfigHash = "mcp.mcpfleet.dev/config-hash"
)

// Ports and paths inside the pod.
const (
	PortNameMCP     = "mcp"
	PortNameMetrics = "metrics"

	RuntimeBinDir   = "/opt/mcp-runtime"
	RuntimeBinary   = RuntimeBinDir + "/mcp-runtime"
	RuntimeImageBin = "/mcp-runtime"
	ConfigDir       = "/etc/mcp-runtime/config"
	TLSDir          = "/etc/mcp-runtime/tls"
	ClientCADir     = "/etc/mcp-runtime/client-ca"
	AuthDir         = "/etc/mcp-runtime/auth"
	APIKeysDir      = "/etc/mcp-runtime/api-keys" //nolint:gosec // a mount path, not a credential
	JWTKeysDir      = "/etc/mcp-runtime/jwt"

	// NonRootUID is the distroless "nonroot" user the pods run as.
	NonRootUID = 65532
)

// Keys of the operator-generated auth Secret. Only the public key and the ticket key
// are mounted into pods; the private key stays in the Secret for `mcp-runtime token`.
const (
	AuthKeyPrivate   = "jwt.key"
	AuthKeyPublic    = "jwt.pub"
	AuthKeyTicketKey = "ticket.key"
)

// Options are operator-wide settings that shape every server.
type Options struct {
	// RuntimeImage is the image holding the static mcp-runtime binary at /mcp-runtime.
	RuntimeImage string
	// DefaultIssuer is used when spec.tls.issuerRef is unset.
	DefaultIssuer mcpv1alpha1.IssuerReference
	// ClusterDomain of Service DNS names. Default "cluster.local".
	ClusterDomain string
	// MonitoringNamespace may scrape the metrics port. Empty: nobody outside the pod.
	MonitoringNamespace string
}

func (o Options) clusterDomain() string {
	if o.ClusterDomain == "" {
		return "cluster.local"
	}
	return o.ClusterDomain
}

// Names of the children of a server.
func DeploymentName(s *mcpv1alpha1.MCPServer) string { return s.Name }
func ServiceName(s *mcpv1alpha1.MCPServer) string    { return s.Name }
func ConfigMapName(s *mcpv1alpha1.MCPServer) string  { return s.Name + "-runtime" }
func AuthSecretName(s *mcpv1alpha1.MCPServer) string { return s.Name + "-auth" }
func CertificateName(s *mcpv1alpha1.MCPServer) string {
	return s.Name
}

// TLSSecretName is the Secret holding the serving certificate (issued or user-provided).
func TLSSecretName(s *mcpv1alpha1.MCPServer) string {
	if s.Spec.TLS.SecretName != "" {
		return s.Spec.TLS.SecretName
	}
	return IssuedTLSSecretName(s)
}

// IssuedTLSSecretName is the Secret cert-manager issues the serving certificate into.
func IssuedTLSSecretName(s *mcpv1alpha1.MCPServer) string { return s.Name + "-tls" }

// UsesCertManager reports whether cert-manager issues the server's certificate.
func UsesCertManager(s *mcpv1alpha1.MCPServer) bool {
	return !s.Spec.TLS.InsecureDisabled && s.Spec.TLS.SecretName == ""
}

// SelectorLabels select the pods of a server.
func SelectorLabels(s *mcpv1alpha1.MCPServer) map[string]string {
	return map[string]string{LabelName: AppName, LabelInstance: s.Name}
}

// Labels go on every child.
func Labels(s *mcpv1alpha1.MCPServer) map[string]string {
	l := SelectorLabels(s)
	l[LabelComponent] = "mcp-server"
	l[LabelManagedBy] = ManagedBy
	l[LabelPartOf] = PartOf
	return l
}

// ServiceDNSNames are the in-cluster names of the server's Service.
func ServiceDNSNames(s *mcpv1alpha1.MCPServer, o Options) []string {
	n, ns := ServiceName(s), s.Namespace
	return []string{n, n + "." + ns, n + "." + ns + ".svc", n + "." + ns + ".svc." + o.clusterDomain()}
}

// URL is the canonical URL of the server.
func URL(s *mcpv1alpha1.MCPServer, o Options) string {
	if s.Spec.Endpoint.PublicURL != "" {
		return s.Spec.Endpoint.PublicURL
	}
	return fmt.Sprintf("%s://%s:%d%s", endpointScheme(s), ServiceDNSNames(s, o)[3], endpointPort(s), endpointPath(s))
}

// GeneratedIssuer is the "iss" of tokens signed with the operator-generated key.
func GeneratedIssuer(s *mcpv1alpha1.MCPServer) string {
	return "mcp-fleet-operator/" + s.Namespace + "/" + s.Name
}

// InsecureOptions lists the insecure options a spec explicitly sets.
func InsecureOptions(s *mcpv1alpha1.MCPServer) []string {
	var out []string
	if s.Spec.TLS.InsecureDisabled {
		out = append(out, "tls.insecureDisabled")
	}
	if s.Spec.Auth.InsecureAnonymous {
		out = append(out, "auth.insecureAnonymous")
	}
	if s.Spec.Auth.WebSocket.InsecureQueryToken {
		out = append(out, "auth.webSocket.insecureQueryToken")
	}
	if s.Spec.NetworkPolicy.InsecureDisabled {
		out = append(out, "networkPolicy.insecureDisabled")
	}
	if slices.Contains(s.Spec.Origins.AllowedHosts, "*") {
		out = append(out, "origins.allowedHosts: *") // no Host check against DNS rebinding
	}
	// Not named insecure in the API, but each switches a protection of the runtime off.
	if v := s.Spec.Tools.ValidateArguments; v != nil && !*v {
		out = append(out, "tools.validateArguments: false")
	}
	if s.Spec.Audit.Disabled {
		out = append(out, "audit.disabled")
	}
	if s.Spec.Audit.LogArguments {
		out = append(out, "audit.logArguments") // arguments (and any secret in them) in the log
	}
	return out
}

// Hash is a short stable digest of the given byte slices, in order.
func Hash(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		_, _ = fmt.Fprintf(h, "%d:", len(p)) // a hash.Hash never fails to write
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// ConfigHash is the pod template annotation value: it changes exactly when what the pods
// read changes — the rendered runtime config or the auth material they mount.
func ConfigHash(runtimeConfig []byte, authData map[string][]byte) string {
	mounted := map[string][]byte{}
	for _, k := range []string{AuthKeyPublic, AuthKeyTicketKey} {
		if v, ok := authData[k]; ok {
			mounted[k] = v
		}
	}
	return Hash(runtimeConfig, HashSecretData(mounted))
}

// HashSecretData digests secret data in key order.
func HashSecretData(data map[string][]byte) []byte {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts [][]byte
	for _, k := range keys {
		parts = append(parts, []byte(k), data[k])
	}
	return []byte(Hash(parts...))
}

func endpointPort(s *mcpv1alpha1.MCPServer) int32 {
	if s.Spec.Endpoint.Port == 0 {
		return 8443
	}
	return s.Spec.Endpoint.Port
}

func endpointPath(s *mcpv1alpha1.MCPServer) string {
	if s.Spec.Endpoint.Path == "" {
		return "/mcp"
	}
	return s.Spec.Endpoint.Path
}

func metricsPort(s *mcpv1alpha1.MCPServer) int32 {
	if s.Spec.Metrics.Port == 0 {
		return 9090
	}
	return s.Spec.Metrics.Port
}

func replicas(s *mcpv1alpha1.MCPServer) int32 {
	if s.Spec.Replicas == nil {
		return 1
	}
	return *s.Spec.Replicas
}
