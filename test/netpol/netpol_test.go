// Package netpol checks what the generated NetworkPolicies mean, not how they are
// written: the policy built by internal/resources for an MCPServer is handed to an
// independent NetworkPolicy analyzer (cyclonus's matcher, the engine of its
// "analyze"/probe simulation) together with a simulated cluster, and every
// who → whom:port answer is compared with what the spec says must be open.
// No CNI runs here; this is the semantic check a real cluster would give.
package netpol

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
)

var update = flag.Bool("update", false, "rewrite testdata/truth-tables.txt from the analyzer's answers")

const (
	serverNamespace = "mcp"
	serverName      = "search"
	kubeDNS         = "kube-system/kube-dns"
)

// probe is a destination port and protocol.
type probe struct {
	port  int32
	proto corev1.Protocol
}

func tcp(port int32) probe { return probe{port, corev1.ProtocolTCP} }
func udp(port int32) probe { return probe{port, corev1.ProtocolUDP} }

func (p probe) String() string { return fmt.Sprintf("%d/%s", p.port, p.proto) }

// peer is one simulated endpoint: a pod (namespace set) or an address outside the pod network.
type peer struct {
	name     string
	ip       string
	ns       string
	nsLabels map[string]string
	labels   map[string]string
	// portNames are the named container ports of the pod (the server's), as a CNI resolves them.
	portNames map[int32]string
	server    bool // a pod of the MCPServer under test: its policy selects it
}

func (p peer) traffic() *matcher.TrafficPeer {
	tp := &matcher.TrafficPeer{IP: p.ip}
	if p.ns != "" {
		tp.Internal = &matcher.InternalPeer{Namespace: p.ns, NamespaceLabels: p.nsLabels, PodLabels: p.labels}
	}
	return tp
}

func nsLabels(ns string, extra ...string) map[string]string {
	l := map[string]string{corev1.LabelMetadataName: ns} // set by the API server on every namespace
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return l
}

func pod(ns, name, ip string, nsl, labels map[string]string) peer {
	return peer{name: ns + "/" + name, ip: ip, ns: ns, nsLabels: nsl, labels: labels}
}

func outside(name, ip string) peer { return peer{name: name + " " + ip, ip: ip} }

// world is the simulated cluster around one server: its pod, a second replica and
// everything else that might try to reach it or that it might try to reach. The
// server's labels and named ports come from the Deployment the operator builds.
// Addresses are data for the analyzer only: nothing is sent anywhere.
func world(t *testing.T, s *mcpv1alpha1.MCPServer, o resources.Options) (server peer, others []peer) {
	t.Helper()
	ac, err := resources.Deployment(s, o, "hash")
	if err != nil {
		t.Fatalf("Deployment: %v", err)
	}
	dep := typed[appsv1.Deployment](t, ac)
	portNames := map[int32]string{}
	for _, c := range dep.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			portNames[p.ContainerPort] = p.Name
		}
	}
	mcp := nsLabels(serverNamespace)
	server = pod(serverNamespace, serverName, "10.244.1.10", mcp, dep.Spec.Template.Labels)
	server.portNames, server.server = portNames, true
	replica := pod(serverNamespace, serverName+"-2", "10.244.1.12", mcp, dep.Spec.Template.Labels)
	replica.portNames, replica.server = portNames, true

	otherServer := &mcpv1alpha1.MCPServer{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: serverNamespace}}
	frontend := nsLabels("frontend", "team", "web")
	other := nsLabels("other")
	kubeSystem := nsLabels("kube-system")
	others = []peer{
		replica,
		pod(serverNamespace, "client", "10.244.1.11", mcp, map[string]string{"app": "client"}),
		pod(serverNamespace, "agent", "10.244.1.13", mcp, map[string]string{"app": "agent"}),
		pod(serverNamespace, "other-mcp-server", "10.244.1.14", mcp, resources.Labels(otherServer)),
		pod("frontend", "web", "10.244.2.10", frontend, map[string]string{"app": "web"}),
		pod("frontend", "batch", "10.244.2.11", frontend, map[string]string{"app": "batch"}),
		pod("other", "random", "10.244.3.10", other, map[string]string{"app": "random"}),
		pod("other", "fake-dns", "10.244.3.11", other, map[string]string{"k8s-app": "kube-dns"}),
		pod("monitoring", "prometheus", "10.244.4.10", nsLabels("monitoring"), map[string]string{"app.kubernetes.io/name": "prometheus"}),
		pod("kube-system", "kube-dns", "10.244.0.10", kubeSystem, map[string]string{"k8s-app": "kube-dns"}),
		pod("kube-system", "metrics-server", "10.244.0.11", kubeSystem, map[string]string{"k8s-app": "metrics-server"}),
		pod("backend", "db", "10.244.5.10", nsLabels("backend"), map[string]string{"app": "db"}),
		outside("apiserver", "192.0.2.1"), // host network: only an ipBlock can name it
		outside("internet", "203.0.113.10"),
		outside("internet", "203.0.113.200"),
		outside("internet", "198.51.100.7"),
	}
	return server, others
}

// scenario is an MCPServer spec and, written independently of the builder, what its
// NetworkPolicy must allow. Everything else must be denied.
type scenario struct {
	name    string
	spec    string // YAML of .spec
	options resources.Options

	endpointPort, metricsPort, upstreamPort int32 // upstreamPort 0: stdio
	endpointFrom                            []string
	metricsFrom                             []string
	egressTo                                map[string][]probe // besides DNS to kube-dns, always allowed
}

var sameNamespace = []string{"mcp/search-2", "mcp/client", "mcp/agent", "mcp/other-mcp-server"}

var monitoring = resources.Options{RuntimeImage: "ghcr.io/mcpfleet/mcp-runtime:v0.1.0", MonitoringNamespace: "monitoring"}

var scenarios = []scenario{{
	name:         "stdio-default",
	spec:         `{image: ghcr.io/example/fs-mcp:1.0.0, transport: stdio, command: [/server]}`,
	options:      resources.Options{RuntimeImage: "ghcr.io/mcpfleet/mcp-runtime:v0.1.0"},
	endpointPort: 8443, metricsPort: 9090,
	endpointFrom: sameNamespace,
}, {
	name:         "stdio-default-monitoring",
	spec:         `{image: ghcr.io/example/fs-mcp:1.0.0, transport: stdio, command: [/server]}`,
	options:      monitoring,
	endpointPort: 8443, metricsPort: 9090,
	endpointFrom: sameNamespace,
	metricsFrom:  []string{"monitoring/prometheus"},
}, {
	name: "http-namespace-selector",
	spec: `{image: ghcr.io/example/search-mcp:2.1.0, transport: http, upstream: {port: 8080},
	        networkPolicy: {ingress: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: frontend}}}]}}`,
	options:      monitoring,
	endpointPort: 8443, metricsPort: 9090, upstreamPort: 8080,
	endpointFrom: []string{"frontend/web", "frontend/batch"},
	metricsFrom:  []string{"monitoring/prometheus"},
}, {
	name: "http-namespace-and-pod-selector",
	spec: `{image: ghcr.io/example/search-mcp:2.1.0, transport: http, upstream: {port: 8080},
	        networkPolicy: {ingress: [{namespaceSelector: {matchLabels: {team: web}}, podSelector: {matchLabels: {app: web}}}]}}`,
	options:      monitoring,
	endpointPort: 8443, metricsPort: 9090, upstreamPort: 8080,
	endpointFrom: []string{"frontend/web"},
	metricsFrom:  []string{"monitoring/prometheus"},
}, {
	name: "pod-selector",
	spec: `{image: ghcr.io/example/fs-mcp:1.0.0, transport: stdio, command: [/server],
	        networkPolicy: {ingress: [{podSelector: {matchLabels: {app: agent}}}]}}`,
	options:      monitoring,
	endpointPort: 8443, metricsPort: 9090,
	endpointFrom: []string{"mcp/agent"},
	metricsFrom:  []string{"monitoring/prometheus"},
}, {
	name: "ipblock",
	spec: `{image: ghcr.io/example/search-mcp:2.1.0, transport: http, upstream: {port: 8080},
	        networkPolicy: {ingress: [{ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.128/25]}}]}}`,
	options:      monitoring,
	endpointPort: 8443, metricsPort: 9090, upstreamPort: 8080,
	endpointFrom: []string{"internet 203.0.113.10"},
	metricsFrom:  []string{"monitoring/prometheus"},
}, {
	name: "extra-egress",
	spec: `{image: ghcr.io/example/search-mcp:2.1.0, transport: http, upstream: {port: 8080},
	        networkPolicy: {egress: [
	          {to: [{ipBlock: {cidr: 203.0.113.0/25}}], ports: [{protocol: TCP, port: 443}]},
	          {to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: backend}}, podSelector: {matchLabels: {app: db}}}],
	           ports: [{protocol: TCP, port: 5432}]}]}}`,
	options:      monitoring,
	endpointPort: 8443, metricsPort: 9090, upstreamPort: 8080,
	endpointFrom: sameNamespace,
	metricsFrom:  []string{"monitoring/prometheus"},
	egressTo: map[string][]probe{
		"internet 203.0.113.10": {tcp(443)},
		"backend/db":            {tcp(5432)},
	},
}, {
	name: "custom-ports",
	spec: `{image: ghcr.io/example/search-mcp:2.1.0, transport: http, upstream: {port: 8080},
	        endpoint: {port: 9443}, metrics: {port: 9100}}`,
	options:      monitoring,
	endpointPort: 9443, metricsPort: 9100, upstreamPort: 8080,
	endpointFrom: sameNamespace,
	metricsFrom:  []string{"monitoring/prometheus"},
}}

// ingressProbes are the ports tried into the server: its endpoint, metrics and upstream
// ports, plus the defaults of the first two so a custom port cannot leave them open.
func (sc scenario) ingressProbes() []probe {
	ps := []probe{tcp(sc.endpointPort), tcp(sc.metricsPort), tcp(8080)}
	for _, p := range []probe{tcp(8443), tcp(9090)} {
		if !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	return ps
}

// egressProbes are the ports tried out of the server.
var egressProbes = []probe{udp(53), tcp(53), tcp(443), tcp(5432), tcp(6443), tcp(8443)}

func (sc scenario) portLabel(p probe) string {
	switch {
	case p == tcp(sc.endpointPort):
		return p.String() + " endpoint"
	case p == tcp(sc.metricsPort):
		return p.String() + " metrics"
	case sc.upstreamPort != 0 && p == tcp(sc.upstreamPort):
		return p.String() + " upstream"
	}
	return p.String()
}

// expectIngress says whether the spec lets src reach a server pod on p.
func (sc scenario) expectIngress(src string, p probe) bool {
	return (p == tcp(sc.endpointPort) && slices.Contains(sc.endpointFrom, src)) ||
		(p == tcp(sc.metricsPort) && slices.Contains(sc.metricsFrom, src))
}

// expectEgress says whether the spec lets a server pod reach dst on p.
func (sc scenario) expectEgress(dst string, p probe) bool {
	return (dst == kubeDNS && p.port == 53) || slices.Contains(sc.egressTo[dst], p)
}

// expect combines both ends: traffic between two server pods needs the sender's egress too.
func (sc scenario) expect(src, dst peer, p probe) bool {
	return (!dst.server || sc.expectIngress(src.name, p)) && (!src.server || sc.expectEgress(dst.name, p))
}

// cell is one analyzer answer.
type cell struct {
	src, dst peer
	probe    probe
	allowed  bool
}

// analyze asks cyclonus, for every probe into and out of the server, whether the given
// policies let it through. It builds the analyzer's model both raw and simplified and
// fails the test if the two disagree.
func analyze(t *testing.T, sc scenario, server peer, others []peer, policies ...*networkingv1.NetworkPolicy) (ingress, egress []cell) {
	t.Helper()
	raw := matcher.BuildNetworkPolicies(false, policies)
	simplified := matcher.BuildNetworkPolicies(true, policies)
	ask := func(src, dst peer, p probe) cell {
		tr := &matcher.Traffic{
			Source:           src.traffic(),
			Destination:      dst.traffic(),
			ResolvedPort:     int(p.port),
			ResolvedPortName: dst.portNames[p.port],
			Protocol:         p.proto,
		}
		allowed := raw.IsTrafficAllowed(tr).IsAllowed()
		if s := simplified.IsTrafficAllowed(tr).IsAllowed(); s != allowed {
			t.Fatalf("analyzer disagrees with itself on %s → %s %s: raw %t, simplified %t", src.name, dst.name, p, allowed, s)
		}
		return cell{src, dst, p, allowed}
	}
	for _, src := range others {
		for _, p := range sc.ingressProbes() {
			ingress = append(ingress, ask(src, server, p))
		}
	}
	for _, dst := range others {
		for _, p := range egressProbes {
			egress = append(egress, ask(server, dst, p))
		}
	}
	return ingress, egress
}

// violations lists every answer that differs from what the spec allows.
func violations(sc scenario, cells ...[]cell) []string {
	var out []string
	for _, cs := range cells {
		for _, c := range cs {
			if want := sc.expect(c.src, c.dst, c.probe); c.allowed != want {
				verdict := "allowed, but the spec does not allow it"
				if want {
					verdict = "denied, but the spec allows it"
				}
				out = append(out, fmt.Sprintf("%s → %s %s: %s", c.src.name, c.dst.name, c.probe, verdict))
			}
		}
	}
	return out
}

// table renders the answers as a truth table: ingress rows are sources, egress rows
// destinations, columns ports.
func table(sc scenario, server peer, ingress, egress []cell) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "== %s\n", sc.name)
	fmt.Fprintf(&b, "spec: %s\n", strings.Join(strings.Fields(sc.spec), " "))
	if sc.options.MonitoringNamespace != "" {
		fmt.Fprintf(&b, "operator --monitoring-namespace=%s\n", sc.options.MonitoringNamespace)
	} else {
		fmt.Fprintf(&b, "operator without --monitoring-namespace\n")
	}
	grid := func(title string, probes []probe, label func(probe) string, cells []cell, row func(cell) string) {
		w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintf(w, "%s", title)
		for _, p := range probes {
			fmt.Fprintf(w, "\t%s", label(p))
		}
		fmt.Fprintln(w)
		for i := 0; i < len(cells); i += len(probes) {
			fmt.Fprintf(w, "  %s", row(cells[i]))
			for _, c := range cells[i : i+len(probes)] {
				v := "-"
				if c.allowed {
					v = "ALLOW"
				}
				fmt.Fprintf(w, "\t%s", v)
			}
			fmt.Fprintln(w)
		}
		_ = w.Flush() // writes to a bytes.Buffer
	}
	grid("ingress to "+server.name+" from", sc.ingressProbes(), sc.portLabel, ingress, func(c cell) string { return c.src.name })
	grid("egress from "+server.name+" to", egressProbes, probe.String, egress, func(c cell) string { return c.dst.name })
	return b.String()
}

// build renders the scenario's MCPServer and its NetworkPolicy with the operator's builder.
func build(t *testing.T, sc scenario) (*mcpv1alpha1.MCPServer, *networkingv1.NetworkPolicy) {
	t.Helper()
	s := &mcpv1alpha1.MCPServer{ObjectMeta: metav1.ObjectMeta{Name: serverName, Namespace: serverNamespace, UID: "4f9a7c2e-0000-4000-8000-000000000002"}}
	if err := yaml.UnmarshalStrict([]byte(sc.spec), &s.Spec); err != nil {
		t.Fatalf("scenario %s: spec: %v", sc.name, err)
	}
	np, err := resources.NetworkPolicy(s, sc.options)
	if err != nil {
		t.Fatalf("scenario %s: NetworkPolicy: %v", sc.name, err)
	}
	if np == nil {
		t.Fatalf("scenario %s: the builder made no NetworkPolicy", sc.name)
	}
	return s, typed[networkingv1.NetworkPolicy](t, np)
}

func TestNetworkPolicyTruthTables(t *testing.T) {
	var all strings.Builder
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			s, np := build(t, sc)
			server, others := world(t, s, sc.options)
			ingress, egress := analyze(t, sc, server, others, np)
			tbl := table(sc, server, ingress, egress)
			t.Log("\n" + tbl)
			all.WriteString(tbl + "\n")
			for _, v := range violations(sc, ingress, egress) {
				t.Error(v)
			}
		})
	}
	if t.Failed() {
		return
	}
	// The tables are also kept as a reviewed file: a change of meaning shows up as a diff.
	file := filepath.Join("testdata", "truth-tables.txt")
	got := []byte(all.String())
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reading %s: %v (create it with: go test ./test/netpol/ -update)", file, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the analyzer's answers; review, then refresh with go test ./test/netpol/ -update\n--- got:\n%s", file, got)
	}
}

// TestViolationsAreCaught opens the built policy in the ways a builder bug would and
// requires the check above to report each one: the truth-table check can fail.
func TestViolationsAreCaught(t *testing.T) {
	sc := scenarios[slices.IndexFunc(scenarios, func(sc scenario) bool { return sc.name == "http-namespace-selector" })]
	for _, m := range []struct {
		name   string
		mutate func(np *networkingv1.NetworkPolicy)
		caught string // one of the violations it must produce
	}{{
		name: "an extra rule allowing all ingress",
		mutate: func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{})
		},
		caught: "other/random → mcp/search 8080/TCP: allowed",
	}, {
		name:   "the endpoint rule without ports (opens the upstream port to the allowed peers)",
		mutate: func(np *networkingv1.NetworkPolicy) { np.Spec.Ingress[0].Ports = nil },
		caught: "frontend/web → mcp/search 8080/TCP: allowed",
	}, {
		name: "metrics from every namespace",
		mutate: func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[1].From[0].NamespaceSelector = &metav1.LabelSelector{}
		},
		caught: "other/random → mcp/search 9090/TCP: allowed",
	}, {
		name: "the endpoint peers widened to every pod of every namespace",
		mutate: func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}
		},
		caught: "other/random → mcp/search 8443/TCP: allowed",
	}, {
		name:   "DNS to any destination",
		mutate: func(np *networkingv1.NetworkPolicy) { np.Spec.Egress[0].To = nil },
		caught: "mcp/search → internet 198.51.100.7 53/UDP: allowed",
	}, {
		name: "DNS to kube-dns-labelled pods of any namespace",
		mutate: func(np *networkingv1.NetworkPolicy) {
			np.Spec.Egress[0].To[0].NamespaceSelector = &metav1.LabelSelector{}
		},
		caught: "mcp/search → other/fake-dns 53/UDP: allowed",
	}, {
		name: "no Egress policy type (egress unrestricted)",
		mutate: func(np *networkingv1.NetworkPolicy) {
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		},
		caught: "mcp/search → apiserver 192.0.2.1 6443/TCP: allowed",
	}, {
		name:   "DNS removed",
		mutate: func(np *networkingv1.NetworkPolicy) { np.Spec.Egress = np.Spec.Egress[1:] },
		caught: "mcp/search → kube-system/kube-dns 53/UDP: denied",
	}} {
		t.Run(m.name, func(t *testing.T) {
			s, np := build(t, sc)
			server, others := world(t, s, sc.options)
			if v := violations(sc, both(analyze(t, sc, server, others, np))...); len(v) != 0 {
				t.Fatalf("the unmutated policy must pass first: %v", v)
			}
			m.mutate(np)
			v := violations(sc, both(analyze(t, sc, server, others, np))...)
			if !slices.ContainsFunc(v, func(s string) bool { return strings.HasPrefix(s, m.caught) }) {
				t.Fatalf("mutation not caught: want a violation starting %q, got %d:\n%s", m.caught, len(v), strings.Join(v, "\n"))
			}
			t.Logf("caught (%d violations), e.g. %s", len(v), v[0])
		})
	}

	// A second policy selecting the server (another controller, a user's allow-all) widens
	// what the operator's allows: NetworkPolicies are additive. The check sees that too.
	t.Run("an additional allow-all policy in the namespace", func(t *testing.T) {
		s, np := build(t, sc)
		server, others := world(t, s, sc.options)
		allowAll := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "allow-all", Namespace: serverNamespace},
			Spec: networkingv1.NetworkPolicySpec{
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{}},
			},
		}
		v := violations(sc, both(analyze(t, sc, server, others, np, allowAll))...)
		if !slices.ContainsFunc(v, func(s string) bool {
			return strings.HasPrefix(s, "internet 198.51.100.7 → mcp/search 8080/TCP: allowed")
		}) {
			t.Fatalf("allow-all not caught: %v", v)
		}
	})
}

func both(ingress, egress []cell) [][]cell { return [][]cell{ingress, egress} }

// typed converts an apply configuration into the API type of the same JSON shape.
func typed[T any](t *testing.T, ac any) *T {
	t.Helper()
	b, err := json.Marshal(ac)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}
