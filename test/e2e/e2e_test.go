//go:build e2e

package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
	"github.com/mcpfleet/mcp-fleet-operator/test/conformance/fixture"
)

const (
	appOrigin     = "https://app.example.com"
	foreignOrigin = "https://evil.example.net"
)

var _ = Describe("the stdio sample applied with kubectl", Ordered, func() {
	s := server{NS: "e2e-sample", Name: "everything-stdio"}
	dumpLogsOnFailure(s)

	BeforeAll(func(ctx SpecContext) {
		createNamespace(s.NS)
		out, err := exec.CommandContext(ctx, kubectlBin, "apply", "--server-side", "-n", s.NS,
			"-f", filepath.Join(moduleRoot(), "config", "samples", "mcp_v1alpha1_mcpserver_stdio.yaml")).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "kubectl apply: %s", out)
	})

	It("becomes Ready with its pods Running", func(ctx SpecContext) {
		obj := s.waitReady(ctx)
		pods := s.runningPods(ctx, int(*obj.Spec.Replicas))
		for _, p := range pods {
			for _, c := range p.Spec.Containers {
				Expect(c.SecurityContext.ReadOnlyRootFilesystem).To(Equal(ptr.To(true)), "container %s", c.Name)
			}
			Expect(p.Spec.SecurityContext.RunAsNonRoot).To(Equal(ptr.To(true)))
		}
		Expect(obj.Status.URL).To(Equal(fmt.Sprintf("https://%s.%s.svc.cluster.local:8443/mcp", s.Name, s.NS)))
	})

	It("serves the official Go SDK client over TLS verified with the cert-manager CA and the Service host name", func(ctx SpecContext) {
		sess := s.connect(ctx, s.token("e2e-go-sdk"), nil)
		list, err := sess.ListTools(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, t := range list.Tools {
			names = append(names, t.Name)
		}
		Expect(names).To(ContainElement("test_simple_text"))
		Expect(names).NotTo(ContainElement(HavePrefix("test_error_")), "spec.tools.deny hides tools")
		res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text", Arguments: map[string]any{}})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.IsError).To(BeFalse())
		Expect(res.Content[0].(*mcp.TextContent).Text).To(ContainSubstring("simple text"))

		By("refusing the certificate for any other host name")
		cfg := s.tlsConfig(ctx)
		cfg.ServerName = "not-this-server.example.com"
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DialContext: dialService}}
		_, err = hc.Get(s.url(ctx))
		Expect(err).To(MatchError(ContainSubstring("certificate is valid for")))
	})

	It("answers a call without a token with 401 and the protected-resource metadata", func(ctx SpecContext) {
		resp, _ := s.post(ctx, "", "")
		Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
		challenge := resp.Header.Get("WWW-Authenticate")
		Expect(challenge).To(HavePrefix("Bearer "))
		Expect(challenge).To(ContainSubstring(`resource_metadata="`))
		metaURL := strings.SplitN(strings.SplitN(challenge, `resource_metadata="`, 2)[1], `"`, 2)[0]

		r, err := s.httpClient(ctx).Get(metaURL)
		Expect(err).NotTo(HaveOccurred())
		defer func() { _ = r.Body.Close() }()
		Expect(r.StatusCode).To(Equal(http.StatusOK))
		var doc map[string]any
		Expect(json.NewDecoder(r.Body).Decode(&doc)).To(Succeed())
		Expect(doc).To(HaveKeyWithValue("resource", s.url(ctx)))
	})

	It("refuses a foreign Origin with 403 and serves the allowed one", func(ctx SpecContext) {
		tok := s.token("e2e-origin")
		resp, _ := s.post(ctx, tok, foreignOrigin)
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
		resp, body := s.post(ctx, tok, appOrigin)
		Expect(resp.StatusCode).To(Equal(http.StatusOK), body)
	})

	It("works with the example client command `make demo` prints", func(ctx SpecContext) {
		u := s.url(ctx)
		addHostsEntry(ctx, strings.Split(strings.TrimPrefix(u, "https://"), ":")[0])
		caFile := filepath.Join(GinkgoT().TempDir(), "ca.crt")
		Expect(os.WriteFile(caFile, s.caPEM(ctx), 0o600)).To(Succeed())
		cmd := exec.CommandContext(ctx, "go", "run", "./examples/client", "-url", u, "-ca", caFile, "-token", s.token("e2e-example"))
		cmd.Dir = moduleRoot()
		out, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "%s", out)
		GinkgoWriter.Printf("examples/client: %s", out)
		Expect(string(out)).To(ContainSubstring("tools/call test_simple_text: isError=false"))
	})

	It("deletes every child with the MCPServer (the cluster's garbage collector)", func(ctx SpecContext) {
		obj := s.get(ctx)
		Expect(k8s.Delete(ctx, obj)).To(Succeed())
		children := []client.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: resources.DeploymentName(obj)}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: resources.ServiceName(obj)}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: obj.Name}},
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: resources.ConfigMapName(obj)}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: resources.AuthSecretName(obj)}},
			&cmv1.Certificate{ObjectMeta: metav1.ObjectMeta{Name: resources.CertificateName(obj)}},
			&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: obj.Name}},
			&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: obj.Name}},
		}
		for _, c := range children {
			Eventually(func() bool {
				err := k8s.Get(ctx, client.ObjectKey{Namespace: s.NS, Name: c.GetName()}, c)
				return apierrors.IsNotFound(err)
			}).WithContext(ctx).Should(BeTrue(), "%T %s still exists", c, c.GetName())
		}
		Eventually(func() []corev1.Pod {
			var list corev1.PodList
			Expect(k8s.List(ctx, &list, client.InNamespace(s.NS))).To(Succeed())
			return list.Items
		}).WithContext(ctx).Should(BeEmpty(), "pods outlived their MCPServer")
	})
})

var _ = Describe("a browser-facing WebSocket server", Ordered, func() {
	s := server{NS: "e2e-ws", Name: "browser"}
	var pageOrigins browserOrigins
	dumpLogsOnFailure(s)

	BeforeAll(func(ctx SpecContext) {
		createNamespace(s.NS)
		pageOrigins = reserveBrowserOrigins()
		obj := &mcpv1alpha1.MCPServer{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.NS, Name: s.Name},
			Spec: mcpv1alpha1.MCPServerSpec{
				Image:     upstreamImage,
				Transport: "stdio",
				Command:   []string{"/everything-server"},
				Replicas:  ptr.To[int32](1),
				Endpoint: mcpv1alpha1.EndpointSpec{
					Transports: []mcpv1alpha1.EndpointTransport{"streamable-http", "websocket"},
				},
				Origins: mcpv1alpha1.OriginsSpec{
					Allowed: []mcpv1alpha1.Origin{appOrigin, mcpv1alpha1.Origin(pageOrigins.Allowed)},
				},
				RateLimit: mcpv1alpha1.RateLimitSpec{RequestsPerSecond: 5, Burst: ptr.To[int32](5)},
			},
		}
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		s.waitReady(ctx)
		s.runningPods(ctx, 1)
	})

	It("refuses a foreign Origin on the WebSocket upgrade before upgrading", func(ctx SpecContext) {
		tok := s.token("e2e-upgrade")
		Expect(s.upgrade(ctx, tok, foreignOrigin, "")).To(Equal(http.StatusForbidden))
		Expect(s.upgrade(ctx, tok, appOrigin, "")).To(Equal(http.StatusSwitchingProtocols))
	})

	It("answers a burst beyond the rate limit with 429 and Retry-After", func(ctx SpecContext) {
		tok := s.token("e2e-burst")
		var mu sync.Mutex
		codes := map[int]int{}
		retryAfter := ""
		var wg sync.WaitGroup
		for range 30 {
			wg.Go(func() {
				defer GinkgoRecover()
				resp, _ := s.post(ctx, tok, "")
				mu.Lock()
				defer mu.Unlock()
				codes[resp.StatusCode]++
				if resp.StatusCode == http.StatusTooManyRequests {
					retryAfter = resp.Header.Get("Retry-After")
				}
			})
		}
		wg.Wait()
		GinkgoWriter.Printf("burst of 30 at 5 rps (burst 5): %v\n", codes)
		Expect(codes[http.StatusTooManyRequests]).To(BeNumerically(">=", 20))
		Expect(codes[http.StatusOK]).To(BeNumerically(">=", 5))
		Expect(len(codes)).To(Equal(2), "only 200 and 429: %v", codes)
		secs, err := strconv.Atoi(retryAfter)
		Expect(err).NotTo(HaveOccurred(), "Retry-After %q", retryAfter)
		Expect(secs).To(BeNumerically(">=", 1))
	})

	It("serves the TypeScript SDK's WebSocket client with a ticket once, and refuses the replay", func(ctx SpecContext) {
		u := s.url(ctx)
		host := strings.Split(strings.TrimPrefix(u, "https://"), ":")[0]
		addHostsEntry(ctx, host)
		caFile := filepath.Join(GinkgoT().TempDir(), "ca.crt")
		Expect(os.WriteFile(caFile, s.caPEM(ctx), 0o600)).To(Succeed())
		node := fixture.Node(GinkgoT(), filepath.Join(moduleRoot(), "test", "wsclient"))
		wsURL := "wss://" + strings.TrimPrefix(u, "https://")

		ticket := s.ticket(ctx, s.token("e2e-ws-ticket"), appOrigin)
		run := func() (map[string]any, error) {
			cctx, cancel := context.WithTimeout(ctx, 40*time.Second)
			defer cancel()
			cmd := node.Command(cctx, []string{"NODE_EXTRA_CA_CERTS=" + caFile, "MCP_ORIGIN=" + appOrigin},
				"client.mjs", wsURL+"?ticket="+ticket, "test_simple_text")
			out, err := cmd.Output()
			var res map[string]any
			Expect(json.Unmarshal(out, &res)).To(Succeed(), "client.mjs printed %q", out)
			GinkgoWriter.Printf("client.mjs: %s", out)
			return res, err
		}
		res, err := run()
		Expect(err).NotTo(HaveOccurred())
		Expect(res["ok"]).To(BeTrue())
		Expect(fmt.Sprint(res["result"])).To(ContainSubstring("simple text"))

		res, err = run()
		Expect(err).To(HaveOccurred(), "a replayed ticket must be refused")
		Expect(res["ok"]).To(BeFalse())
	})

	It("lets a page from the allowed Origin use it in a real browser, and refuses a page from another", func(ctx SpecContext) {
		runBrowserCheck(ctx, s, pageOrigins)
	})

	It("survives the upstream process being killed: in-flight calls get errors, not hangs", func(ctx SpecContext) {
		pod := s.runningPods(ctx, 1)[0]
		pids := upstreamPIDs(string(pod.UID))
		Expect(pids).To(HaveLen(1), "one everything-server process in pod %s", pod.Name)

		release := make(chan struct{})
		defer close(release)
		held := make(chan struct{}, 1)
		// 2025-11-25: elicitation is a server-to-client request over the session's stream, so
		// the call stays in flight inside the upstream until the handler answers. This spec
		// runs before any 2026-07-28 request reaches this server: those get a second stdio
		// process (docs/runtime.md, "Protocol revisions on a stdio server"), and until then
		// the pod has exactly one.
		sess := s.connectVersion(ctx, s.token("e2e-kill"), &mcp.ClientOptions{
			ElicitationHandler: func(ectx context.Context, _ *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				held <- struct{}{}
				select { // hold the call in flight until the upstream dies
				case <-release:
				case <-ectx.Done():
				}
				return nil, errors.New("released")
			},
		}, "2025-11-25")
		callErr := make(chan error, 1)
		go func() {
			res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "test_elicitation", Arguments: map[string]any{"message": "hold"}})
			if err == nil {
				b, _ := json.Marshal(res)
				err = fmt.Errorf("the call completed: %s", b)
			}
			callErr <- err
		}()
		select {
		case <-held:
		case err := <-callErr:
			Fail(fmt.Sprintf("the call did not stay in flight: %v", err))
		case <-time.After(20 * time.Second):
			Fail("the elicitation never reached the client")
		}

		By(fmt.Sprintf("killing the everything-server process %d inside pod %s", pids[0], pod.Name))
		killed := time.Now()
		Expect(syscall.Kill(pids[0], syscall.SIGKILL)).To(Succeed())
		var err error
		Eventually(callErr).WithTimeout(5*time.Second).Should(Receive(&err), "the in-flight call hangs")
		Expect(err).To(HaveOccurred())
		GinkgoWriter.Printf("in-flight call failed %s after the kill: %v\n", time.Since(killed).Round(time.Millisecond), err)

		By("serving again once the runtime restarted its upstream")
		Eventually(func(g Gomega) {
			// Session era again: a 2026-07-28 client would start the second process.
			fresh := s.connectVersion(ctx, s.token("e2e-kill-after"), nil, "2025-11-25")
			res, err := fresh.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text", Arguments: map[string]any{}})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(res.IsError).To(BeFalse())
		}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
		GinkgoWriter.Printf("serving again %s after the kill\n", time.Since(killed).Round(time.Millisecond))
		after := upstreamPIDs(string(pod.UID))
		Expect(after).To(HaveLen(1))
		Expect(after[0]).NotTo(Equal(pids[0]))
		now := s.runningPods(ctx, 1)[0]
		Expect(now.UID).To(Equal(pod.UID))
		for _, c := range now.Status.ContainerStatuses {
			Expect(c.RestartCount).To(BeZero(), "container %s restarted: the runtime should restart its child itself", c.Name)
		}
	})

	It("picks up a renewed certificate without a restart and without failing in-flight requests", func(ctx SpecContext) {
		podsBefore := s.runningPods(ctx, 1)
		before, err := s.servedSerial(ctx)
		Expect(err).NotTo(HaveOccurred())

		sess := s.connect(ctx, s.token("e2e-renewal"), nil)
		var calls, failures atomic.Int64
		var lastErr atomic.Value
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text", Arguments: map[string]any{}})
				calls.Add(1)
				if err != nil {
					failures.Add(1)
					lastErr.Store(err.Error())
				}
				time.Sleep(200 * time.Millisecond) // under the 5 rps limit
			}
		}()

		By("triggering a renewal as `cmctl renew` does: the Issuing condition")
		var cert cmv1.Certificate
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: s.NS, Name: resources.CertificateName(s.get(ctx))}, &cert)).To(Succeed())
		patch := client.MergeFrom(cert.DeepCopy())
		cert.Status.Conditions = append(cert.Status.Conditions, cmv1.CertificateCondition{
			Type: cmv1.CertificateConditionIssuing, Status: cmmeta.ConditionTrue,
			Reason: "ManuallyTriggered", Message: "renewal triggered by the e2e suite",
			LastTransitionTime: &metav1.Time{Time: time.Now()},
		})
		Expect(k8s.Status().Patch(ctx, &cert, patch)).To(Succeed())

		start := time.Now()
		var after *big.Int
		Eventually(func(g Gomega) {
			after, err = s.servedSerial(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(after.Cmp(before)).NotTo(BeZero(), "still serving serial %s", before)
		}).WithContext(ctx).WithTimeout(4 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		GinkgoWriter.Printf("renewed certificate served %s after the trigger (serial %s -> %s)\n",
			time.Since(start).Round(time.Second), before, after)
		close(stop)
		<-done

		Expect(failures.Load()).To(BeZero(), "in-flight calls failed during the renewal (last: %v)", lastErr.Load())
		Expect(calls.Load()).To(BeNumerically(">", 5))
		podsAfter := s.runningPods(ctx, 1)
		Expect(podsAfter[0].UID).To(Equal(podsBefore[0].UID), "the pod was replaced")
		for _, c := range podsAfter[0].Status.ContainerStatuses {
			Expect(c.RestartCount).To(BeZero(), "container %s restarted", c.Name)
		}
	})

	It("rolls the pod when spec.origins changes and enforces the new list", func(ctx SpecContext) {
		old := s.runningPods(ctx, 1)[0]
		const newOrigin = "https://new.example.com"
		obj := s.get(ctx)
		patch := client.MergeFrom(obj.DeepCopy())
		obj.Spec.Origins.Allowed = []mcpv1alpha1.Origin{newOrigin}
		Expect(k8s.Patch(ctx, obj, patch)).To(Succeed())
		s.waitReady(ctx)
		Eventually(func(g Gomega) {
			pods := s.pods(ctx)
			g.Expect(pods).To(HaveLen(1))
			g.Expect(pods[0].UID).NotTo(Equal(old.UID))
			g.Expect(pods[0].Status.Phase).To(Equal(corev1.PodRunning))
			for _, c := range pods[0].Status.ContainerStatuses {
				g.Expect(c.Ready).To(BeTrue())
			}
		}).WithContext(ctx).WithTimeout(4 * time.Minute).Should(Succeed())
		tok := s.token("e2e-rollout")
		Eventually(func(g Gomega) {
			resp, body := s.post(ctx, tok, newOrigin)
			g.Expect(resp.StatusCode).To(Equal(http.StatusOK), body)
		}).WithContext(ctx).Should(Succeed())
		resp, _ := s.post(ctx, tok, appOrigin)
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden), "the old origin is no longer allowed")
	})
})

var _ = Describe("fleet policy at admission", Ordered, func() {
	const ns = "e2e-policy"
	policy := &mcpv1alpha1.MCPServerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "e2e-require-auth"}}

	BeforeAll(func(ctx SpecContext) {
		createNamespace(ns)
		policy.Spec = mcpv1alpha1.MCPServerPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			EnforcementAction: "Deny",
			Rules:             mcpv1alpha1.PolicyRules{RequireAuth: true},
		}
		Expect(k8s.Create(ctx, policy)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { _ = k8s.Delete(ctx, policy) })
	})

	It("refuses a server that turns auth off, naming the policy, and admits a compliant one", func(ctx SpecContext) {
		anon := &mcpv1alpha1.MCPServer{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "anonymous"},
			Spec: mcpv1alpha1.MCPServerSpec{
				Image: upstreamImage, Transport: "stdio", Command: []string{"/everything-server"},
				Auth: mcpv1alpha1.AuthSpec{InsecureAnonymous: true},
			},
		}
		// The webhook's CA comes from cert-manager's cainjector: allow it a moment after install.
		Eventually(func(g Gomega) {
			err := k8s.Create(ctx, anon.DeepCopy(), client.DryRunAll)
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).To(ContainSubstring("e2e-require-auth"))
			g.Expect(err.Error()).To(ContainSubstring("insecureAnonymous"))
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())

		ok := anon.DeepCopy()
		ok.Name = "authenticated"
		ok.Spec.Auth = mcpv1alpha1.AuthSpec{}
		Expect(k8s.Create(ctx, ok, client.DryRunAll)).To(Succeed())
	})
})

// upstreamPIDs finds, from the node's own /proc, the everything-server processes of a pod
// (kubelet's cgroupfs driver puts each pod under a cgroup named pod<UID>).
func upstreamPIDs(podUID string) []int {
	var pids []int
	entries, err := os.ReadDir("/proc")
	Expect(err).NotTo(HaveOccurred())
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.HasPrefix(string(cmdline), "/everything-server") {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil {
			continue
		}
		if strings.Contains(string(cg), "pod"+podUID) || strings.Contains(string(cg), "pod"+strings.ReplaceAll(podUID, "-", "_")) {
			pids = append(pids, pid)
		}
	}
	return pids
}
