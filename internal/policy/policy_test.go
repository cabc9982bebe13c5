package policy

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// compliant satisfies strictRules.
func compliant() *mcpv1alpha1.MCPServer {
	return &mcpv1alpha1.MCPServer{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "srv", Labels: map[string]string{"tier": "prod"}},
		Spec: mcpv1alpha1.MCPServerSpec{
			Image:    "ghcr.io/corp/server@" + digest,
			Command:  []string{"/server"},
			Replicas: ptr.To[int32](3),
			Origins:  mcpv1alpha1.OriginsSpec{Allowed: []mcpv1alpha1.Origin{"https://app.corp.example", "https://*.tools.corp.example"}},
			Auth:     mcpv1alpha1.AuthSpec{JWT: []mcpv1alpha1.JWTProvider{{Issuer: "https://login.corp.example", Discovery: true}}},
			RateLimit: mcpv1alpha1.RateLimitSpec{
				RequestsPerSecond: 50, Burst: ptr.To[int32](100), MaxConnections: 1000, MaxConnectionsPerClient: 10,
				MaxMessageSize: ptr.To(resource.MustParse("1Mi")),
				PerTool:        []mcpv1alpha1.ToolRateLimit{{Tool: "search", RequestsPerSecond: 5, Burst: ptr.To[int32](10)}},
			},
			NetworkPolicy: mcpv1alpha1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyPeer{
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"mcp-client": "true"}}},
				{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}},
			}},
		},
	}
}

func strictRules() mcpv1alpha1.PolicyRules {
	return mcpv1alpha1.PolicyRules{
		RequireAuth:              true,
		ForbidInsecureQueryToken: true,
		RequireTLS:               true,
		AllowedOrigins:           []mcpv1alpha1.Origin{"https://*.corp.example"},
		AllowedIssuers:           []string{"https://login.corp.example"},
		AllowedImageRegistries:   []string{"ghcr.io/corp", "registry.corp.example"},
		RequireImageDigest:       true,
		MaxRequestsPerSecond:     ptr.To[int32](100),
		MaxBurst:                 ptr.To[int32](200),
		MaxConnections:           ptr.To[int32](5000),
		MaxConnectionsPerClient:  ptr.To[int32](50),
		MaxMessageSize:           ptr.To(resource.MustParse("4Mi")),
		MaxReplicas:              ptr.To[int32](5),
		RequireNetworkPolicy:     true,
		ForbiddenIngressPeers:    []mcpv1alpha1.IngressPeerClass{mcpv1alpha1.PeerAllNamespaces, mcpv1alpha1.PeerAnyIP},
		RequireAudit:             true,
	}
}

func pol(name string, rules mcpv1alpha1.PolicyRules) mcpv1alpha1.MCPServerPolicy {
	return mcpv1alpha1.MCPServerPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: mcpv1alpha1.MCPServerPolicySpec{Rules: rules}}
}

type ruleField struct {
	Rule  mcpv1alpha1.PolicyRule
	Field string
}

func ruleFields(vs []Violation) []ruleField {
	out := []ruleField{}
	for _, v := range vs {
		out = append(out, ruleField{v.Rule, v.Field})
	}
	return out
}

func TestCompliantServerPassesEveryRule(t *testing.T) {
	g := NewWithT(t)
	g.Expect(Evaluate([]mcpv1alpha1.MCPServerPolicy{pol("strict", strictRules())}, nil, compliant())).To(BeEmpty())
}

// Each rule: one mutation of the compliant server breaks exactly that rule at that field.
func TestEachRuleRejectsItsViolation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*mcpv1alpha1.MCPServerSpec)
		want   []ruleField
		msg    string
	}{
		{"anonymous", func(s *mcpv1alpha1.MCPServerSpec) { s.Auth = mcpv1alpha1.AuthSpec{InsecureAnonymous: true} },
			[]ruleField{{mcpv1alpha1.RuleRequireAuth, "spec.auth.insecureAnonymous"}}, "anonymous access is forbidden"},
		{"query token", func(s *mcpv1alpha1.MCPServerSpec) { s.Auth.WebSocket.InsecureQueryToken = true },
			[]ruleField{{mcpv1alpha1.RuleForbidInsecureQueryToken, "spec.auth.webSocket.insecureQueryToken"}}, "tokens in WebSocket URLs"},
		{"plain http", func(s *mcpv1alpha1.MCPServerSpec) { s.TLS.InsecureDisabled = true },
			[]ruleField{{mcpv1alpha1.RuleRequireTLS, "spec.tls.insecureDisabled"}}, "plain HTTP"},
		{"foreign origin", func(s *mcpv1alpha1.MCPServerSpec) {
			s.Origins.Allowed = append(s.Origins.Allowed, "https://evil.example")
		}, []ruleField{{mcpv1alpha1.RuleAllowedOrigins, "spec.origins.allowed[2]"}}, `"https://evil.example" is not covered`},
		{"origin pattern wider than allowed", func(s *mcpv1alpha1.MCPServerSpec) {
			s.Origins.Allowed = []mcpv1alpha1.Origin{"https://*.example"}
		}, []ruleField{{mcpv1alpha1.RuleAllowedOrigins, "spec.origins.allowed[0]"}}, "not covered"},
		{"plain-http origin", func(s *mcpv1alpha1.MCPServerSpec) {
			s.Origins.Allowed = []mcpv1alpha1.Origin{"http://app.corp.example"}
		}, []ruleField{{mcpv1alpha1.RuleAllowedOrigins, "spec.origins.allowed[0]"}}, "not covered"},
		{"foreign issuer", func(s *mcpv1alpha1.MCPServerSpec) {
			s.Auth.JWT = append(s.Auth.JWT, mcpv1alpha1.JWTProvider{Issuer: "https://accounts.google.com", Discovery: true})
		}, []ruleField{{mcpv1alpha1.RuleAllowedIssuers, "spec.auth.jwt[1].issuer"}}, `"https://accounts.google.com" is not allowed`},
		{"foreign registry", func(s *mcpv1alpha1.MCPServerSpec) { s.Image = "docker.io/someone/server@" + digest },
			[]ruleField{{mcpv1alpha1.RuleAllowedImageRegistries, "spec.image"}}, "index.docker.io/someone/server, which is not an allowed registry"},
		{"registry prefix is not a string prefix", func(s *mcpv1alpha1.MCPServerSpec) { s.Image = "ghcr.io/corporate/server@" + digest },
			[]ruleField{{mcpv1alpha1.RuleAllowedImageRegistries, "spec.image"}}, "not an allowed registry"},
		{"tag instead of digest", func(s *mcpv1alpha1.MCPServerSpec) { s.Image = "ghcr.io/corp/server:v1" },
			[]ruleField{{mcpv1alpha1.RuleRequireImageDigest, "spec.image"}}, "not pinned by digest"},
		{"unparsable image", func(s *mcpv1alpha1.MCPServerSpec) { s.Image = "ghcr.io/corp/Server:??" },
			[]ruleField{{mcpv1alpha1.RuleAllowedImageRegistries, "spec.image"}}, "cannot be parsed"},
		{"rps", func(s *mcpv1alpha1.MCPServerSpec) { s.RateLimit.RequestsPerSecond = 101 },
			[]ruleField{{mcpv1alpha1.RuleMaxRequestsPerSecond, "spec.rateLimit.requestsPerSecond"}}, "101 exceeds the maximum of 100"},
		{"per-tool rps", func(s *mcpv1alpha1.MCPServerSpec) { s.RateLimit.PerTool[0].RequestsPerSecond = 500 },
			[]ruleField{{mcpv1alpha1.RuleMaxRequestsPerSecond, "spec.rateLimit.perTool[0].requestsPerSecond"}}, "500 exceeds"},
		{"burst", func(s *mcpv1alpha1.MCPServerSpec) { s.RateLimit.Burst = ptr.To[int32](201) },
			[]ruleField{{mcpv1alpha1.RuleMaxBurst, "spec.rateLimit.burst"}}, "201 exceeds the maximum of 200"},
		{"default burst derived from rps", func(s *mcpv1alpha1.MCPServerSpec) {
			s.RateLimit.RequestsPerSecond, s.RateLimit.Burst = 100, nil
		}, nil, ""},
		{"connections", func(s *mcpv1alpha1.MCPServerSpec) { s.RateLimit.MaxConnections = 5001 },
			[]ruleField{{mcpv1alpha1.RuleMaxConnections, "spec.rateLimit.maxConnections"}}, "5001 exceeds"},
		{"default connections exceed the cap", func(s *mcpv1alpha1.MCPServerSpec) { s.RateLimit.MaxConnections = 0 },
			[]ruleField{{mcpv1alpha1.RuleMaxConnections, "spec.rateLimit.maxConnections"}}, "10000 exceeds the maximum of 5000"},
		{"connections per client", func(s *mcpv1alpha1.MCPServerSpec) { s.RateLimit.MaxConnectionsPerClient = 51 },
			[]ruleField{{mcpv1alpha1.RuleMaxConnectionsPerClient, "spec.rateLimit.maxConnectionsPerClient"}}, "51 exceeds"},
		{"message size", func(s *mcpv1alpha1.MCPServerSpec) { s.RateLimit.MaxMessageSize = ptr.To(resource.MustParse("8Mi")) },
			[]ruleField{{mcpv1alpha1.RuleMaxMessageSize, "spec.rateLimit.maxMessageSize"}}, "8Mi exceeds the maximum of 4Mi"},
		{"replicas", func(s *mcpv1alpha1.MCPServerSpec) { s.Replicas = ptr.To[int32](6) },
			[]ruleField{{mcpv1alpha1.RuleMaxReplicas, "spec.replicas"}}, "6 replicas exceed the maximum of 5"},
		{"no network policy", func(s *mcpv1alpha1.MCPServerSpec) {
			s.NetworkPolicy = mcpv1alpha1.NetworkPolicySpec{InsecureDisabled: true}
		}, []ruleField{{mcpv1alpha1.RuleRequireNetworkPolicy, "spec.networkPolicy.insecureDisabled"}}, "without a NetworkPolicy"},
		{"all namespaces", func(s *mcpv1alpha1.MCPServerSpec) {
			s.NetworkPolicy.Ingress = append(s.NetworkPolicy.Ingress, networkingv1.NetworkPolicyPeer{
				NamespaceSelector: &metav1.LabelSelector{}, PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}})
		}, []ruleField{{mcpv1alpha1.RuleForbiddenIngressPeers, "spec.networkPolicy.ingress[2].namespaceSelector"}}, "every namespace"},
		{"any ipv6 address", func(s *mcpv1alpha1.MCPServerSpec) {
			s.NetworkPolicy.Ingress = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "::/0"}}}
		}, []ruleField{{mcpv1alpha1.RuleForbiddenIngressPeers, "spec.networkPolicy.ingress[0].ipBlock.cidr"}}, "::/0 admits every address"},
		{"audit off", func(s *mcpv1alpha1.MCPServerSpec) { s.Audit.Disabled = true },
			[]ruleField{{mcpv1alpha1.RuleRequireAudit, "spec.audit.disabled"}}, "audit log off"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			srv := compliant()
			tc.mutate(&srv.Spec)
			vs := Evaluate([]mcpv1alpha1.MCPServerPolicy{pol("strict", strictRules())}, nil, srv)
			if tc.want == nil {
				g.Expect(vs).To(BeEmpty())
				return
			}
			g.Expect(ruleFields(vs)).To(Equal(tc.want))
			v := vs[0]
			g.Expect(v.Policy).To(Equal("strict"))
			g.Expect(v.Message).To(ContainSubstring(tc.msg))
			g.Expect(v.Fix).NotTo(BeEmpty())
			g.Expect(v.Enforcement).To(Equal(mcpv1alpha1.EnforcementDeny))
			g.Expect(v.String()).To(And(ContainSubstring(`MCPServerPolicy "strict"`), ContainSubstring(string(v.Rule)), ContainSubstring(v.Field), ContainSubstring("fix: ")))

			// The same spec under a policy without rules is fine: rules constrain only when set.
			g.Expect(Evaluate([]mcpv1alpha1.MCPServerPolicy{pol("empty", mcpv1alpha1.PolicyRules{})}, nil, srv)).To(BeEmpty())
		})
	}
}

func TestDefaultBurstIsReportedWithItsDerivation(t *testing.T) {
	g := NewWithT(t)
	srv := compliant()
	srv.Spec.RateLimit.Burst = nil
	srv.Spec.RateLimit.RequestsPerSecond = 60 // default burst 120
	vs := Evaluate([]mcpv1alpha1.MCPServerPolicy{pol("p", mcpv1alpha1.PolicyRules{MaxBurst: ptr.To[int32](100)})}, nil, srv)
	g.Expect(ruleFields(vs)).To(Equal([]ruleField{{mcpv1alpha1.RuleMaxBurst, "spec.rateLimit.burst"}}))
	g.Expect(vs[0].Message).To(ContainSubstring("default burst (twice requestsPerSecond, 120)"))
	g.Expect(vs[0].Fix).To(Equal("set spec.rateLimit.burst to at most 100"))
}

func TestOriginCoverage(t *testing.T) {
	cases := []struct {
		origin  string
		allowed []mcpv1alpha1.Origin
		want    bool
	}{
		{"https://app.corp.example", []mcpv1alpha1.Origin{"https://app.corp.example"}, true},
		{"https://app.corp.example:443", []mcpv1alpha1.Origin{"https://app.corp.example"}, true},
		{"https://app.corp.example:8443", []mcpv1alpha1.Origin{"https://app.corp.example"}, false},
		{"https://app.corp.example", []mcpv1alpha1.Origin{"https://*.corp.example"}, true},
		{"https://a.b.corp.example", []mcpv1alpha1.Origin{"https://*.corp.example"}, true},
		{"https://corp.example", []mcpv1alpha1.Origin{"https://*.corp.example"}, false},
		{"https://evilcorp.example", []mcpv1alpha1.Origin{"https://*.corp.example"}, false},
		{"https://*.corp.example", []mcpv1alpha1.Origin{"https://*.corp.example"}, true},
		{"https://*.x.corp.example", []mcpv1alpha1.Origin{"https://*.corp.example"}, true},
		{"https://*.corp.example", []mcpv1alpha1.Origin{"https://app.corp.example"}, false},
		{"https://*.example", []mcpv1alpha1.Origin{"https://*.corp.example"}, false},
		{"http://app.corp.example", []mcpv1alpha1.Origin{"https://*.corp.example"}, false},
		{"http://localhost:3000", []mcpv1alpha1.Origin{"https://*.corp.example", "http://localhost:3000"}, true},
		{"not an origin", []mcpv1alpha1.Origin{"https://*.corp.example"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.origin, func(t *testing.T) {
			NewWithT(t).Expect(originAllowed(tc.origin, tc.allowed)).To(Equal(tc.want))
		})
	}
}

func TestImageReferences(t *testing.T) {
	rules := mcpv1alpha1.PolicyRules{AllowedImageRegistries: []string{"ghcr.io/corp", "index.docker.io/library", "registry.corp.example:5000"}, RequireImageDigest: true}
	cases := []struct {
		image string
		want  []mcpv1alpha1.PolicyRule
	}{
		{"ghcr.io/corp/server@" + digest, nil},
		{"ghcr.io/corp/team/server@" + digest, nil},
		{"ghcr.io/corp/server:v1@" + digest, nil},
		{"nginx@" + digest, nil}, // Docker Hub short names resolve to index.docker.io/library
		{"registry.corp.example:5000/x@" + digest, nil},
		{"registry.corp.example/x@" + digest, []mcpv1alpha1.PolicyRule{mcpv1alpha1.RuleAllowedImageRegistries}},
		{"ghcr.io/corp/server", []mcpv1alpha1.PolicyRule{mcpv1alpha1.RuleRequireImageDigest}},
		{"evil.example/corp/server:latest", []mcpv1alpha1.PolicyRule{mcpv1alpha1.RuleAllowedImageRegistries, mcpv1alpha1.RuleRequireImageDigest}},
	}
	for _, tc := range cases {
		t.Run(tc.image, func(t *testing.T) {
			g := NewWithT(t)
			var got []mcpv1alpha1.PolicyRule
			for _, v := range checkImage(&rules, tc.image) {
				got = append(got, v.Rule)
			}
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestSelectors(t *testing.T) {
	prodNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"env": "prod", corev1.LabelMetadataName: "team-a"}}}
	devNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"env": "dev"}}}
	rules := mcpv1alpha1.PolicyRules{MaxReplicas: ptr.To[int32](1)}
	srv := compliant() // 3 replicas, label tier=prod
	cases := []struct {
		name   string
		nsSel  *metav1.LabelSelector
		srvSel *metav1.LabelSelector
		ns     *corev1.Namespace
		want   bool
	}{
		{"no selectors select everything", nil, nil, devNS, true},
		{"empty selectors select everything", &metav1.LabelSelector{}, &metav1.LabelSelector{}, devNS, true},
		{"namespace label matches", &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}, nil, prodNS, true},
		{"namespace label differs", &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}, nil, devNS, false},
		{"namespace by name without the object", &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "team-a"}}, nil, nil, true},
		{"server label matches", nil, &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "prod"}}, devNS, true},
		{"server label expression excludes", nil, &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"prod"}}}}, devNS, false},
		{"both must match", &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}, &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "dev"}}, prodNS, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			p := pol("p", rules)
			p.Spec.NamespaceSelector, p.Spec.ServerSelector = tc.nsSel, tc.srvSel
			res := EvaluateAll([]mcpv1alpha1.MCPServerPolicy{p}, tc.ns, srv)
			if tc.want {
				g.Expect(res.Matched).To(Equal([]string{"p"}))
				g.Expect(ruleFields(res.Violations)).To(Equal([]ruleField{{mcpv1alpha1.RuleMaxReplicas, "spec.replicas"}}))
			} else {
				g.Expect(res.Matched).To(BeEmpty())
				g.Expect(res.Violations).To(BeEmpty())
			}
		})
	}
}

func TestInvalidSelectorFailsClosed(t *testing.T) {
	g := NewWithT(t)
	p := pol("broken", mcpv1alpha1.PolicyRules{})
	p.Spec.ServerSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "x", Operator: "Bogus"}}}
	res := EvaluateAll([]mcpv1alpha1.MCPServerPolicy{p}, nil, compliant())
	g.Expect(res.Matched).To(Equal([]string{"broken"}))
	g.Expect(res.Denied()).To(HaveLen(1))
	g.Expect(res.Denied()[0].Message).To(ContainSubstring("selector is invalid"))
}

// Composition: each matching policy applies, so the strictest maximum decides, and each
// violation names its own policy.
func TestPoliciesCompose(t *testing.T) {
	g := NewWithT(t)
	srv := compliant()
	srv.Spec.Replicas = ptr.To[int32](4)
	loose := pol("b-loose", mcpv1alpha1.PolicyRules{MaxReplicas: ptr.To[int32](10), RequireAudit: true})
	strict := pol("a-strict", mcpv1alpha1.PolicyRules{MaxReplicas: ptr.To[int32](3)})
	tight := pol("c-tighter", mcpv1alpha1.PolicyRules{MaxReplicas: ptr.To[int32](2), AllowedIssuers: []string{"https://other.example"}})
	vs := Evaluate([]mcpv1alpha1.MCPServerPolicy{loose, tight, strict}, nil, srv)
	g.Expect(vs).To(HaveLen(3))
	g.Expect([]string{vs[0].Policy, vs[1].Policy, vs[2].Policy}).To(Equal([]string{"a-strict", "c-tighter", "c-tighter"}))
	g.Expect(ruleFields(vs)).To(Equal([]ruleField{
		{mcpv1alpha1.RuleMaxReplicas, "spec.replicas"}, {mcpv1alpha1.RuleAllowedIssuers, "spec.auth.jwt[0].issuer"}, {mcpv1alpha1.RuleMaxReplicas, "spec.replicas"}}))
	g.Expect(vs[0].Message).To(ContainSubstring("maximum of 3"))
	g.Expect(vs[2].Message).To(ContainSubstring("maximum of 2"))

	// Intersection of allowlists: an origin must be covered by every policy's list.
	srv = compliant()
	p1 := pol("p1", mcpv1alpha1.PolicyRules{AllowedOrigins: []mcpv1alpha1.Origin{"https://*.corp.example"}})
	p2 := pol("p2", mcpv1alpha1.PolicyRules{AllowedOrigins: []mcpv1alpha1.Origin{"https://app.corp.example"}})
	vs = Evaluate([]mcpv1alpha1.MCPServerPolicy{p1, p2}, nil, srv)
	g.Expect(ruleFields(vs)).To(Equal([]ruleField{{mcpv1alpha1.RuleAllowedOrigins, "spec.origins.allowed[1]"}}))
	g.Expect(vs[0].Policy).To(Equal("p2"))
}

func TestWaivers(t *testing.T) {
	waivable := pol("waivable", mcpv1alpha1.PolicyRules{RequireImageDigest: true, MaxReplicas: ptr.To[int32](1)})
	waivable.Spec.Waivers.Rules = []mcpv1alpha1.PolicyRule{mcpv1alpha1.RuleRequireImageDigest}
	strict := pol("strict", mcpv1alpha1.PolicyRules{RequireImageDigest: true})
	tagged := func(annotations map[string]string) *mcpv1alpha1.MCPServer {
		s := compliant()
		s.Spec.Image = "ghcr.io/corp/server:v1"
		s.Spec.Replicas = nil
		s.Annotations = annotations
		return s
	}
	const key = mcpv1alpha1.WaiverAnnotationPrefix + "requireImageDigest"
	cases := []struct {
		name        string
		policies    []mcpv1alpha1.MCPServerPolicy
		annotations map[string]string
		denied      []string // policies whose violations still deny
		waived      []string
	}{
		{"no waiver", []mcpv1alpha1.MCPServerPolicy{waivable}, nil, []string{"waivable"}, nil},
		{"waiver honoured", []mcpv1alpha1.MCPServerPolicy{waivable}, map[string]string{key: "vendor ships tags only; ticket SEC-42"}, nil, []string{"waivable"}},
		{"waiver without a reason is ignored", []mcpv1alpha1.MCPServerPolicy{waivable}, map[string]string{key: "  "}, []string{"waivable"}, nil},
		{"waiver of another rule does not help", []mcpv1alpha1.MCPServerPolicy{waivable}, map[string]string{mcpv1alpha1.WaiverAnnotationPrefix + "maxReplicas": "x"}, []string{"waivable"}, nil},
		{"policy that permits no waiver still denies", []mcpv1alpha1.MCPServerPolicy{waivable, strict}, map[string]string{key: "why"}, []string{"strict"}, []string{"waivable"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			res := EvaluateAll(tc.policies, nil, tagged(tc.annotations))
			var denied, waived []string
			for _, v := range res.Denied() {
				denied = append(denied, v.Policy)
			}
			for _, v := range res.Violations {
				if v.Waived() {
					waived = append(waived, v.Policy)
					g.Expect(v.Waiver).To(Equal(tc.annotations[key]))
				}
			}
			g.Expect(denied).To(Equal(tc.denied))
			g.Expect(waived).To(Equal(tc.waived))
		})
	}
}

func TestAuditPoliciesReportButDoNotDeny(t *testing.T) {
	g := NewWithT(t)
	p := pol("dry-run", mcpv1alpha1.PolicyRules{RequireAudit: true})
	p.Spec.EnforcementAction = mcpv1alpha1.EnforcementAudit
	srv := compliant()
	srv.Spec.Audit.Disabled = true
	res := EvaluateAll([]mcpv1alpha1.MCPServerPolicy{p}, nil, srv)
	g.Expect(res.Blocking()).To(HaveLen(1))
	g.Expect(res.Denied()).To(BeEmpty())
	g.Expect(res.Blocking()[0].Enforcement).To(Equal(mcpv1alpha1.EnforcementAudit))
}
