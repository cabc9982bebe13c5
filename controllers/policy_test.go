package controllers

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
)

// Policies applied to servers that existed before them: the servers' specs are never
// touched, their PolicyCompliant condition lists the violations, and the policy's status
// counts them. The policy controller runs in a manager of its own, beside the suite's.
var _ = Describe("MCPServerPolicy on existing servers", Ordered, func() {
	var (
		ns, label   string
		good, bad   *mcpv1alpha1.MCPServer
		pol         *mcpv1alpha1.MCPServerPolicy
		stopPolicyM context.CancelFunc
	)

	BeforeAll(func() {
		mgr, err := ctrl.NewManager(cfg, ctrl.Options{
			Scheme:     scheme,
			Metrics:    metricsserver.Options{BindAddress: "0"},
			Cache:      CacheOptions(nil),
			Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		})
		Expect(err).NotTo(HaveOccurred())
		Expect((&PolicyReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr)).To(Succeed())
		var mctx context.Context
		mctx, stopPolicyM = context.WithCancel(ctx)
		go func() {
			defer GinkgoRecover()
			Expect(mgr.Start(mctx)).To(Succeed())
		}()

		label = fmt.Sprintf("policy-test-%d", time.Now().UnixNano())
		ns = newNamespace(map[string]string{"guardrails": label})
		good = stdioServer(ns, "good")
		good.Spec.TLS.SecretName = "good-tls"
		bad = stdioServer(ns, "bad")
		bad.Spec.TLS.SecretName = "bad-tls"
		bad.Spec.Replicas = ptr.To[int32](3)
		bad.Spec.Audit.Disabled = true
		Expect(k8sClient.Create(ctx, good)).To(Succeed())
		Expect(k8sClient.Create(ctx, bad)).To(Succeed())
		Eventually(condition(bad, ConditionReady), timeout, interval).ShouldNot(BeNil())
	})

	AfterAll(func() {
		if pol != nil {
			_ = k8sClient.Delete(ctx, pol)
		}
		if stopPolicyM != nil {
			stopPolicyM()
		}
	})

	It("adds no PolicyCompliant condition while no policy selects a server", func() {
		Consistently(condition(bad, ConditionPolicyCompliant), time.Second, 200*time.Millisecond).Should(BeNil())
	})

	It("reports violations of a new policy without touching the spec", func() {
		generation := getServer(bad).Generation
		pol = &mcpv1alpha1.MCPServerPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: label},
			Spec: mcpv1alpha1.MCPServerPolicySpec{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"guardrails": label}},
				Rules:             mcpv1alpha1.PolicyRules{MaxReplicas: ptr.To[int32](2), RequireAudit: true},
				Waivers:           mcpv1alpha1.PolicyWaivers{Rules: []mcpv1alpha1.PolicyRule{mcpv1alpha1.RuleRequireAudit}},
			},
		}
		Expect(k8sClient.Create(ctx, pol)).To(Succeed())

		Eventually(condition(bad, ConditionPolicyCompliant), timeout, interval).Should(haveStatusReason(metav1.ConditionFalse, ReasonPolicyViolations))
		msg := condition(bad, ConditionPolicyCompliant)().Message
		Expect(msg).To(ContainSubstring("2 violation(s)"))
		Expect(msg).To(ContainSubstring(label + "/maxReplicas spec.replicas: 3 replicas exceed the maximum of 2"))
		Expect(msg).To(ContainSubstring(label + "/requireAudit spec.audit.disabled"))
		Eventually(condition(good, ConditionPolicyCompliant), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, ReasonPolicyCompliant))

		s := getServer(bad)
		Expect(s.Generation).To(Equal(generation), "the spec is never changed behind the user's back")
		Expect(*s.Spec.Replicas).To(BeEquivalentTo(3))
		Expect(s.Spec.Audit.Disabled).To(BeTrue())

		Eventually(func() mcpv1alpha1.MCPServerPolicyStatus { return getPolicy(pol).Status }, timeout, interval).Should(Equal(mcpv1alpha1.MCPServerPolicyStatus{
			ObservedGeneration: 1, MatchedServers: 2, ViolatingServers: 1, Violating: []string{ns + "/bad"},
		}))
	})

	It("keeps zero writes while nothing changes with a policy in place", func() {
		Eventually(func() bool {
			w := reconciler.Writes()
			time.Sleep(time.Second)
			return w == reconciler.Writes()
		}, timeout, interval).Should(BeTrue())
		writes := reconciler.Writes()
		reconciles := reconciler.Reconciles()
		Expect(k8sClient.Patch(ctx, getServer(bad), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"test/nudge":"1"}}}`)))).To(Succeed())
		Eventually(reconciler.Reconciles, timeout, interval).Should(BeNumerically(">", reconciles))
		Consistently(reconciler.Writes, time.Second, 200*time.Millisecond).Should(Equal(writes))
	})

	It("honours a waiver the policy permits and lists it", func() {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"audit sidecar ships logs; ticket SEC-7"}}}`, mcpv1alpha1.WaiverAnnotationPrefix+"requireAudit")
		Expect(k8sClient.Patch(ctx, getServer(bad), client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
		Eventually(func() string { return condition(bad, ConditionPolicyCompliant)().Message }, timeout, interval).
			Should(And(HavePrefix("1 violation(s)"), ContainSubstring("waived: "+label+"/requireAudit (audit sidecar ships logs; ticket SEC-7)")))
		Expect(condition(bad, ConditionPolicyCompliant)().Message).NotTo(ContainSubstring("spec.audit.disabled"))

		update(getServer(bad), func(s *mcpv1alpha1.MCPServer) { s.Spec.Replicas = ptr.To[int32](2) })
		Eventually(condition(bad, ConditionPolicyCompliant), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, ReasonPolicyCompliant))
		Eventually(func() mcpv1alpha1.MCPServerPolicyStatus { return getPolicy(pol).Status }, timeout, interval).Should(Equal(mcpv1alpha1.MCPServerPolicyStatus{
			ObservedGeneration: 1, MatchedServers: 2, ViolatingServers: 0, WaivedServers: 1,
		}))
	})

	It("follows namespace labels and removes the condition when no policy selects the server", func() {
		update(getNamespace(ns), func(n *corev1.Namespace) { n.Labels["guardrails"] = "elsewhere" })
		Eventually(condition(bad, ConditionPolicyCompliant), timeout, interval).Should(BeNil())
		Eventually(func() int32 { return getPolicy(pol).Status.MatchedServers }, timeout, interval).Should(BeZero())

		update(getNamespace(ns), func(n *corev1.Namespace) { n.Labels["guardrails"] = label })
		Eventually(condition(good, ConditionPolicyCompliant), timeout, interval).ShouldNot(BeNil())

		Expect(k8sClient.Delete(ctx, pol)).To(Succeed())
		Eventually(condition(good, ConditionPolicyCompliant), timeout, interval).Should(BeNil())
		Eventually(func() bool {
			return meta.FindStatusCondition(getServer(bad).Status.Conditions, ConditionPolicyCompliant) == nil
		}, timeout, interval).Should(BeTrue())
	})
})

func getPolicy(p *mcpv1alpha1.MCPServerPolicy) *mcpv1alpha1.MCPServerPolicy {
	out := &mcpv1alpha1.MCPServerPolicy{}
	Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), out)).To(Succeed())
	return out
}

func getNamespace(name string) *corev1.Namespace {
	out := &corev1.Namespace{}
	Expect(k8sClient.Get(ctx, types.NamespacedName{Name: name}, out)).To(Succeed())
	return out
}
