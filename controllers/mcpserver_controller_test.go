package controllers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

const (
	timeout  = 20 * time.Second
	interval = 100 * time.Millisecond
)

func newNamespace(labels map[string]string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "mcp-test-", Labels: labels}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func stdioServer(ns, name string) *mcpv1alpha1.MCPServer {
	return &mcpv1alpha1.MCPServer{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: mcpv1alpha1.MCPServerSpec{
			Image:   "ghcr.io/example/everything-server:v1.8.0",
			Command: []string{"/everything-server"},
			Origins: mcpv1alpha1.OriginsSpec{Allowed: []mcpv1alpha1.Origin{"https://app.example.com"}},
		},
	}
}

func getServer(s *mcpv1alpha1.MCPServer) *mcpv1alpha1.MCPServer {
	out := &mcpv1alpha1.MCPServer{}
	Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), out)).To(Succeed())
	return out
}

func condition(s *mcpv1alpha1.MCPServer, t string) func() *metav1.Condition {
	return func() *metav1.Condition {
		return meta.FindStatusCondition(getServer(s).Status.Conditions, t)
	}
}

func haveStatusReason(st metav1.ConditionStatus, reason string) OmegaMatcher {
	return And(Not(BeNil()), WithTransform(func(c *metav1.Condition) string { return string(c.Status) + "/" + c.Reason }, Equal(string(st)+"/"+reason)))
}

func child(s *mcpv1alpha1.MCPServer, name string, obj client.Object) client.Object {
	Eventually(func() error { return k8sClient.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: name}, obj) }, timeout, interval).Should(Succeed())
	return obj
}

// makeReady plays the parts of cert-manager and the Deployment controller, which do not
// run in envtest: the Certificate is issued and every replica is available.
func makeReady(s *mcpv1alpha1.MCPServer) {
	cert := child(s, s.Name, &cmv1.Certificate{}).(*cmv1.Certificate)
	notAfter := metav1.NewTime(time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second))
	updateStatus(cert, func(c *cmv1.Certificate) {
		c.Status = cmv1.CertificateStatus{
			NotAfter:   &notAfter,
			Conditions: []cmv1.CertificateCondition{{Type: cmv1.CertificateConditionReady, Status: cmmeta.ConditionTrue, Reason: "Ready", ObservedGeneration: c.Generation}},
		}
	})
	updateStatus(child(s, s.Name, &appsv1.Deployment{}).(*appsv1.Deployment), func(d *appsv1.Deployment) {
		n := *d.Spec.Replicas
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
	})
}

// conflictBackoff retries a test's read-modify-write for up to ~2.5 s.
var conflictBackoff = wait.Backoff{Steps: 8, Duration: 10 * time.Millisecond, Factor: 2, Jitter: 0.1}

// update changes obj in the API server: it reads obj again, applies change and writes it,
// and does it again on a conflict, because the reconciler writes the same objects at the
// same time (server-side apply, status), so a single read-modify-write can lose the race.
func update[T client.Object](obj T, change func(T)) {
	GinkgoHelper()
	readModifyWrite(obj, change, func(o client.Object) error { return k8sClient.Update(ctx, o) })
}

// updateStatus is update for the status subresource.
func updateStatus[T client.Object](obj T, change func(T)) {
	GinkgoHelper()
	readModifyWrite(obj, change, func(o client.Object) error { return k8sClient.Status().Update(ctx, o) })
}

func readModifyWrite[T client.Object](obj T, change func(T), write func(client.Object) error) {
	GinkgoHelper()
	Expect(retry.RetryOnConflict(conflictBackoff, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change(obj)
		return write(obj)
	})).To(Succeed())
}

var _ = Describe("MCPServer reconciler", Ordered, func() {
	var ns string
	var srv *mcpv1alpha1.MCPServer

	BeforeAll(func() {
		ns = newNamespace(nil)
		srv = stdioServer(ns, "everything")
	})

	It("stalls with a clear condition while cert-manager is not installed, without polling", func() {
		Expect(k8sClient.Create(ctx, srv)).To(Succeed())
		Eventually(condition(srv, ConditionStalled), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "CertManagerNotInstalled"))
		c := condition(srv, ConditionReady)()
		Expect(c.Status).To(Equal(metav1.ConditionFalse))
		Expect(c.Message).To(ContainSubstring("install cert-manager"))
		Expect(condition(srv, ConditionReconciling)()).To(BeNil(), "Reconciling is present only while true")

		writes := reconciler.Writes()
		Consistently(reconciler.Writes, 3*time.Second, 250*time.Millisecond).Should(Equal(writes), "a missing dependency must be watched, not polled")
	})

	It("resumes by itself when cert-manager's CRDs are installed", func() {
		installCertManagerCRDs()
		child(srv, srv.Name, &cmv1.Certificate{})
		Eventually(condition(srv, ConditionStalled), timeout, interval).Should(BeNil())
		Eventually(condition(srv, ConditionReconciling), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "WaitingForCertificate"))
	})

	It("creates every child as specified", func() {
		s := getServer(srv)
		owned := func(o client.Object) {
			refs := o.GetOwnerReferences()
			Expect(refs).To(HaveLen(1))
			Expect(refs[0].UID).To(Equal(s.UID))
			Expect(*refs[0].Controller).To(BeTrue())
			Expect(o.GetLabels()).To(HaveKeyWithValue(resources.LabelManagedBy, resources.ManagedBy))
		}

		sa := child(s, s.Name, &corev1.ServiceAccount{}).(*corev1.ServiceAccount)
		owned(sa)
		Expect(*sa.AutomountServiceAccountToken).To(BeFalse())

		cm := child(s, s.Name+"-runtime", &corev1.ConfigMap{}).(*corev1.ConfigMap)
		owned(cm)
		rc, err := config.Parse([]byte(cm.Data[config.FileName]))
		Expect(err).NotTo(HaveOccurred(), "the runtime must accept the rendered config")
		Expect(rc.Origins.Allowed).To(Equal([]string{"https://app.example.com"}))
		Expect(rc.Auth.JWT).To(HaveLen(1))
		Expect(rc.Auth.JWT[0].Audiences).To(Equal([]string{"https://everything." + ns + ".svc.cluster.local:8443/mcp"}))
		Expect(cm.Data[config.FileName]).NotTo(ContainSubstring("PRIVATE KEY"))

		secret := child(s, s.Name+"-auth", &corev1.Secret{}).(*corev1.Secret)
		owned(secret)
		Expect(secret.Data).To(HaveKey(resources.AuthKeyPrivate))
		Expect(secret.Data).To(HaveKey(resources.AuthKeyPublic))
		Expect(secret.Data).To(HaveKey(resources.AuthKeyTicketKey))

		cert := child(s, s.Name, &cmv1.Certificate{}).(*cmv1.Certificate)
		owned(cert)
		Expect(cert.Spec.DNSNames).To(ContainElements("everything", "everything."+ns+".svc", "everything."+ns+".svc.cluster.local"))
		Expect(cert.Spec.IssuerRef.Name).To(Equal("mcp-fleet-ca"))
		Expect(cert.Spec.PrivateKey.Algorithm).To(Equal(cmv1.ECDSAKeyAlgorithm))
		Expect(cert.Spec.Usages).To(ContainElement(cmv1.UsageServerAuth))
		Expect(cert.Spec.SecretName).To(Equal("everything-tls"))

		svc := child(s, s.Name, &corev1.Service{}).(*corev1.Service)
		owned(svc)
		Expect(svc.Spec.Ports).To(HaveLen(2))
		Expect(svc.Spec.Ports[0].Port).To(Equal(int32(8443)))

		np := child(s, s.Name, &networkingv1.NetworkPolicy{}).(*networkingv1.NetworkPolicy)
		owned(np)
		Expect(np.Spec.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
		Expect(np.Spec.Ingress[0].Ports).To(HaveLen(1))
		Expect(np.Spec.Ingress[0].Ports[0].Port.String()).To(Equal(resources.PortNameMCP))
		Expect(np.Spec.Ingress[0].From[0].PodSelector).NotTo(BeNil(), "default ingress peers: the same namespace")
		Expect(np.Spec.Ingress[1].From[0].NamespaceSelector.MatchLabels).To(HaveKeyWithValue("kubernetes.io/metadata.name", "monitoring"))

		dep := child(s, s.Name, &appsv1.Deployment{}).(*appsv1.Deployment)
		owned(dep)
		Expect(admits(np, dep.Spec.Template, 8443)).To(BeTrue(), "the endpoint port")
		pod := dep.Spec.Template.Spec
		Expect(*pod.AutomountServiceAccountToken).To(BeFalse())
		Expect(*pod.SecurityContext.RunAsNonRoot).To(BeTrue())
		Expect(pod.InitContainers).To(HaveLen(1))
		Expect(pod.InitContainers[0].Image).To(Equal(testOpts.RuntimeImage))
		Expect(pod.Containers).To(HaveLen(1))
		Expect(pod.Containers[0].Command).To(Equal([]string{"/opt/mcp-runtime/mcp-runtime", "serve", "--config", "/etc/mcp-runtime/config/runtime.yaml", "--", "/everything-server"}))
		Expect(*pod.Containers[0].SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
		Expect(dep.Spec.Template.Annotations).To(HaveKey(resources.AnnotationConfigHash))

		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), &policyv1.PodDisruptionBudget{})).To(Satisfy(apierrors.IsNotFound), "no PDB for one replica")
	})

	It("performs zero writes while nothing changes", func() {
		Eventually(func() bool {
			w := reconciler.Writes()
			time.Sleep(time.Second)
			return w == reconciler.Writes()
		}, timeout, interval).Should(BeTrue(), "writes settle after convergence")
		writes := reconciler.Writes()
		for i := range 5 {
			reconciles := reconciler.Reconciles()
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"test/nudge":"%d"}}}`, i)
			Expect(k8sClient.Patch(ctx, getServer(srv), client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
			Eventually(reconciler.Reconciles, timeout, interval).Should(BeNumerically(">", reconciles))
		}
		Consistently(reconciler.Writes, 2*time.Second, 200*time.Millisecond).Should(Equal(writes))
	})

	It("rolls the pods when the spec changes and never regenerates auth keys", func() {
		dep := child(srv, srv.Name, &appsv1.Deployment{}).(*appsv1.Deployment)
		before := dep.Spec.Template.Annotations[resources.AnnotationConfigHash]
		keys := child(srv, srv.Name+"-auth", &corev1.Secret{}).(*corev1.Secret).Data

		update(getServer(srv), func(s *mcpv1alpha1.MCPServer) {
			s.Spec.Origins.Allowed = append(s.Spec.Origins.Allowed, "https://other.example.com")
		})
		Eventually(func() string {
			d := &appsv1.Deployment{}
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(srv), d)).To(Succeed())
			return d.Spec.Template.Annotations[resources.AnnotationConfigHash]
		}, timeout, interval).ShouldNot(Equal(before))
		Expect(child(srv, srv.Name+"-auth", &corev1.Secret{}).(*corev1.Secret).Data).To(Equal(keys))
	})

	It("restores an edited child and recreates a deleted one", func() {
		svc := child(srv, srv.Name, &corev1.Service{}).(*corev1.Service)
		update(svc, func(s *corev1.Service) { s.Spec.Selector[resources.LabelInstance] = "hijacked" })
		Eventually(func() string {
			s := &corev1.Service{}
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(svc), s)).To(Succeed())
			return s.Spec.Selector[resources.LabelInstance]
		}, timeout, interval).Should(Equal(srv.Name))

		np := child(srv, srv.Name, &networkingv1.NetworkPolicy{}).(*networkingv1.NetworkPolicy)
		Expect(k8sClient.Delete(ctx, np)).To(Succeed())
		Eventually(func() types.UID {
			n := &networkingv1.NetworkPolicy{}
			if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(np), n); err != nil {
				return ""
			}
			return n.UID
		}, timeout, interval).ShouldNot(Or(BeEmpty(), Equal(np.UID)))

		secret := child(srv, srv.Name+"-auth", &corev1.Secret{}).(*corev1.Secret)
		keys := secret.Data
		update(secret, func(s *corev1.Secret) { s.Data = map[string][]byte{"unrelated": []byte("x")} })
		Eventually(func() map[string][]byte {
			s := &corev1.Secret{}
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(secret), s)).To(Succeed())
			return s.Data
		}, timeout, interval).Should(HaveKey(resources.AuthKeyPublic))
		By("a wiped key is generated anew only because it was gone; the others are kept")
		s := &corev1.Secret{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(secret), s)).To(Succeed())
		Expect(s.Data[resources.AuthKeyPublic]).NotTo(Equal(keys[resources.AuthKeyPublic]))
	})

	It("becomes Ready, which kstatus computes as Current, with an event", func() {
		makeReady(srv)
		Eventually(condition(srv, ConditionReady), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "Serving"))
		s := getServer(srv)
		Expect(s.Status.ObservedGeneration).To(Equal(s.Generation))
		Expect(s.Status.URL).To(Equal("https://everything." + ns + ".svc.cluster.local:8443/mcp"))
		Expect(s.Status.ReadyReplicas).To(Equal(int32(1)))
		Expect(s.Status.Selector).To(ContainSubstring("app.kubernetes.io/instance=everything"))
		Expect(s.Status.CertificateNotAfter).NotTo(BeNil())
		Expect(meta.FindStatusCondition(s.Status.Conditions, ConditionReconciling)).To(BeNil())
		Expect(meta.FindStatusCondition(s.Status.Conditions, ConditionStalled)).To(BeNil())

		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(s)
		Expect(err).NotTo(HaveOccurred())
		res, err := status.Compute(&unstructured.Unstructured{Object: u})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Status).To(Equal(status.CurrentStatus), res.Message)

		Eventually(func() []string {
			list := &eventsv1.EventList{}
			Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			var reasons []string
			for _, e := range list.Items {
				if e.Regarding.Name == srv.Name {
					reasons = append(reasons, e.Reason)
				}
			}
			return reasons
		}, timeout, interval).Should(ContainElement("Serving"))
	})

	It("reports Stalled, which kstatus computes as Failed, while the Deployment is past its progress deadline", func() {
		s := stdioServer(ns, "stuck")
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		makeReady(s)
		Eventually(condition(s, ConditionReady), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "Serving"))

		By("the new pods never become available (say, an image that does not exist)")
		dep := child(s, "stuck", &appsv1.Deployment{}).(*appsv1.Deployment)
		updateStatus(dep, func(d *appsv1.Deployment) {
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, UnavailableReplicas: 1,
				Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
					Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "stuck-5d4f" has timed out progressing.`}}}
		})
		Eventually(condition(s, ConditionStalled), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "ProgressDeadlineExceeded"))
		got := getServer(s)
		Expect(meta.FindStatusCondition(got.Status.Conditions, ConditionReconciling)).To(BeNil(), "it will not settle by itself")
		Expect(meta.FindStatusCondition(got.Status.Conditions, ConditionReady).Message).To(ContainSubstring("has timed out progressing"))
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(got)
		Expect(err).NotTo(HaveOccurred())
		res, err := status.Compute(&unstructured.Unstructured{Object: u})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Status).To(Equal(status.FailedStatus), res.Message)

		By("pods that become available after all clear it")
		makeReady(s)
		Eventually(condition(s, ConditionReady), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "Serving"))
		Expect(condition(s, ConditionStalled)()).To(BeNil())
	})

	It("scales through the scale subresource and adds a PodDisruptionBudget above one replica", func() {
		scale := &autoscalingv1.Scale{}
		Expect(k8sClient.SubResource("scale").Get(ctx, getServer(srv), scale)).To(Succeed())
		Expect(scale.Spec.Replicas).To(Equal(int32(1)))
		Expect(scale.Status.Selector).To(ContainSubstring("app.kubernetes.io/instance=everything"))

		update(getServer(srv), func(s *mcpv1alpha1.MCPServer) { s.Spec.Replicas = ptr.To[int32](2) })
		child(srv, srv.Name, &policyv1.PodDisruptionBudget{})
		update(getServer(srv), func(s *mcpv1alpha1.MCPServer) { s.Spec.Replicas = ptr.To[int32](1) })
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(srv), &policyv1.PodDisruptionBudget{}))
		}, timeout, interval).Should(BeTrue())
	})

	It("shows explicitly insecure options in status", func() {
		s := stdioServer(ns, "open")
		s.Spec.Auth.InsecureAnonymous = true
		s.Spec.TLS.InsecureDisabled = true
		s.Spec.Origins.AllowedHosts = []string{"*"} // no Host check against DNS rebinding
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		Eventually(func() []string { return getServer(s).Status.InsecureOptions }, timeout, interval).
			Should(ConsistOf("tls.insecureDisabled", "auth.insecureAnonymous", "origins.allowedHosts: *"))
		Expect(getServer(s).Status.URL).To(HavePrefix("http://"))
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "open-auth"}, &corev1.Secret{})).To(Satisfy(apierrors.IsNotFound))
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "open"}, &cmv1.Certificate{})).To(Satisfy(apierrors.IsNotFound))
	})

	It("keeps the auth Secret until no pod needs it when authentication is turned off", func() {
		s := stdioServer(ns, "retire")
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		secret := child(s, "retire-auth", &corev1.Secret{}).(*corev1.Secret)
		keys := secret.Data
		makeReady(s)
		Eventually(condition(s, ConditionReady), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "Serving"))

		By("a spec that stalls before the Deployment step leaves the Secret the pods mount")
		update(s, func(s *mcpv1alpha1.MCPServer) {
			s.Spec.Auth.InsecureAnonymous = true
			s.Spec.Endpoint.PublicURL = "https://mcp example.com/mcp"
		})
		Eventually(condition(s, ConditionStalled), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "InvalidRuntimeConfig"))
		Consistently(func() error { return k8sClient.Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{}) }, 2*time.Second, 200*time.Millisecond).Should(Succeed())

		By("a valid one rolls out first; the Secret goes once every replica runs without it")
		update(s, func(s *mcpv1alpha1.MCPServer) { s.Spec.Endpoint.PublicURL = "" })
		dep := &appsv1.Deployment{}
		Eventually(func() bool {
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), dep)).To(Succeed())
			return mountsSecret(dep, "retire-auth")
		}, timeout, interval).Should(BeFalse())
		Consistently(func() error { return k8sClient.Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{}) }, 2*time.Second, 200*time.Millisecond).Should(Succeed(), "the rollout has not finished")
		makeReady(s)
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{}))
		}, timeout, interval).Should(BeTrue())
		Expect(keys).NotTo(BeEmpty())
	})

	It("owns the Secret cert-manager issued and deletes it once TLS is off and no pod mounts it", func() {
		s := stdioServer(ns, "tlsoff")
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		cert := child(s, "tlsoff", &cmv1.Certificate{}).(*cmv1.Certificate)

		By("cert-manager issues the Secret with the Certificate's secretTemplate labels and no owner")
		issued := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cert.Spec.SecretName, Labels: cert.Spec.SecretTemplate.Labels},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": []byte("crt"), "tls.key": []byte("key")},
		}
		Expect(k8sClient.Create(ctx, issued)).To(Succeed())
		makeReady(s)
		Eventually(condition(s, ConditionReady), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "Serving"))
		uid := getServer(s).UID
		Eventually(func() []metav1.OwnerReference {
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(issued), issued)).To(Succeed())
			return issued.OwnerReferences
		}, timeout, interval).Should(ContainElement(And(
			HaveField("UID", uid), HaveField("Kind", "MCPServer"), HaveField("Controller", HaveValue(BeFalse())))),
			"the garbage collector must delete the private key with the server")
		Expect(issued.Data).To(HaveKey("tls.key"), "cert-manager's data is left alone")

		By("turning TLS off keeps the Secret until every replica runs without it, then deletes it")
		update(s, func(s *mcpv1alpha1.MCPServer) { s.Spec.TLS.InsecureDisabled = true })
		dep := &appsv1.Deployment{}
		Eventually(func() bool {
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), dep)).To(Succeed())
			return mountsSecret(dep, issued.Name)
		}, timeout, interval).Should(BeFalse())
		Consistently(func() error { return k8sClient.Get(ctx, client.ObjectKeyFromObject(issued), &corev1.Secret{}) }, 2*time.Second, 200*time.Millisecond).Should(Succeed(), "the rollout has not finished")
		updateStatus(dep, func(d *appsv1.Deployment) {
			n := *d.Spec.Replicas
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
		})
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(issued), &corev1.Secret{}))
		}, timeout, interval).Should(BeTrue(), "the issued Secret outlived TLS")
	})

	It("leaves the running pods' ConfigMap alone while a later child is refused", func() {
		s := stdioServer(ns, "partial")
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		cm := child(s, "partial-runtime", &corev1.ConfigMap{}).(*corev1.ConfigMap)
		makeReady(s)
		Eventually(condition(s, ConditionReady), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "Serving"))
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(cm), cm)).To(Succeed())
		running := cm.Data[config.FileName]

		By("a spec whose NetworkPolicy the API server refuses, with a config change")
		update(s, func(s *mcpv1alpha1.MCPServer) {
			s.Spec.Tools.Deny = []string{"delete_*"}
			s.Spec.NetworkPolicy.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/33"}}}}}
		})
		Eventually(condition(s, ConditionStalled), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "ApplyRejected"))
		// A pod of the old template restarting now would read a config its template was not made for.
		Consistently(func() string {
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(cm), cm)).To(Succeed())
			return cm.Data[config.FileName]
		}, 2*time.Second, 200*time.Millisecond).Should(Equal(running), "the ConfigMap changed though the Deployment did not")

		By("once the spec is fixed, config and template change together")
		update(s, func(s *mcpv1alpha1.MCPServer) { s.Spec.NetworkPolicy.Egress = nil })
		Eventually(func() string {
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(cm), cm)).To(Succeed())
			return cm.Data[config.FileName]
		}, timeout, interval).Should(ContainSubstring("delete_*"))
	})

	It("keeps the pods of the old template reachable while a new endpoint port rolls out", func() {
		s := stdioServer(ns, "moveport")
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		makeReady(s)
		Eventually(condition(s, ConditionReady), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "Serving"))
		old := child(s, "moveport", &appsv1.Deployment{}).(*appsv1.Deployment).Spec.Template

		update(s, func(s *mcpv1alpha1.MCPServer) { s.Spec.Endpoint.Port, s.Spec.Metrics.Port = 9443, 9091 })
		dep := &appsv1.Deployment{}
		Eventually(func() int32 {
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), dep)).To(Succeed())
			return containerPort(dep.Spec.Template, resources.PortNameMCP)
		}, timeout, interval).Should(Equal(int32(9443)))
		np := &networkingv1.NetworkPolicy{}
		Eventually(func() bool {
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), np)).To(Succeed())
			return admits(np, dep.Spec.Template, 9443)
		}, timeout, interval).Should(BeTrue(), "the new pods' endpoint")
		// The old pods serve until the rollout replaces them (and for good if it never does).
		Expect(admits(np, old, 8443)).To(BeTrue(), "the NetworkPolicy cut off the running pods' endpoint port")
		Expect(admits(np, old, 9090)).To(BeTrue(), "the NetworkPolicy cut off the running pods' metrics port")
	})

	It("reports the running Deployment while a spec stalls before reaching it", func() {
		s := stdioServer(ns, "stalled-early")
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		makeReady(s)
		Eventually(condition(s, ConditionReady), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "Serving"))

		update(s, func(s *mcpv1alpha1.MCPServer) { s.Spec.Endpoint.PublicURL = "https://mcp example.com/mcp" })
		Eventually(condition(s, ConditionStalled), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "InvalidRuntimeConfig"))
		got := getServer(s)
		Expect(got.Status.ReadyReplicas).To(Equal(int32(1)), "the pods of the last good spec still serve")
		Expect(meta.FindStatusCondition(got.Status.Conditions, ConditionAvailable)).To(haveStatusReason(metav1.ConditionTrue, "Available"))
	})

	It("never takes over an object of the same name it did not create", func() {
		// A namespace's own default-deny NetworkPolicy and Service, named like a server.
		deny := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default-deny"},
			Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}},
		}
		Expect(k8sClient.Create(ctx, deny)).To(Succeed())
		web := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}},
		}
		Expect(k8sClient.Create(ctx, web)).To(Succeed())

		for _, tc := range []struct {
			name, kind string
			obj        client.Object
		}{{"default-deny", "NetworkPolicy", &networkingv1.NetworkPolicy{}}, {"web", "Service", &corev1.Service{}}} {
			s := stdioServer(ns, tc.name)
			Expect(k8sClient.Create(ctx, s)).To(Succeed())
			Eventually(condition(s, ConditionStalled), timeout, interval).Should(haveStatusReason(metav1.ConditionTrue, "ChildConflict"))
			Expect(condition(s, ConditionStalled)().Message).To(And(
				ContainSubstring(tc.kind+` "`+tc.name+`" already exists and was not created by this MCPServer`),
				ContainSubstring("rename the MCPServer")))
			Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: tc.name}, tc.obj)).To(Succeed())
			Expect(tc.obj.GetOwnerReferences()).To(BeEmpty(), "%s %s was not adopted", tc.kind, tc.name)
			Expect(tc.obj.GetLabels()).NotTo(HaveKey(resources.LabelManagedBy))
		}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(deny), deny)).To(Succeed())
		Expect(deny.Spec.PodSelector.MatchLabels).To(BeEmpty(), "default-deny still selects every pod")
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(web), web)).To(Succeed())
		Expect(web.Spec.Selector).To(Equal(map[string]string{"app": "web"}))
		Expect(web.Spec.Ports).To(HaveLen(1))
	})

	It("renders a pod template that Pod Security 'restricted' admits", func() {
		restricted := newNamespace(map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
		for _, transport := range []mcpv1alpha1.Transport{mcpv1alpha1.TransportStdio, mcpv1alpha1.TransportHTTP} {
			s := stdioServer(restricted, "psa-"+string(transport))
			s.Spec.Transport = transport
			if transport == mcpv1alpha1.TransportHTTP {
				s.Spec.Command = nil
				s.Spec.Upstream = &mcpv1alpha1.UpstreamSpec{Port: 8080}
			}
			Expect(k8sClient.Create(ctx, s)).To(Succeed())
			dep := child(s, s.Name, &appsv1.Deployment{}).(*appsv1.Deployment)
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: restricted, GenerateName: "psa-", Labels: dep.Spec.Template.Labels},
				Spec:       dep.Spec.Template.Spec,
			}
			pod.Spec.ServiceAccountName = "default"
			Expect(k8sClient.Create(ctx, pod, client.DryRunAll)).To(Succeed(), "transport %s", transport)

			By("the same namespace refuses a variant that keeps capabilities, so the check is real")
			bad := pod.DeepCopy()
			bad.Spec.Containers[0].SecurityContext.Capabilities = nil
			err := k8sClient.Create(ctx, bad, client.DryRunAll)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring("violates PodSecurity \"restricted"))
		}
	})

	It("writes every child with only the permissions of config/rbac/role.yaml", func() {
		var role rbacv1.ClusterRole
		data, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml.Unmarshal(data, &role)).To(Succeed())
		const user = "manager-rbac-under-test"
		role.ObjectMeta = metav1.ObjectMeta{Name: user}
		Expect(k8sClient.Create(ctx, &role)).To(Succeed())
		Expect(k8sClient.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: user},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
		})).To(Succeed())
		au, err := testEnv.AddUser(envtest.User{Name: user}, nil)
		Expect(err).NotTo(HaveOccurred())
		as, err := client.New(au.Config(), client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())

		// Children that do not exist yet, so that each apply sets its owner reference.
		s := getServer(srv)
		s.Name = "rbac-probe"
		cm, err := resources.ConfigMap(s, testOpts)
		Expect(err).NotTo(HaveOccurred())
		for _, obj := range []runtime.ApplyConfiguration{resources.ServiceAccount(s), cm, resources.Service(s), resources.Certificate(s, testOpts)} {
			// The API server authorises with a delay after the binding; the first apply may race it.
			Eventually(func() error {
				return as.Apply(ctx, obj, client.FieldOwner(resources.FieldOwner), client.ForceOwnership, client.DryRunAll)
			}, timeout, interval).Should(Succeed(), "%T", obj)
		}
	})

	It("lets the real garbage collector delete every child with the server", func() {
		startControllerManager()
		s := getServer(srv)
		kids := []client.Object{&corev1.ServiceAccount{}, &corev1.ConfigMap{}, &corev1.Secret{}, &corev1.Service{}, &networkingv1.NetworkPolicy{}, &appsv1.Deployment{}, &cmv1.Certificate{}}
		names := []string{s.Name, s.Name + "-runtime", s.Name + "-auth", s.Name, s.Name, s.Name, s.Name}
		Expect(k8sClient.Delete(ctx, s)).To(Succeed())
		for i, k := range kids {
			Eventually(func() bool {
				return apierrors.IsNotFound(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: names[i]}, k))
			}, 60*time.Second, 250*time.Millisecond).Should(BeTrue(), "%T %s", k, names[i])
		}
	})

	It("documents every field for kubectl explain", func() {
		user, err := testEnv.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
		Expect(err).NotTo(HaveOccurred())
		kc, err := user.KubeConfig()
		Expect(err).NotTo(HaveOccurred())
		path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
		Expect(os.WriteFile(path, kc, 0o600)).To(Succeed())
		out, err := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), "--kubeconfig", path, "explain", "mcpserver.spec").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		GinkgoWriter.Printf("kubectl explain mcpserver.spec:\n%s\n", out)
		for _, field := range []string{"origins", "auth", "tls", "rateLimit", "networkPolicy", "transport", "Transport the server speaks"} {
			Expect(string(out)).To(ContainSubstring(field))
		}
		out, err = exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), "--kubeconfig", path, "explain", "mcps.spec.auth.webSocket.tickets").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring("single-use ticket"))
	})
})

// containerPort is the number of the named port in the pod template (0 when none).
func containerPort(tpl corev1.PodTemplateSpec, name string) int32 {
	for _, c := range tpl.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return p.ContainerPort
			}
		}
	}
	return 0
}

// admits reports whether an ingress rule of np opens TCP port on a pod of the template,
// resolving named ports the way a CNI does.
func admits(np *networkingv1.NetworkPolicy, tpl corev1.PodTemplateSpec, port int32) bool {
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			switch {
			case p.Port == nil:
				return true
			case p.Port.Type == intstr.Int && p.Port.IntVal == port:
				return true
			case p.Port.Type == intstr.String && containerPort(tpl, p.Port.StrVal) == port:
				return true
			}
		}
	}
	return false
}
