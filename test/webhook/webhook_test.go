package webhook_test

import (
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

var nsCounter int

// newNamespace creates a namespace labelled for one policy, so that cluster-scoped
// policies of one spec never select another spec's servers.
func newNamespace() (name, label string) {
	nsCounter++
	label = fmt.Sprintf("t%d-%d", GinkgoRandomSeed(), nsCounter)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "webhook-", Labels: map[string]string{"guardrails": label}}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name, label
}

func newPolicy(label string, mutate func(*mcpv1alpha1.MCPServerPolicySpec)) *mcpv1alpha1.MCPServerPolicy {
	p := &mcpv1alpha1.MCPServerPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: label + "-" + fmt.Sprint(time.Now().UnixNano())},
		Spec: mcpv1alpha1.MCPServerPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"guardrails": label}},
		},
	}
	mutate(&p.Spec)
	Expect(k8sClient.Create(ctx, p)).To(Succeed())
	DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, p))).To(Succeed()) })
	return p
}

// compliant follows strictRules.
func compliant(ns string) *mcpv1alpha1.MCPServer {
	return &mcpv1alpha1.MCPServer{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "srv"},
		Spec: mcpv1alpha1.MCPServerSpec{
			Image:    "ghcr.io/corp/server@" + digest,
			Command:  []string{"/server"},
			Replicas: ptr.To[int32](2),
			Origins:  mcpv1alpha1.OriginsSpec{Allowed: []mcpv1alpha1.Origin{"https://app.corp.example"}},
			Auth:     mcpv1alpha1.AuthSpec{JWT: []mcpv1alpha1.JWTProvider{{Issuer: "https://login.corp.example", Discovery: true}}},
			RateLimit: mcpv1alpha1.RateLimitSpec{
				RequestsPerSecond: 10, Burst: ptr.To[int32](20), MaxConnections: 100, MaxConnectionsPerClient: 10,
				MaxMessageSize: ptr.To(resource.MustParse("1Mi")),
			},
			NetworkPolicy: mcpv1alpha1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyPeer{
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"mcp-client": "true"}}},
			}},
		},
	}
}

func strictRules() mcpv1alpha1.PolicyRules {
	return mcpv1alpha1.PolicyRules{
		RequireAuth: true, ForbidInsecureQueryToken: true, RequireTLS: true,
		AllowedOrigins:         []mcpv1alpha1.Origin{"https://*.corp.example"},
		AllowedIssuers:         []string{"https://login.corp.example"},
		AllowedImageRegistries: []string{"ghcr.io/corp"}, RequireImageDigest: true,
		MaxRequestsPerSecond: ptr.To[int32](50), MaxBurst: ptr.To[int32](100),
		MaxConnections: ptr.To[int32](1000), MaxConnectionsPerClient: ptr.To[int32](20),
		MaxMessageSize: ptr.To(resource.MustParse("2Mi")), MaxReplicas: ptr.To[int32](3),
		RequireNetworkPolicy:  true,
		ForbiddenIngressPeers: []mcpv1alpha1.IngressPeerClass{mcpv1alpha1.PeerAllNamespaces, mcpv1alpha1.PeerAnyIP},
		RequireAudit:          true,
	}
}

func dryRun(s *mcpv1alpha1.MCPServer) error {
	return k8sClient.Create(ctx, s.DeepCopy(), client.DryRunAll)
}

// denial matches the API server's error for a webhook rejection naming policy, rule,
// field and fix.
func denial(policy string, rule mcpv1alpha1.PolicyRule, field, fix string) OmegaMatcher {
	return MatchError(And(
		ContainSubstring(`admission webhook "vmcpserver.mcp.mcpfleet.dev" denied the request`),
		ContainSubstring(fmt.Sprintf("MCPServerPolicy %q rule %s: %s: ", policy, rule, field)),
		ContainSubstring("fix: "+fix),
	))
}

var _ = Describe("MCPServer admission webhook", Ordered, func() {
	It("admits any valid server while no policy selects it", func() {
		ns, _ := newNamespace()
		s := compliant(ns)
		s.Spec.Auth = mcpv1alpha1.AuthSpec{InsecureAnonymous: true}
		s.Spec.Image = "docker.io/anyone/server:latest"
		Expect(dryRun(s)).To(Succeed())
	})

	Describe("each rule", func() {
		var ns, policy string
		BeforeEach(func() {
			var label string
			ns, label = newNamespace()
			policy = newPolicy(label, func(s *mcpv1alpha1.MCPServerPolicySpec) { s.Rules = strictRules() }).Name
		})

		It("accepts a compliant server", func() {
			Expect(dryRun(compliant(ns))).To(Succeed())
		})

		type violation struct {
			mutate     func(*mcpv1alpha1.MCPServerSpec)
			rule       mcpv1alpha1.PolicyRule
			field, fix string
		}
		cases := map[string]violation{
			"anonymous": {func(s *mcpv1alpha1.MCPServerSpec) { s.Auth = mcpv1alpha1.AuthSpec{InsecureAnonymous: true} },
				mcpv1alpha1.RuleRequireAuth, "spec.auth.insecureAnonymous", "remove spec.auth.insecureAnonymous"},
			"query token": {func(s *mcpv1alpha1.MCPServerSpec) { s.Auth.WebSocket.InsecureQueryToken = true },
				mcpv1alpha1.RuleForbidInsecureQueryToken, "spec.auth.webSocket.insecureQueryToken", "remove spec.auth.webSocket.insecureQueryToken"},
			"plain http": {func(s *mcpv1alpha1.MCPServerSpec) { s.TLS.InsecureDisabled = true },
				mcpv1alpha1.RuleRequireTLS, "spec.tls.insecureDisabled", "remove spec.tls.insecureDisabled"},
			"origin": {func(s *mcpv1alpha1.MCPServerSpec) {
				s.Origins.Allowed = []mcpv1alpha1.Origin{"https://app.example.com"}
			},
				mcpv1alpha1.RuleAllowedOrigins, "spec.origins.allowed[0]", "allow only origins covered by https://*.corp.example"},
			"issuer": {func(s *mcpv1alpha1.MCPServerSpec) { s.Auth.JWT[0].Issuer = "https://accounts.example.com" },
				mcpv1alpha1.RuleAllowedIssuers, "spec.auth.jwt[0].issuer", "trust only the issuers https://login.corp.example"},
			"registry": {func(s *mcpv1alpha1.MCPServerSpec) { s.Image = "quay.io/corp/server@" + digest },
				mcpv1alpha1.RuleAllowedImageRegistries, "spec.image", "use an image from ghcr.io/corp"},
			"digest": {func(s *mcpv1alpha1.MCPServerSpec) { s.Image = "ghcr.io/corp/server:v1" },
				mcpv1alpha1.RuleRequireImageDigest, "spec.image", "pin the image by digest: ghcr.io/corp/server@sha256:<digest>"},
			"rps": {func(s *mcpv1alpha1.MCPServerSpec) { s.RateLimit.RequestsPerSecond = 51 },
				mcpv1alpha1.RuleMaxRequestsPerSecond, "spec.rateLimit.requestsPerSecond", "set spec.rateLimit.requestsPerSecond to at most 50"},
			"burst": {func(s *mcpv1alpha1.MCPServerSpec) { s.RateLimit.Burst = ptr.To[int32](101) },
				mcpv1alpha1.RuleMaxBurst, "spec.rateLimit.burst", "set spec.rateLimit.burst to at most 100"},
			"connections": {func(s *mcpv1alpha1.MCPServerSpec) { s.RateLimit.MaxConnections = 0 }, // CRD default 10000
				mcpv1alpha1.RuleMaxConnections, "spec.rateLimit.maxConnections", "set spec.rateLimit.maxConnections to at most 1000"},
			"connections per client": {func(s *mcpv1alpha1.MCPServerSpec) { s.RateLimit.MaxConnectionsPerClient = 21 },
				mcpv1alpha1.RuleMaxConnectionsPerClient, "spec.rateLimit.maxConnectionsPerClient", "set spec.rateLimit.maxConnectionsPerClient to at most 20"},
			"message size": {func(s *mcpv1alpha1.MCPServerSpec) { s.RateLimit.MaxMessageSize = ptr.To(resource.MustParse("3Mi")) },
				mcpv1alpha1.RuleMaxMessageSize, "spec.rateLimit.maxMessageSize", "set spec.rateLimit.maxMessageSize to at most 2Mi"},
			"replicas": {func(s *mcpv1alpha1.MCPServerSpec) { s.Replicas = ptr.To[int32](4) },
				mcpv1alpha1.RuleMaxReplicas, "spec.replicas", "set spec.replicas to at most 3"},
			"network policy": {func(s *mcpv1alpha1.MCPServerSpec) {
				s.NetworkPolicy = mcpv1alpha1.NetworkPolicySpec{InsecureDisabled: true}
			},
				mcpv1alpha1.RuleRequireNetworkPolicy, "spec.networkPolicy.insecureDisabled", "remove spec.networkPolicy.insecureDisabled"},
			"all namespaces": {func(s *mcpv1alpha1.MCPServerSpec) {
				s.NetworkPolicy.Ingress[0].NamespaceSelector = &metav1.LabelSelector{}
			},
				mcpv1alpha1.RuleForbiddenIngressPeers, "spec.networkPolicy.ingress[0].namespaceSelector", "select the client namespaces by label"},
			"any ip": {func(s *mcpv1alpha1.MCPServerSpec) {
				s.NetworkPolicy.Ingress = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}}
			}, mcpv1alpha1.RuleForbiddenIngressPeers, "spec.networkPolicy.ingress[0].ipBlock.cidr", "list the client networks"},
			"audit": {func(s *mcpv1alpha1.MCPServerSpec) { s.Audit.Disabled = true },
				mcpv1alpha1.RuleRequireAudit, "spec.audit.disabled", "remove spec.audit.disabled"},
		}
		for _, name := range slices.Sorted(maps.Keys(cases)) {
			tc := cases[name]
			It("rejects a violation: "+name, func() {
				s := compliant(ns)
				tc.mutate(&s.Spec)
				Expect(dryRun(s)).To(denial(policy, tc.rule, tc.field, tc.fix))
			})
		}
	})

	It("composes policies: every matching policy applies and the stricter one is named", func() {
		ns, label := newNamespace()
		loose := newPolicy(label, func(s *mcpv1alpha1.MCPServerPolicySpec) { s.Rules.MaxReplicas = ptr.To[int32](10) })
		strict := newPolicy(label, func(s *mcpv1alpha1.MCPServerPolicySpec) { s.Rules.MaxReplicas = ptr.To[int32](1) })
		s := compliant(ns)
		s.Spec.Replicas = ptr.To[int32](5)
		err := dryRun(s)
		Expect(err).To(denial(strict.Name, mcpv1alpha1.RuleMaxReplicas, "spec.replicas", "set spec.replicas to at most 1"))
		Expect(err.Error()).NotTo(ContainSubstring(loose.Name))
		s.Spec.Replicas = ptr.To[int32](1)
		Expect(dryRun(s)).To(Succeed())
	})

	It("honours a waiver only when the policy permits it, and warns about it", func() {
		ns, label := newNamespace()
		waivable := newPolicy(label, func(s *mcpv1alpha1.MCPServerPolicySpec) {
			s.Rules.RequireImageDigest = true
			s.Waivers.Rules = []mcpv1alpha1.PolicyRule{mcpv1alpha1.RuleRequireImageDigest}
		})
		s := compliant(ns)
		s.Spec.Image = "ghcr.io/corp/server:v1"
		Expect(dryRun(s)).To(MatchError(ContainSubstring("or waive it: annotation waivers.mcp.mcpfleet.dev/requireImageDigest: <why>")))

		s.Annotations = map[string]string{mcpv1alpha1.WaiverAnnotationPrefix + "requireImageDigest": "vendor publishes tags only; SEC-42"}
		warnings.take()
		Expect(dryRun(s)).To(Succeed())
		Expect(warnings.take()).To(ContainElement(fmt.Sprintf("waiver honoured: MCPServerPolicy %q rule requireImageDigest waived (vendor publishes tags only; SEC-42)", waivable.Name)))

		strict := newPolicy(label, func(s *mcpv1alpha1.MCPServerPolicySpec) { s.Rules.RequireImageDigest = true })
		err := dryRun(s)
		Expect(err).To(denial(strict.Name, mcpv1alpha1.RuleRequireImageDigest, "spec.image", "pin the image by digest"))
		Expect(err.Error()).NotTo(ContainSubstring(fmt.Sprintf("MCPServerPolicy %q", waivable.Name)))
	})

	It("warns instead of rejecting for a policy in Audit mode", func() {
		ns, label := newNamespace()
		p := newPolicy(label, func(s *mcpv1alpha1.MCPServerPolicySpec) {
			s.EnforcementAction = mcpv1alpha1.EnforcementAudit
			s.Rules.RequireAudit = true
		})
		s := compliant(ns)
		s.Spec.Audit.Disabled = true
		warnings.take()
		Expect(dryRun(s)).To(Succeed())
		Expect(warnings.take()).To(ContainElement(HavePrefix(fmt.Sprintf("audit only: MCPServerPolicy %q rule requireAudit: spec.audit.disabled", p.Name))))
	})

	It("lets a server that predates a policy be updated, but not made worse", func() {
		ns, label := newNamespace()
		s := compliant(ns)
		s.Spec.Replicas = ptr.To[int32](5)
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		p := newPolicy(label, func(sp *mcpv1alpha1.MCPServerPolicySpec) { sp.Rules.MaxReplicas = ptr.To[int32](3) })

		live := &mcpv1alpha1.MCPServer{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), live)).To(Succeed())
		live.Labels = map[string]string{"team": "search"}
		warnings.take()
		Expect(k8sClient.Update(ctx, live)).To(Succeed(), "an unrelated edit of a violating server is allowed")
		Expect(warnings.take()).To(ContainElement(ContainSubstring("already violated before this update: MCPServerPolicy %q rule maxReplicas", p.Name)))

		live.Spec.Replicas = ptr.To[int32](8)
		Expect(k8sClient.Update(ctx, live)).To(denial(p.Name, mcpv1alpha1.RuleMaxReplicas, "spec.replicas", "set spec.replicas to at most 3"))
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), live)).To(Succeed())
		live.Spec.Replicas = ptr.To[int32](3)
		Expect(k8sClient.Update(ctx, live)).To(Succeed())
	})

	Describe("cross-object checks", func() {
		var ns string
		BeforeEach(func() { ns, _ = newNamespace() })

		It("rejects references to Secrets that do not exist, and accepts them once they do", func() {
			s := compliant(ns)
			s.Spec.TLS.SecretName = "srv-tls"
			s.Spec.Auth.APIKeys = &mcpv1alpha1.APIKeysSpec{SecretName: "srv-keys"}
			s.Spec.Env = []corev1.EnvVar{
				{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "srv-env"}, Key: "token"}}},
				{Name: "OPTIONAL", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "maybe"}, Key: "x", Optional: ptr.To(true)}}},
			}
			err := dryRun(s)
			Expect(err).To(MatchError(And(
				ContainSubstring(`spec.tls.secretName: Secret "srv-tls" does not exist in namespace `+ns),
				ContainSubstring(`spec.auth.apiKeys.secretName: Secret "srv-keys" does not exist`),
				ContainSubstring(`spec.env[0].valueFrom.secretKeyRef.name: Secret "srv-env" does not exist`),
				ContainSubstring("fix: create the Secret before the MCPServer"),
			)))
			Expect(err.Error()).NotTo(ContainSubstring(`"maybe"`), "optional references are not required")

			for _, name := range []string{"srv-tls", "srv-keys", "srv-env"} {
				Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})).To(Succeed())
			}
			Expect(dryRun(s)).To(Succeed())
		})

		It("rejects an issuerRef to a missing Issuer or ClusterIssuer", func() {
			s := compliant(ns)
			s.Spec.TLS.IssuerRef = &mcpv1alpha1.IssuerReference{Name: "team-ca", Kind: "Issuer"}
			Expect(dryRun(s)).To(MatchError(ContainSubstring(`spec.tls.issuerRef: cert-manager Issuer "team-ca" does not exist in namespace ` + ns)))
			issuer := &unstructured.Unstructured{}
			issuer.SetGroupVersionKind(cmv1.SchemeGroupVersion.WithKind("Issuer"))
			issuer.SetNamespace(ns)
			issuer.SetName("team-ca")
			Expect(unstructured.SetNestedMap(issuer.Object, map[string]any{"selfSigned": map[string]any{}}, "spec")).To(Succeed())
			Expect(k8sClient.Create(ctx, issuer)).To(Succeed())
			Expect(dryRun(s)).To(Succeed())

			s.Spec.TLS.IssuerRef = &mcpv1alpha1.IssuerReference{Name: "no-such-ca", Kind: "ClusterIssuer"}
			Expect(dryRun(s)).To(MatchError(ContainSubstring(`spec.tls.issuerRef: cert-manager ClusterIssuer "no-such-ca" does not exist`)))
		})

		It("rejects a tool glob the runtime would not load, naming the field", func() {
			s := compliant(ns)
			s.Spec.Tools.Deny = []string{"github/*", "[z-a]*"}
			s.Spec.RateLimit.PerTool = []mcpv1alpha1.ToolRateLimit{{Tool: "search[", RequestsPerSecond: 5}}
			Expect(dryRun(s)).To(MatchError(And(
				ContainSubstring(`spec.tools.deny[1]: "[z-a]*" is not a tool glob`),
				ContainSubstring(`spec.rateLimit.perTool[0].tool: "search[" is not a tool glob`),
				ContainSubstring("fix: * matches any characters ('/' included)"),
			)))
			s.Spec.Tools.Deny = []string{"github/*", "[a-z]*"}
			s.Spec.RateLimit.PerTool[0].Tool = `search\[`
			Expect(dryRun(s)).To(Succeed())
		})
	})

	It("ships a baseline policy the API server accepts, which rejects insecure servers once set to Deny", func() {
		raw, err := os.ReadFile(filepath.Join("..", "..", "config", "policy", "baseline.yaml"))
		Expect(err).NotTo(HaveOccurred())
		baseline := &mcpv1alpha1.MCPServerPolicy{}
		Expect(yaml.UnmarshalStrict(raw, baseline)).To(Succeed())
		Expect(baseline.Spec.EnforcementAction).To(Equal(mcpv1alpha1.EnforcementAudit), "the shipped baseline starts in Audit mode")
		Expect(k8sClient.Create(ctx, baseline.DeepCopy(), client.DryRunAll)).To(Succeed())

		// Scoped to one namespace for this test, and switched to Deny.
		ns, label := newNamespace()
		p := newPolicy(label, func(sp *mcpv1alpha1.MCPServerPolicySpec) {
			sp.Rules, sp.Waivers = baseline.Spec.Rules, baseline.Spec.Waivers
		})
		secure := compliant(ns)
		secure.Spec.Image = "docker.io/anyone/server:latest"
		Expect(dryRun(secure)).To(Succeed(), "the MCPServer defaults satisfy the baseline")
		anonymous := compliant(ns)
		anonymous.Spec.Auth = mcpv1alpha1.AuthSpec{InsecureAnonymous: true}
		anonymous.Annotations = map[string]string{mcpv1alpha1.WaiverAnnotationPrefix + "requireAuth": "demo"}
		Expect(dryRun(anonymous)).To(denial(p.Name, mcpv1alpha1.RuleRequireAuth, "spec.auth.insecureAnonymous", "remove spec.auth.insecureAnonymous"))
		meshTLS := compliant(ns)
		meshTLS.Spec.TLS.InsecureDisabled = true
		meshTLS.Annotations = map[string]string{mcpv1alpha1.WaiverAnnotationPrefix + "requireTLS": "Istio mTLS terminates in the sidecar"}
		Expect(dryRun(meshTLS)).To(Succeed())
	})

	// Last: it stops the webhook server.
	It("fails closed for this group while the webhook is down, leaving other groups alone", func() {
		stopServer()
		Eventually(serverDone, 10*time.Second).Should(BeClosed())
		o := testEnv.WebhookInstallOptions
		_, err := net.DialTimeout("tcp", net.JoinHostPort(o.LocalServingHost, fmt.Sprint(o.LocalServingPort)), time.Second)
		Expect(err).To(HaveOccurred(), "the webhook port is closed")

		ns, _ := newNamespace()
		err = k8sClient.Create(ctx, compliant(ns))
		Expect(err).To(MatchError(ContainSubstring(`failed calling webhook "vmcpserver.mcp.mcpfleet.dev"`)))
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(compliant(ns)), &mcpv1alpha1.MCPServer{})).NotTo(Succeed(), "nothing was stored")

		Expect(k8sClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unaffected"}})).To(Succeed())
		Expect(k8sClient.Create(ctx, &mcpv1alpha1.MCPServerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "unaffected-" + ns}})).To(Succeed(),
			"policies are not behind the webhook, so a platform team can always change them")
	})
})
