// Package policy evaluates MCPServerPolicies against MCPServers. It is pure: no client,
// no clock; the webhook and the controllers feed it what they read.
//
// Composition: every policy that selects a server applies on its own, and the server must
// satisfy each of them. The strictest value of every rule therefore wins (the lowest
// maximum, the intersection of allowlists), and each violation names the policy it breaks.
// A waiver annotation lifts a rule only for the policies that list the rule as waivable.
package policy

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
)

// Violation is one rule of one policy that a server breaks.
type Violation struct {
	// Policy is the name of the MCPServerPolicy.
	Policy string
	// Rule is the rule broken.
	Rule mcpv1alpha1.PolicyRule
	// Field is the path of the offending MCPServer field (e.g. spec.replicas).
	Field string
	// Message says what is wrong.
	Message string
	// Fix says how to comply.
	Fix string
	// Enforcement of the policy: Deny violations are rejected at admission, Audit ones warned.
	Enforcement mcpv1alpha1.EnforcementAction
	// Waiver is the reason given in the server's waiver annotation when the policy
	// honours it; a waived violation does not block or count as violating.
	Waiver string
}

// Waived reports whether the violation is lifted by an honoured waiver.
func (v Violation) Waived() bool { return v.Waiver != "" }

// String is the full message: policy, rule, field, what is wrong and the fix.
func (v Violation) String() string {
	return fmt.Sprintf("MCPServerPolicy %q rule %s: %s: %s; fix: %s", v.Policy, v.Rule, v.Field, v.Message, v.Fix)
}

// Short is a compact form for status conditions.
func (v Violation) Short() string {
	return fmt.Sprintf("%s/%s %s: %s", v.Policy, v.Rule, v.Field, v.Message)
}

// Result is the evaluation of every policy against one server.
type Result struct {
	// Matched names the policies that select the server, sorted.
	Matched []string
	// Violations of the matching policies, waived ones included (see Violation.Waived).
	Violations []Violation
}

// Blocking returns the violations not waived.
func (r Result) Blocking() []Violation {
	var out []Violation
	for _, v := range r.Violations {
		if !v.Waived() {
			out = append(out, v)
		}
	}
	return out
}

// Denied returns the violations that admission must reject: not waived, policy in Deny.
func (r Result) Denied() []Violation {
	var out []Violation
	for _, v := range r.Blocking() {
		if v.Enforcement != mcpv1alpha1.EnforcementAudit {
			out = append(out, v)
		}
	}
	return out
}

// Evaluate returns the violations of srv against every policy that selects it, in policy
// name order then rule order. ns may be nil: the namespace is then known by name only
// (its kubernetes.io/metadata.name label).
func Evaluate(policies []mcpv1alpha1.MCPServerPolicy, ns *corev1.Namespace, srv *mcpv1alpha1.MCPServer) []Violation {
	return EvaluateAll(policies, ns, srv).Violations
}

// EvaluateAll is Evaluate that also reports which policies matched.
func EvaluateAll(policies []mcpv1alpha1.MCPServerPolicy, ns *corev1.Namespace, srv *mcpv1alpha1.MCPServer) Result {
	sorted := slices.Clone(policies)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var res Result
	waivers := Waivers(srv)
	for i := range sorted {
		p := &sorted[i]
		ok, err := Selects(p, ns, srv)
		if err != nil {
			// An invalid selector fails closed: it selects everything and says so.
			res.Matched = append(res.Matched, p.Name)
			res.Violations = append(res.Violations, Violation{
				Policy: p.Name, Rule: "selector", Field: "spec", Enforcement: enforcement(p),
				Message: fmt.Sprintf("the policy's selector is invalid (%v), so it applies to every server", err),
				Fix:     "ask the platform team to fix the MCPServerPolicy's namespaceSelector or serverSelector",
			})
			continue
		}
		if !ok {
			continue
		}
		res.Matched = append(res.Matched, p.Name)
		for _, v := range check(&p.Spec.Rules, srv) {
			v.Policy = p.Name
			v.Enforcement = enforcement(p)
			if why, ok := waivers[v.Rule]; ok && slices.Contains(p.Spec.Waivers.Rules, v.Rule) {
				v.Waiver = why
			}
			res.Violations = append(res.Violations, v)
		}
	}
	return res
}

func enforcement(p *mcpv1alpha1.MCPServerPolicy) mcpv1alpha1.EnforcementAction {
	if p.Spec.EnforcementAction == "" {
		return mcpv1alpha1.EnforcementDeny
	}
	return p.Spec.EnforcementAction
}

// Selects reports whether the policy applies to the server in the namespace.
func Selects(p *mcpv1alpha1.MCPServerPolicy, ns *corev1.Namespace, srv *mcpv1alpha1.MCPServer) (bool, error) {
	nsLabels := labels.Set{corev1.LabelMetadataName: srv.Namespace}
	if ns != nil {
		nsLabels = labels.Set(ns.Labels)
	}
	for _, s := range []struct {
		sel *metav1.LabelSelector
		set labels.Set
	}{{p.Spec.NamespaceSelector, nsLabels}, {p.Spec.ServerSelector, labels.Set(srv.Labels)}} {
		if s.sel == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(s.sel)
		if err != nil {
			return false, err
		}
		if !sel.Matches(s.set) {
			return false, nil
		}
	}
	return true, nil
}

// Waivers returns the server's waiver annotations by rule. An annotation with an empty
// reason is no waiver: the reason is the audit trail.
func Waivers(srv *mcpv1alpha1.MCPServer) map[mcpv1alpha1.PolicyRule]string {
	out := map[mcpv1alpha1.PolicyRule]string{}
	for k, v := range srv.Annotations {
		rule, ok := strings.CutPrefix(k, mcpv1alpha1.WaiverAnnotationPrefix)
		if !ok || strings.TrimSpace(v) == "" {
			continue
		}
		out[mcpv1alpha1.PolicyRule(rule)] = strings.TrimSpace(v)
	}
	return out
}

// Defaults of the CRD, used when a spec was not defaulted by the API server (pure tests,
// objects built in memory).
const (
	defaultRequestsPerSecond       = 20
	defaultMaxConnections          = 10000
	defaultMaxConnectionsPerClient = 100
)

var defaultMaxMessageSize = resource.MustParse("1Mi")

// check returns the violations of one policy's rules, without Policy and Enforcement.
func check(r *mcpv1alpha1.PolicyRules, srv *mcpv1alpha1.MCPServer) []Violation {
	s := &srv.Spec
	var out []Violation
	add := func(rule mcpv1alpha1.PolicyRule, field, fix, format string, a ...any) {
		out = append(out, Violation{Rule: rule, Field: field, Message: fmt.Sprintf(format, a...), Fix: fix})
	}

	if r.RequireAuth && s.Auth.InsecureAnonymous {
		add(mcpv1alpha1.RuleRequireAuth, "spec.auth.insecureAnonymous",
			"remove spec.auth.insecureAnonymous and authenticate callers (the generated issuer is on by default, or add spec.auth.jwt)",
			"anonymous access is forbidden")
	}
	if r.ForbidInsecureQueryToken && s.Auth.WebSocket.InsecureQueryToken {
		add(mcpv1alpha1.RuleForbidInsecureQueryToken, "spec.auth.webSocket.insecureQueryToken",
			"remove spec.auth.webSocket.insecureQueryToken; browsers can use single-use tickets (POST /auth/ticket) or first-message auth",
			"tokens in WebSocket URLs are forbidden")
	}
	if r.RequireTLS && s.TLS.InsecureDisabled {
		add(mcpv1alpha1.RuleRequireTLS, "spec.tls.insecureDisabled",
			"remove spec.tls.insecureDisabled (TLS is on by default with a cert-manager certificate)",
			"plain HTTP is forbidden")
	}
	if len(r.AllowedOrigins) > 0 {
		for i, o := range s.Origins.Allowed {
			if !originAllowed(string(o), r.AllowedOrigins) {
				add(mcpv1alpha1.RuleAllowedOrigins, fmt.Sprintf("spec.origins.allowed[%d]", i),
					fmt.Sprintf("allow only origins covered by %s", join(r.AllowedOrigins)),
					"origin %q is not covered by the allowed origins", o)
			}
		}
	}
	if len(r.AllowedIssuers) > 0 {
		for i, j := range s.Auth.JWT {
			if !slices.Contains(r.AllowedIssuers, j.Issuer) {
				add(mcpv1alpha1.RuleAllowedIssuers, fmt.Sprintf("spec.auth.jwt[%d].issuer", i),
					fmt.Sprintf("trust only the issuers %s", join(r.AllowedIssuers)),
					"issuer %q is not allowed", j.Issuer)
			}
		}
	}
	if len(r.AllowedImageRegistries) > 0 || r.RequireImageDigest {
		out = append(out, checkImage(r, s.Image)...)
	}
	out = append(out, checkRateLimit(r, &s.RateLimit)...)
	if r.MaxReplicas != nil {
		replicas := int32(1)
		if s.Replicas != nil {
			replicas = *s.Replicas
		}
		if replicas > *r.MaxReplicas {
			add(mcpv1alpha1.RuleMaxReplicas, "spec.replicas",
				fmt.Sprintf("set spec.replicas to at most %d", *r.MaxReplicas),
				"%d replicas exceed the maximum of %d", replicas, *r.MaxReplicas)
		}
	}
	if r.RequireNetworkPolicy && s.NetworkPolicy.InsecureDisabled {
		add(mcpv1alpha1.RuleRequireNetworkPolicy, "spec.networkPolicy.insecureDisabled",
			"remove spec.networkPolicy.insecureDisabled and list who may connect in spec.networkPolicy.ingress",
			"a server without a NetworkPolicy is forbidden")
	}
	for i, peer := range s.NetworkPolicy.Ingress {
		field := fmt.Sprintf("spec.networkPolicy.ingress[%d]", i)
		if slices.Contains(r.ForbiddenIngressPeers, mcpv1alpha1.PeerAllNamespaces) && peer.NamespaceSelector != nil &&
			len(peer.NamespaceSelector.MatchLabels) == 0 && len(peer.NamespaceSelector.MatchExpressions) == 0 {
			add(mcpv1alpha1.RuleForbiddenIngressPeers, field+".namespaceSelector",
				"select the client namespaces by label (namespaceSelector.matchLabels) instead of every namespace",
				"an empty namespaceSelector admits every namespace (AllNamespaces is forbidden)")
		}
		if slices.Contains(r.ForbiddenIngressPeers, mcpv1alpha1.PeerAnyIP) && peer.IPBlock != nil {
			if _, n, err := net.ParseCIDR(peer.IPBlock.CIDR); err == nil {
				if ones, _ := n.Mask.Size(); ones == 0 {
					add(mcpv1alpha1.RuleForbiddenIngressPeers, field+".ipBlock.cidr",
						"list the client networks (e.g. 10.0.0.0/8) instead of every address",
						"ipBlock %s admits every address (AnyIP is forbidden)", peer.IPBlock.CIDR)
				}
			}
		}
	}
	if r.RequireAudit && s.Audit.Disabled {
		add(mcpv1alpha1.RuleRequireAudit, "spec.audit.disabled",
			"remove spec.audit.disabled (the audit log is on by default)",
			"turning the audit log off is forbidden")
	}
	return out
}

func checkImage(r *mcpv1alpha1.PolicyRules, image string) []Violation {
	ref, err := name.ParseReference(image)
	if err != nil {
		return []Violation{{Rule: ruleForImage(r), Field: "spec.image",
			Message: fmt.Sprintf("image %q cannot be parsed (%v), so its registry and digest are unknown", image, err),
			Fix:     "use a fully qualified image reference such as registry.example/team/server@sha256:<digest>"}}
	}
	var out []Violation
	if len(r.AllowedImageRegistries) > 0 {
		repo := ref.Context().Name() // registry/repository, e.g. index.docker.io/library/nginx
		ok := false
		for _, allowed := range r.AllowedImageRegistries {
			allowed = strings.TrimSuffix(allowed, "/")
			if repo == allowed || strings.HasPrefix(repo, allowed+"/") {
				ok = true
				break
			}
		}
		if !ok {
			out = append(out, Violation{Rule: mcpv1alpha1.RuleAllowedImageRegistries, Field: "spec.image",
				Message: fmt.Sprintf("image %q comes from %s, which is not an allowed registry", image, repo),
				Fix:     fmt.Sprintf("use an image from %s", join(r.AllowedImageRegistries))})
		}
	}
	if r.RequireImageDigest {
		if _, ok := ref.(name.Digest); !ok {
			out = append(out, Violation{Rule: mcpv1alpha1.RuleRequireImageDigest, Field: "spec.image",
				Message: fmt.Sprintf("image %q is not pinned by digest", image),
				Fix:     "pin the image by digest: " + ref.Context().Name() + "@sha256:<digest>"})
		}
	}
	return out
}

// ruleForImage names the rule an unparsable image breaks: the one the policy sets.
func ruleForImage(r *mcpv1alpha1.PolicyRules) mcpv1alpha1.PolicyRule {
	if len(r.AllowedImageRegistries) > 0 {
		return mcpv1alpha1.RuleAllowedImageRegistries
	}
	return mcpv1alpha1.RuleRequireImageDigest
}

func checkRateLimit(r *mcpv1alpha1.PolicyRules, rl *mcpv1alpha1.RateLimitSpec) []Violation {
	var out []Violation
	capInt := func(rule mcpv1alpha1.PolicyRule, field string, value int32, max *int32) {
		if max != nil && value > *max {
			out = append(out, Violation{Rule: rule, Field: field,
				Message: fmt.Sprintf("%d exceeds the maximum of %d", value, *max),
				Fix:     fmt.Sprintf("set %s to at most %d", field, *max)})
		}
	}
	rps := orDefault(rl.RequestsPerSecond, defaultRequestsPerSecond)
	capInt(mcpv1alpha1.RuleMaxRequestsPerSecond, "spec.rateLimit.requestsPerSecond", rps, r.MaxRequestsPerSecond)
	burst := 2 * rps
	if rl.Burst != nil {
		burst = *rl.Burst
	}
	if r.MaxBurst != nil && burst > *r.MaxBurst && rl.Burst == nil {
		// The default burst is derived: the fix is to set it, not to lower it.
		out = append(out, Violation{Rule: mcpv1alpha1.RuleMaxBurst, Field: "spec.rateLimit.burst",
			Message: fmt.Sprintf("the default burst (twice requestsPerSecond, %d) exceeds the maximum of %d", burst, *r.MaxBurst),
			Fix:     fmt.Sprintf("set spec.rateLimit.burst to at most %d", *r.MaxBurst)})
	} else {
		capInt(mcpv1alpha1.RuleMaxBurst, "spec.rateLimit.burst", burst, r.MaxBurst)
	}
	for i, t := range rl.PerTool {
		field := fmt.Sprintf("spec.rateLimit.perTool[%d]", i)
		capInt(mcpv1alpha1.RuleMaxRequestsPerSecond, field+".requestsPerSecond", t.RequestsPerSecond, r.MaxRequestsPerSecond)
		if t.Burst != nil {
			capInt(mcpv1alpha1.RuleMaxBurst, field+".burst", *t.Burst, r.MaxBurst)
		}
	}
	capInt(mcpv1alpha1.RuleMaxConnections, "spec.rateLimit.maxConnections", orDefault(rl.MaxConnections, defaultMaxConnections), r.MaxConnections)
	capInt(mcpv1alpha1.RuleMaxConnectionsPerClient, "spec.rateLimit.maxConnectionsPerClient", orDefault(rl.MaxConnectionsPerClient, defaultMaxConnectionsPerClient), r.MaxConnectionsPerClient)
	if r.MaxMessageSize != nil {
		size := defaultMaxMessageSize
		if rl.MaxMessageSize != nil {
			size = *rl.MaxMessageSize
		}
		if size.Cmp(*r.MaxMessageSize) > 0 {
			out = append(out, Violation{Rule: mcpv1alpha1.RuleMaxMessageSize, Field: "spec.rateLimit.maxMessageSize",
				Message: fmt.Sprintf("%s exceeds the maximum of %s", size.String(), r.MaxMessageSize.String()),
				Fix:     fmt.Sprintf("set spec.rateLimit.maxMessageSize to at most %s", r.MaxMessageSize.String())})
		}
	}
	return out
}

func orDefault(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
}

func join[T ~string](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = string(x)
	}
	return strings.Join(s, ", ")
}

// originAllowed reports whether origin (exact or "*." pattern) is covered by one of the
// allowed origins or patterns.
func originAllowed(origin string, allowed []mcpv1alpha1.Origin) bool {
	o, ok := parseOrigin(origin)
	if !ok {
		return false
	}
	for _, a := range allowed {
		p, ok := parseOrigin(string(a))
		if !ok || p.scheme != o.scheme || p.port != o.port {
			continue
		}
		pDomain, pWild := strings.CutPrefix(p.host, "*.")
		oDomain, oWild := strings.CutPrefix(o.host, "*.")
		switch {
		case !pWild:
			if !oWild && o.host == p.host {
				return true
			}
		case oWild:
			// *.a.corp.example is narrower than *.corp.example.
			if oDomain == pDomain || strings.HasSuffix(oDomain, "."+pDomain) {
				return true
			}
		default:
			if strings.HasSuffix(o.host, "."+pDomain) {
				return true
			}
		}
	}
	return false
}

type origin struct{ scheme, host, port string }

// parseOrigin splits scheme://host[:port], dropping the scheme's default port.
func parseOrigin(s string) (origin, bool) {
	scheme, rest, ok := strings.Cut(strings.ToLower(s), "://")
	if !ok || (scheme != "http" && scheme != "https") || rest == "" || strings.ContainsAny(rest, "/?#@") {
		return origin{}, false
	}
	host, port := rest, ""
	if h, p, err := net.SplitHostPort(rest); err == nil {
		host, port = h, p
	}
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	return origin{scheme: scheme, host: host, port: port}, host != ""
}
