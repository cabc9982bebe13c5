//go:build e2e

package e2e_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
)

var listAll = metav1.ListOptions{}

// createNamespace makes a fresh namespace for one scenario group and deletes it afterwards.
func createNamespace(name string) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	// A namespace of an earlier run may still be terminating: wait until it is gone.
	Eventually(func() error {
		return k8s.Create(context.Background(), ns.DeepCopy())
	}).WithTimeout(3*time.Minute).Should(Succeed(), "creating namespace %s", name)
	DeferCleanup(func(ctx SpecContext) {
		_ = k8s.Delete(ctx, ns)
	})
}

// server is one MCPServer under test and the means to reach it from the host.
type server struct {
	NS, Name string
}

func (s server) key() client.ObjectKey { return client.ObjectKey{Namespace: s.NS, Name: s.Name} }

func (s server) get(ctx context.Context) *mcpv1alpha1.MCPServer {
	var obj mcpv1alpha1.MCPServer
	ExpectWithOffset(1, k8s.Get(ctx, s.key(), &obj)).To(Succeed())
	return &obj
}

// waitReady waits for Ready=True at the current generation and returns the server.
func (s server) waitReady(ctx context.Context) *mcpv1alpha1.MCPServer {
	var obj mcpv1alpha1.MCPServer
	EventuallyWithOffset(1, func(g Gomega) {
		g.Expect(k8s.Get(ctx, s.key(), &obj)).To(Succeed())
		c := meta.FindStatusCondition(obj.Status.Conditions, "Ready")
		g.Expect(c).NotTo(BeNil(), "no Ready condition yet: %+v", obj.Status.Conditions)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "Ready: %s %s", c.Reason, c.Message)
		g.Expect(obj.Status.ObservedGeneration).To(Equal(obj.Generation))
	}).WithContext(ctx).WithTimeout(4 * time.Minute).Should(Succeed())
	s.waitReachable(ctx, obj.Status.URL)
	return &obj
}

// waitReachable waits until the Service behind endpoint accepts connections from the host.
// Ready says the pods are ready; kube-proxy programs the Service's new endpoints a moment
// later (its iptables sync is rate-limited), and a client connecting in between is refused.
func (s server) waitReachable(ctx context.Context, endpoint string) {
	u, err := url.Parse(endpoint)
	ExpectWithOffset(2, err).NotTo(HaveOccurred())
	start := time.Now()
	EventuallyWithOffset(2, func() error {
		c, err := dialService(ctx, "tcp", u.Host)
		if err == nil {
			_ = c.Close()
		}
		return err
	}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(100 * time.Millisecond).Should(Succeed())
	GinkgoWriter.Printf("%s reachable through its Service %s after Ready\n", endpoint, time.Since(start).Round(time.Millisecond))
}

// pods lists the server's pods.
func (s server) pods(ctx context.Context) []corev1.Pod {
	var obj mcpv1alpha1.MCPServer
	ExpectWithOffset(1, k8s.Get(ctx, s.key(), &obj)).To(Succeed())
	var list corev1.PodList
	ExpectWithOffset(1, k8s.List(ctx, &list, client.InNamespace(s.NS),
		client.MatchingLabelsSelector{Selector: labels.SelectorFromSet(resources.SelectorLabels(&obj))})).To(Succeed())
	return list.Items
}

// runningPods waits until exactly n pods run with every container ready and returns them.
func (s server) runningPods(ctx context.Context, n int) []corev1.Pod {
	var out []corev1.Pod
	EventuallyWithOffset(1, func(g Gomega) {
		out = out[:0]
		for _, p := range s.pods(ctx) {
			if p.DeletionTimestamp != nil {
				continue
			}
			g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), "pod %s", p.Name)
			for _, cs := range p.Status.ContainerStatuses {
				g.Expect(cs.Ready).To(BeTrue(), "pod %s container %s not ready", p.Name, cs.Name)
			}
			out = append(out, p)
		}
		g.Expect(out).To(HaveLen(n))
	}).WithContext(ctx).WithTimeout(4 * time.Minute).Should(Succeed())
	return out
}

// url is the server's Streamable HTTP endpoint as published in status.
func (s server) url(ctx context.Context) string {
	u := s.get(ctx).Status.URL
	ExpectWithOffset(1, u).To(HavePrefix("https://"))
	return u
}

// caPool is the CA that issued the server's certificate, from the cert-manager Secret.
func (s server) caPEM(ctx context.Context) []byte {
	var sec corev1.Secret
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Namespace: s.NS, Name: resources.TLSSecretName(s.get(ctx))}, &sec)).To(Succeed())
	ExpectWithOffset(1, sec.Data).To(HaveKey("ca.crt"))
	return sec.Data["ca.crt"]
}

func (s server) tlsConfig(ctx context.Context) *tls.Config {
	pool := x509.NewCertPool()
	ExpectWithOffset(1, pool.AppendCertsFromPEM(s.caPEM(ctx))).To(BeTrue())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// token mints a short-lived token with the CLI a user would run.
func (s server) token(subject string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, runtimeBin, "token", "--server", s.Name, "-n", s.NS, "--ttl", "10m", "--subject", subject)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "mcp-runtime token: %s", stderr.String())
	tok := strings.TrimSpace(string(out))
	ExpectWithOffset(1, strings.Count(tok, ".")).To(Equal(2), "a JWT on stdout")
	return tok
}

// serviceIP resolves NAME.NS.svc[.cluster.local] to the Service's ClusterIP, as cluster DNS
// would for a pod; the host has no cluster DNS.
func serviceIP(ctx context.Context, host string) (string, error) {
	parts := strings.Split(host, ".")
	if len(parts) < 3 || parts[2] != "svc" {
		return "", fmt.Errorf("%s is not a Service name (NAME.NAMESPACE.svc[.cluster.local])", host)
	}
	var svc corev1.Service
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: parts[1], Name: parts[0]}, &svc); err != nil {
		return "", err
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return "", fmt.Errorf("service %s/%s has no ClusterIP", parts[1], parts[0])
	}
	return svc.Spec.ClusterIP, nil
}

// dialService dials Service host names at their ClusterIP (kube-proxy routes it from the host).
func dialService(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip, err := serviceIP(ctx, host)
	if err != nil {
		return nil, err
	}
	return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, net.JoinHostPort(ip, port))
}

// httpClient trusts only the server's CA and verifies its Service host name.
func (s server) httpClient(ctx context.Context) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: s.tlsConfig(ctx), DialContext: dialService, MaxIdleConnsPerHost: 16,
	}}
}

// headers adds fixed headers (Authorization, Origin) to every request of an SDK client.
type headers struct {
	set  map[string]string
	base http.RoundTripper
}

func (h headers) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.set {
		r.Header.Set(k, v)
	}
	return h.base.RoundTrip(r)
}

// connect opens an official Go SDK client session over Streamable HTTP with a token, in
// the SDK's newest protocol version.
func (s server) connect(ctx context.Context, token string, opts *mcp.ClientOptions) *mcp.ClientSession {
	return s.connectVersion(ctx, token, opts, "")
}

// connectVersion is connect in a given protocol version ("" = the SDK's newest).
func (s server) connectVersion(ctx context.Context, token string, opts *mcp.ClientOptions, version string) *mcp.ClientSession {
	hc := s.httpClient(ctx)
	hc.Timeout = 0 // streams are long-lived
	hc.Transport = headers{set: map[string]string{"Authorization": "Bearer " + token}, base: hc.Transport}
	c := mcp.NewClient(&mcp.Implementation{Name: "mcp-fleet-e2e", Version: "1"}, opts)
	sess, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.url(ctx), HTTPClient: hc},
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = sess.Close() })
	return sess
}

// initializeBody is a JSON-RPC initialize request, for raw HTTP probes.
const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e-probe","version":"1"}}}`

// post sends one raw initialize POST with optional token and Origin and returns the response
// (body read and closed).
func (s server) post(ctx context.Context, token, origin string) (*http.Response, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url(ctx), strings.NewReader(initializeBody))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := s.httpClient(ctx).Do(req)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp, string(b)
}

// upgrade tries a WebSocket upgrade on the endpoint with the given Origin and returns the
// HTTP status the server answered (101 on success).
func (s server) upgrade(ctx context.Context, token, origin, query string) int {
	u := s.url(ctx) + query
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", "mcp")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	// HTTP/1.1 only: an upgrade cannot ride HTTP/2.
	tr := &http.Transport{TLSClientConfig: s.tlsConfig(ctx), DialContext: dialService, ForceAttemptHTTP2: false,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	resp, err := (&http.Client{Timeout: 15 * time.Second, Transport: tr}).Do(req)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	return resp.StatusCode
}

// ticket trades a token for a single-use WebSocket ticket, as a page from origin would.
func (s server) ticket(ctx context.Context, token, origin string) string {
	u, err := url.Parse(s.url(ctx))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	u.Path, u.RawQuery = "/auth/ticket", ""
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Origin", origin)
	resp, err := s.httpClient(ctx).Do(req)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	var out struct {
		Ticket string `json:"ticket"`
	}
	ExpectWithOffset(1, resp.StatusCode).To(Equal(http.StatusOK))
	ExpectWithOffset(1, json.NewDecoder(resp.Body).Decode(&out)).To(Succeed())
	ExpectWithOffset(1, out.Ticket).NotTo(BeEmpty())
	return out.Ticket
}

// servedSerial is the serial number of the certificate a fresh TLS handshake presents,
// verified against the server's CA and host name.
func (s server) servedSerial(ctx context.Context) (*big.Int, error) {
	u, err := url.Parse(s.url(ctx))
	if err != nil {
		return nil, err
	}
	raw, err := dialService(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	cfg := s.tlsConfig(ctx)
	cfg.ServerName = u.Hostname()
	conn := tls.Client(raw, cfg)
	defer func() { _ = conn.Close() }()
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		return nil, err
	}
	return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// --- /etc/hosts: Node clients resolve Service names through it (no cluster DNS on the host).

const hostsMarker = "# mcp-fleet-operator e2e"

var hostsMu sync.Mutex

// addHostsEntry maps host to its ClusterIP in /etc/hosts until the suite ends (hack/demo.sh
// down also removes every marked line, should the suite be killed).
func addHostsEntry(ctx context.Context, host string) {
	hostsMu.Lock()
	defer hostsMu.Unlock()
	ip, err := serviceIP(ctx, host)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	b, err := os.ReadFile("/etc/hosts")
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	line := fmt.Sprintf("%s %s %s", ip, host, hostsMarker)
	if bytes.Contains(b, []byte(line)) {
		return
	}
	f, err := os.OpenFile("/etc/hosts", os.O_APPEND|os.O_WRONLY, 0)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer func() { _ = f.Close() }()
	_, err = fmt.Fprintln(f, line)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
}

func removeHostsEntries() {
	hostsMu.Lock()
	defer hostsMu.Unlock()
	b, err := os.ReadFile("/etc/hosts")
	if err != nil {
		return
	}
	var keep []string
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if !strings.Contains(l, hostsMarker) {
			keep = append(keep, l)
		}
	}
	// Rewrite in place: /etc/hosts may be a bind mount that cannot be replaced by rename.
	_ = os.WriteFile("/etc/hosts", []byte(strings.Join(keep, "")), 0o644)
}

// dumpLogsOnFailure prints the last lines of every container of the server's pods after a
// failed spec, so a CI log says what the runtime saw.
func dumpLogsOnFailure(s server) {
	JustAfterEach(func(ctx SpecContext) {
		if !CurrentSpecReport().Failed() {
			return
		}
		var list corev1.PodList
		if err := k8s.List(ctx, &list, client.InNamespace(s.NS)); err != nil {
			GinkgoWriter.Printf("listing pods for their logs: %v\n", err)
			return
		}
		for _, p := range list.Items {
			for _, c := range p.Spec.Containers {
				b, err := clientset.CoreV1().Pods(s.NS).GetLogs(p.Name, &corev1.PodLogOptions{
					Container: c.Name, TailLines: ptr.To[int64](200),
				}).DoRaw(ctx)
				GinkgoWriter.Printf("=== logs of %s/%s container %s (err=%v):\n%s\n", s.NS, p.Name, c.Name, err, b)
			}
		}
	})
}
