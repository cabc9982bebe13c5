package resources

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"path"
	"strings"
	"testing"
	"testing/cryptotest"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// typed turns an apply configuration into its API type (same JSON shape) for assertions.
func typed[T any](t *testing.T, ac any) *T {
	t.Helper()
	out := new(T)
	if err := convert(ac, out); err != nil {
		t.Fatalf("converting apply configuration: %v", err)
	}
	return out
}

func deploymentOf(t *testing.T, s *mcpv1alpha1.MCPServer) *appsv1.Deployment {
	t.Helper()
	d, err := Deployment(s, testOptions, "0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	return typed[appsv1.Deployment](t, d)
}

// runtimeContainer is the container the runtime runs in: the sidecar (http) or the
// server container it wraps (stdio).
func runtimeContainer(t *testing.T, s *mcpv1alpha1.MCPServer, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	want := containerServer
	if s.Spec.Transport == mcpv1alpha1.TransportHTTP {
		want = containerRuntime
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == want {
			return c
		}
	}
	t.Fatalf("no container %q", want)
	return corev1.Container{}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestEnsureAuthKeys(t *testing.T) {
	g := NewWithT(t)

	fresh, err := EnsureAuthKeys(nil, &fixedReader{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fresh).To(HaveKey(AuthKeyPrivate))
	g.Expect(fresh).To(HaveKey(AuthKeyPublic))
	g.Expect(fresh).To(HaveKey(AuthKeyTicketKey))

	// The pair matches: a P-256 PKCS#8 private key and its PKIX public key.
	block, _ := pem.Decode(fresh[AuthKeyPrivate])
	g.Expect(block).NotTo(BeNil())
	g.Expect(block.Type).To(Equal("PRIVATE KEY"))
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	ec, ok := priv.(*ecdsa.PrivateKey)
	g.Expect(ok).To(BeTrue())
	g.Expect(ec.Curve).To(Equal(elliptic.P256()))
	block, _ = pem.Decode(fresh[AuthKeyPublic])
	g.Expect(block).NotTo(BeNil())
	g.Expect(block.Type).To(Equal("PUBLIC KEY"))
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ec.PublicKey.Equal(pub)).To(BeTrue(), "jwt.pub must be the public half of jwt.key")
	ticket, err := base64.StdEncoding.DecodeString(string(fresh[AuthKeyTicketKey]))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ticket).To(HaveLen(32))

	// Complete data is returned unchanged and no randomness is read.
	kept, err := EnsureAuthKeys(fresh, failingReader{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(kept).To(Equal(fresh))

	// Unrelated keys someone added to the Secret survive.
	withExtra := map[string][]byte{"note": []byte("hello")}
	for k, v := range fresh {
		withExtra[k] = v
	}
	kept, err = EnsureAuthKeys(withExtra, failingReader{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(kept).To(Equal(withExtra))

	// A missing ticket key is filled; the signing pair is kept.
	partial := map[string][]byte{AuthKeyPrivate: fresh[AuthKeyPrivate], AuthKeyPublic: fresh[AuthKeyPublic]}
	filled, err := EnsureAuthKeys(partial, &fixedReader{n: 7})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(filled[AuthKeyPrivate]).To(Equal(fresh[AuthKeyPrivate]))
	g.Expect(filled[AuthKeyPublic]).To(Equal(fresh[AuthKeyPublic]))
	g.Expect(filled[AuthKeyTicketKey]).NotTo(BeEmpty())
	g.Expect(filled[AuthKeyTicketKey]).NotTo(Equal(fresh[AuthKeyTicketKey]))
	g.Expect(partial).NotTo(HaveKey(AuthKeyTicketKey), "the caller's map is not modified")

	// A missing public key regenerates the pair (half a pair is useless); the ticket key stays.
	noPub := map[string][]byte{AuthKeyPrivate: fresh[AuthKeyPrivate], AuthKeyTicketKey: fresh[AuthKeyTicketKey]}
	regen, err := EnsureAuthKeys(noPub, failingReader{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(regen[AuthKeyTicketKey]).To(Equal(fresh[AuthKeyTicketKey]))
	g.Expect(regen[AuthKeyPrivate]).NotTo(Equal(fresh[AuthKeyPrivate]))
	g.Expect(regen[AuthKeyPublic]).NotTo(BeEmpty())

	// No entropy for a missing ticket key is an error, not a weak key.
	_, err = EnsureAuthKeys(partial, failingReader{})
	g.Expect(err).To(MatchError(ContainSubstring("generating ticket key")))
}

func TestEnsureAuthKeysDeterministicForGoldenFiles(t *testing.T) {
	g := NewWithT(t)
	cryptotest.SetGlobalRandom(t, 42)
	a, err := EnsureAuthKeys(nil, &fixedReader{})
	g.Expect(err).NotTo(HaveOccurred())
	cryptotest.SetGlobalRandom(t, 42)
	b, err := EnsureAuthKeys(nil, &fixedReader{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(a).To(Equal(b))
}

// The operator only renders configurations the runtime accepts.
func TestRuntimeConfigParsesForEveryCase(t *testing.T) {
	for _, name := range testCases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			s := loadCase(t, name)
			data, err := RuntimeConfig(s, testOptions).Marshal()
			g.Expect(err).NotTo(HaveOccurred())
			parsed, err := config.Parse(data)
			g.Expect(err).NotTo(HaveOccurred(), "the runtime would refuse:\n%s", data)
			g.Expect(parsed.Endpoint.PublicURL).To(Equal(URL(s, testOptions)))
		})
	}
}

// Every file the runtime config names is mounted, from the volume item that holds it,
// into the container the runtime runs in.
func TestRuntimeConfigPathsAreMounted(t *testing.T) {
	for _, name := range testCases {
		t.Run(name, func(t *testing.T) {
			s := loadCase(t, name)
			d := deploymentOf(t, s)
			rc := runtimeContainer(t, s, d)
			cfg := RuntimeConfig(s, testOptions)

			files := []string{path.Join(ConfigDir, config.FileName)}
			files = append(files, cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile, cfg.Auth.WebSocket.Tickets.KeyFile)
			for _, p := range cfg.Auth.JWT {
				for _, k := range p.KeyFiles {
					files = append(files, k.Path)
				}
			}
			for _, f := range files {
				if f != "" {
					assertFileMounted(t, d, rc, f)
				}
			}
			if cfg.Auth.APIKeys != nil {
				assertDirMounted(t, d, rc, cfg.Auth.APIKeys.Dir)
			}
			args := strings.Join(append(rc.Command, rc.Args...), " ")
			if !strings.Contains(args, "--config "+path.Join(ConfigDir, config.FileName)) {
				t.Errorf("runtime is not started with its config file: %s", args)
			}
		})
	}
}

func volumeByName(d *appsv1.Deployment, name string) *corev1.Volume {
	for i := range d.Spec.Template.Spec.Volumes {
		if d.Spec.Template.Spec.Volumes[i].Name == name {
			return &d.Spec.Template.Spec.Volumes[i]
		}
	}
	return nil
}

func assertFileMounted(t *testing.T, d *appsv1.Deployment, c corev1.Container, file string) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, m.MountPath+"/")
		if !ok {
			continue
		}
		v := volumeByName(d, m.Name)
		if v == nil {
			t.Errorf("%s: mount %s names no volume", file, m.Name)
			return
		}
		var items []corev1.KeyToPath
		switch {
		case v.Secret != nil:
			items = v.Secret.Items
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != ConfigMapName(&mcpv1alpha1.MCPServer{ObjectMeta: d.ObjectMeta}) {
				t.Errorf("%s: config volume points at ConfigMap %s", file, v.ConfigMap.Name)
			}
			if rel == config.FileName {
				return // the ConfigMap's key is the file name
			}
		default:
			t.Errorf("%s: volume %s is neither a Secret nor a ConfigMap", file, v.Name)
			return
		}
		for _, it := range items {
			if it.Path == rel {
				return
			}
		}
		t.Errorf("%s: volume %s has no item with path %s (items %v)", file, v.Name, rel, items)
		return
	}
	t.Errorf("%s is not under any mount of container %s", file, c.Name)
}

func assertDirMounted(t *testing.T, d *appsv1.Deployment, c corev1.Container, dir string) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath == dir {
			if volumeByName(d, m.Name) == nil {
				t.Errorf("%s: mount %s names no volume", dir, m.Name)
			}
			return
		}
	}
	t.Errorf("directory %s is not mounted into container %s", dir, c.Name)
}

func TestDeploymentMeetsRestrictedProfile(t *testing.T) {
	for _, name := range testCases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			s := loadCase(t, name)
			d := deploymentOf(t, s)
			pod := d.Spec.Template.Spec

			g.Expect(pod.SecurityContext).NotTo(BeNil())
			g.Expect(pod.SecurityContext.RunAsNonRoot).To(Equal(ptr.To(true)))
			g.Expect(pod.SecurityContext.RunAsUser).To(Equal(ptr.To(int64(NonRootUID))))
			g.Expect(pod.SecurityContext.SeccompProfile).To(Equal(&corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}))
			g.Expect(pod.AutomountServiceAccountToken).To(Equal(ptr.To(false)), "the pods need no API rights")
			g.Expect(pod.HostNetwork || pod.HostPID || pod.HostIPC).To(BeFalse())
			for _, v := range pod.Volumes {
				g.Expect(v.HostPath).To(BeNil(), "volume %s", v.Name)
			}

			all := append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...)
			g.Expect(all).NotTo(BeEmpty())
			for _, c := range all {
				sc := c.SecurityContext
				g.Expect(sc).NotTo(BeNil(), c.Name)
				g.Expect(sc.AllowPrivilegeEscalation).To(Equal(ptr.To(false)), c.Name)
				g.Expect(sc.Privileged).To(BeNil(), c.Name)
				g.Expect(sc.RunAsNonRoot).To(Equal(ptr.To(true)), c.Name)
				g.Expect(sc.ReadOnlyRootFilesystem).To(Equal(ptr.To(true)), c.Name)
				g.Expect(sc.Capabilities).NotTo(BeNil(), c.Name)
				g.Expect(sc.Capabilities.Drop).To(Equal([]corev1.Capability{"ALL"}), c.Name)
				g.Expect(sc.Capabilities.Add).To(BeEmpty(), c.Name)
				g.Expect(sc.SeccompProfile).To(Equal(&corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}), c.Name)
				for _, p := range c.Ports {
					g.Expect(p.HostPort).To(BeZero(), c.Name)
				}
			}

			// The user's server gets a writable /tmp on a bounded emptyDir, its root stays read-only.
			var server *corev1.Container
			for i := range pod.Containers {
				if pod.Containers[i].Name == containerServer {
					server = &pod.Containers[i]
				}
			}
			g.Expect(server).NotTo(BeNil())
			var tmp *corev1.VolumeMount
			for i := range server.VolumeMounts {
				if server.VolumeMounts[i].MountPath == "/tmp" {
					tmp = &server.VolumeMounts[i]
				}
			}
			g.Expect(tmp).NotTo(BeNil(), "server container has no /tmp")
			v := volumeByName(d, tmp.Name)
			g.Expect(v).NotTo(BeNil())
			g.Expect(v.EmptyDir).NotTo(BeNil(), "/tmp must be an emptyDir")
			g.Expect(v.EmptyDir.SizeLimit).NotTo(BeNil(), "/tmp must be bounded")
		})
	}
}

// The generated private key only signs tokens (`mcp-runtime token`); no pod may read it.
func TestPrivateKeyIsNeverMounted(t *testing.T) {
	for _, name := range testCases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			s := loadCase(t, name)
			d := deploymentOf(t, s)
			pod := d.Spec.Template.Spec
			authSecret := AuthSecretName(s)
			for _, v := range pod.Volumes {
				if v.Secret != nil && v.Secret.SecretName == authSecret {
					g.Expect(v.Secret.Items).NotTo(BeEmpty(), "the whole auth Secret (with %s) is mounted", AuthKeyPrivate)
					for _, it := range v.Secret.Items {
						g.Expect(it.Key).NotTo(Equal(AuthKeyPrivate))
					}
				}
				if v.Projected != nil {
					for _, src := range v.Projected.Sources {
						if src.Secret != nil {
							g.Expect(src.Secret.Name).NotTo(Equal(authSecret))
						}
					}
				}
			}
			for _, ctr := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
				for _, e := range ctr.EnvFrom {
					if e.SecretRef != nil {
						g.Expect(e.SecretRef.Name).NotTo(Equal(authSecret), ctr.Name)
					}
				}
				for _, e := range ctr.Env {
					if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
						g.Expect(e.ValueFrom.SecretKeyRef.Name).NotTo(Equal(authSecret), ctr.Name)
					}
				}
			}
		})
	}
}

func TestConfigHashFollowsTheRuntimeConfigOnly(t *testing.T) {
	g := NewWithT(t)
	cryptotest.SetGlobalRandom(t, 1)
	base := loadCase(t, "stdio-default")
	hash := func(s *mcpv1alpha1.MCPServer) string {
		cryptotest.SetGlobalRandom(t, 1) // same auth material every time
		r := render(t, s)
		dep := typed[appsv1.Deployment](t, r.deployment)
		g.Expect(dep.Spec.Template.Annotations).To(HaveKeyWithValue(AnnotationConfigHash, r.configHash))
		return r.configHash
	}
	before := hash(base)
	g.Expect(before).To(HaveLen(16))

	relabelled := base.DeepCopy()
	relabelled.Labels = map[string]string{"team": "a", "cost-center": "42"}
	relabelled.Annotations = map[string]string{"note": "unrelated"}
	g.Expect(hash(relabelled)).To(Equal(before), "an unrelated label must not roll the pods")

	moreOrigins := base.DeepCopy()
	moreOrigins.Spec.Origins.Allowed = append(moreOrigins.Spec.Origins.Allowed, "https://admin.example.com")
	g.Expect(hash(moreOrigins)).NotTo(Equal(before), "a new origin must roll the pods")

	// New auth material the pods mount rolls them too.
	r := render(t, base)
	rotated := map[string][]byte{AuthKeyPublic: r.authData[AuthKeyPublic], AuthKeyTicketKey: []byte("rotated")}
	cm, err := ConfigMap(base, testOptions)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ConfigHash([]byte(cm.Data[config.FileName]), rotated)).NotTo(Equal(before))
	unmounted := map[string][]byte{AuthKeyPublic: r.authData[AuthKeyPublic], AuthKeyTicketKey: r.authData[AuthKeyTicketKey], AuthKeyPrivate: []byte("not mounted")}
	g.Expect(ConfigHash([]byte(cm.Data[config.FileName]), unmounted)).To(Equal(ConfigHash([]byte(cm.Data[config.FileName]), r.authData)),
		"the private key is not mounted, so it does not roll the pods")
}

func TestNetworkPolicy(t *testing.T) {
	t.Run("http upstream port is never reachable", func(t *testing.T) {
		g := NewWithT(t)
		s := loadCase(t, "http-full")
		np := networkPolicyOf(t, s, testOptions)
		g.Expect(np.Spec.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
		g.Expect(np.Spec.PodSelector.MatchLabels).To(Equal(SelectorLabels(s)))
		var ports []int32
		for _, rule := range np.Spec.Ingress {
			g.Expect(rule.Ports).NotTo(BeEmpty(), "an ingress rule without ports opens every port, the upstream's included")
			for _, p := range rule.Ports {
				g.Expect(p.EndPort).To(BeNil())
				ports = append(ports, resolvePort(t, s, p))
			}
		}
		g.Expect(ports).To(ConsistOf(int32(8443), int32(9090)))
		g.Expect(ports).NotTo(ContainElement(s.Spec.Upstream.Port))
		// The endpoint takes the user's peers; metrics only the monitoring namespace.
		g.Expect(np.Spec.Ingress[0].From).To(HaveLen(1))
		g.Expect(np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels).To(Equal(map[string]string{"kubernetes.io/metadata.name": "frontend"}))
		g.Expect(np.Spec.Ingress[1].From).To(Equal([]networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}},
		}}))
	})

	t.Run("default ingress is the same namespace, no metrics without a monitoring namespace", func(t *testing.T) {
		g := NewWithT(t)
		s := loadCase(t, "stdio-default")
		np := networkPolicyOf(t, s, Options{RuntimeImage: "x"})
		g.Expect(np.Spec.Ingress).To(HaveLen(1))
		g.Expect(np.Spec.Ingress[0].From).To(Equal([]networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}))
		g.Expect(np.Spec.Ingress[0].Ports).To(HaveLen(1))
		g.Expect(resolvePort(t, s, np.Spec.Ingress[0].Ports[0])).To(Equal(int32(8443)))
	})

	t.Run("ports are named, so the pods of the old template stay reachable while new ports roll out", func(t *testing.T) {
		g := NewWithT(t)
		np := networkPolicyOf(t, loadCase(t, "http-full"), testOptions)
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				g.Expect(p.Port.Type).To(Equal(intstr.String), "port %s", p.Port.String())
			}
		}
	})

	for _, name := range []string{"stdio-default", "http-full"} {
		t.Run(name+": DNS egress only to kube-dns", func(t *testing.T) {
			g := NewWithT(t)
			s := loadCase(t, name)
			np := networkPolicyOf(t, s, testOptions)
			g.Expect(np.Spec.Egress).To(HaveLen(1 + len(s.Spec.NetworkPolicy.Egress)))
			dns := np.Spec.Egress[0]
			g.Expect(dns.Ports).To(HaveLen(2))
			for _, p := range dns.Ports {
				g.Expect(p.Port.IntVal).To(Equal(int32(53)))
			}
			g.Expect(dns.To).To(Equal([]networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
			}}), "DNS must not be open to any destination")
			// The user's rules follow unchanged; nothing else is added.
			for i, rule := range s.Spec.NetworkPolicy.Egress {
				g.Expect(np.Spec.Egress[1+i]).To(Equal(rule))
			}
		})
	}

	t.Run("none when explicitly disabled", func(t *testing.T) {
		g := NewWithT(t)
		np, err := NetworkPolicy(loadCase(t, "insecure"), testOptions)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(np).To(BeNil())
	})
}

// resolvePort is the container port number a NetworkPolicy port opens on the server's pods,
// resolving a named port the way a CNI does (0: the name matches no container port).
func resolvePort(t *testing.T, s *mcpv1alpha1.MCPServer, p networkingv1.NetworkPolicyPort) int32 {
	t.Helper()
	if p.Port.Type == intstr.Int {
		return p.Port.IntVal
	}
	for _, c := range deploymentOf(t, s).Spec.Template.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == p.Port.StrVal {
				return cp.ContainerPort
			}
		}
	}
	return 0
}

func networkPolicyOf(t *testing.T, s *mcpv1alpha1.MCPServer, o Options) *networkingv1.NetworkPolicy {
	t.Helper()
	np, err := NetworkPolicy(s, o)
	if err != nil || np == nil {
		t.Fatalf("NetworkPolicy: %v, %v", np, err)
	}
	return typed[networkingv1.NetworkPolicy](t, np)
}

func TestPodDisruptionBudgetOnlyWithSeveralReplicas(t *testing.T) {
	for _, tc := range []struct {
		replicas *int32
		want     bool
	}{
		{nil, false}, {ptr.To(int32(0)), false}, {ptr.To(int32(1)), false}, {ptr.To(int32(2)), true}, {ptr.To(int32(100)), true},
	} {
		g := NewWithT(t)
		s := loadCase(t, "stdio-default")
		s.Spec.Replicas = tc.replicas
		pdb := PodDisruptionBudget(s)
		if !tc.want {
			g.Expect(pdb).To(BeNil(), "replicas %v", tc.replicas)
			continue
		}
		g.Expect(pdb).NotTo(BeNil(), "replicas %v", *tc.replicas)
		g.Expect(pdb.Spec.MaxUnavailable.IntValue()).To(Equal(1))
		g.Expect(pdb.Spec.Selector.MatchLabels).To(Equal(SelectorLabels(s)))
	}
}

func TestServiceSchemeFollowsTLS(t *testing.T) {
	g := NewWithT(t)
	for name, want := range map[string]string{"stdio-default": "https", "insecure": "http"} {
		s := loadCase(t, name)
		svc := Service(s)
		g.Expect(*svc.Spec.Ports[0].AppProtocol).To(Equal(want), name)
		g.Expect(URL(s, testOptions)).To(HavePrefix(want+"://"), name)
	}
}

// Clients of a publicURL verify its host against the pod's certificate (a TLS-passthrough
// load balancer): the certificate covers it as the Host allowlist does, without repeating it
// in spec.tls.dnsNames.
func TestCertificateCoversThePublicURLHost(t *testing.T) {
	g := NewWithT(t)
	s := loadCase(t, "stdio-default")
	s.Spec.Endpoint.PublicURL = "https://mcp.example.com:8443/mcp"
	cert := typed[cmv1.Certificate](t, Certificate(s, testOptions))
	g.Expect(cert.Spec.DNSNames).To(ContainElement("mcp.example.com"))
	g.Expect(cert.Spec.DNSNames).To(ContainElements(ServiceDNSNames(s, testOptions)))

	s.Spec.TLS.DNSNames = []string{"mcp.example.com"}
	cert = typed[cmv1.Certificate](t, Certificate(s, testOptions))
	g.Expect(cert.Spec.DNSNames).To(HaveLen(len(ServiceDNSNames(s, testOptions))+1), "no duplicate names")

	s.Spec.TLS.DNSNames = nil
	s.Spec.Endpoint.PublicURL = "https://203.0.113.7/mcp"
	cert = typed[cmv1.Certificate](t, Certificate(s, testOptions))
	g.Expect(cert.Spec.DNSNames).NotTo(ContainElement("203.0.113.7"), "an IP address is no DNS name")
}

// The metrics port (plain HTTP, no authentication) is on a ClusterIP Service only: a
// NodePort or LoadBalancer Service would publish it beyond the cluster.
func TestMetricsPortStaysInsideTheCluster(t *testing.T) {
	g := NewWithT(t)
	portNames := func(svc *corev1.Service) []string {
		var out []string
		for _, p := range svc.Spec.Ports {
			out = append(out, p.Name)
		}
		return out
	}
	s := loadCase(t, "stdio-default")
	g.Expect(portNames(typed[corev1.Service](t, Service(s)))).To(Equal([]string{PortNameMCP, PortNameMetrics}))
	for _, st := range []corev1.ServiceType{corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeNodePort} {
		s.Spec.Endpoint.ServiceType = st
		svc := typed[corev1.Service](t, Service(s))
		g.Expect(svc.Spec.Type).To(Equal(st))
		g.Expect(portNames(svc)).To(Equal([]string{PortNameMCP}), string(st))
	}
}

// Every switch that turns a protection off is reported in status.insecureOptions, whether
// or not its name says "insecure".
func TestInsecureOptionsListEveryWeakening(t *testing.T) {
	g := NewWithT(t)
	s := loadCase(t, "stdio-default")
	g.Expect(InsecureOptions(s)).To(BeEmpty())
	s.Spec.TLS.InsecureDisabled = true
	s.Spec.Auth.InsecureAnonymous = true
	s.Spec.Auth.WebSocket.InsecureQueryToken = true
	s.Spec.NetworkPolicy.InsecureDisabled = true
	s.Spec.Origins.AllowedHosts = []string{"mcp.example.com", "*"}
	s.Spec.Tools.ValidateArguments = ptr.To(false)
	s.Spec.Audit.Disabled = true
	s.Spec.Audit.LogArguments = true
	g.Expect(InsecureOptions(s)).To(Equal([]string{
		"tls.insecureDisabled", "auth.insecureAnonymous", "auth.webSocket.insecureQueryToken",
		"networkPolicy.insecureDisabled", "origins.allowedHosts: *", "tools.validateArguments: false",
		"audit.disabled", "audit.logArguments",
	}))
}

func TestPodLabelsCannotOverrideSelector(t *testing.T) {
	g := NewWithT(t)
	s := loadCase(t, "http-full")
	d := deploymentOf(t, s)
	g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue(LabelName, AppName), "podLabels must not break the selector")
	g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue("team", "search"))
	g.Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue("example.com/owner", "search-team"))
}

// A key file is pinned to the single algorithm the spec names for it.
func TestJWTKeyFileAlgorithm(t *testing.T) {
	g := NewWithT(t)
	s := loadCase(t, "http-full")
	cfg := RuntimeConfig(s, testOptions)
	g.Expect(cfg.Auth.JWT).To(HaveLen(3))
	g.Expect(cfg.Auth.JWT[0].Issuer).To(Equal(GeneratedIssuer(s)))
	g.Expect(cfg.Auth.JWT[0].KeyFiles).To(Equal([]config.KeyFile{{Path: path.Join(AuthDir, AuthKeyPublic), Algorithm: "ES256"}}))
	g.Expect(cfg.Auth.JWT[2].KeyFiles).To(Equal([]config.KeyFile{{Path: path.Join(JWTKeysDir, "1", "key.pem"), Algorithm: "ES256"}}))
	g.Expect(cfg.Auth.JWT[1].JWKSURL).To(Equal("https://login.example.com/.well-known/jwks.json"))
	g.Expect(cfg.Auth.JWT[1].KeyFiles).To(BeEmpty())
}

// The runtime sidecar's GOMEMLIMIT is 90% of its memory limit, default or given, and
// absent when no memory limit is set; the server container never gets it from the operator.
func TestRuntimeSidecarGoMemLimit(t *testing.T) {
	g := NewWithT(t)
	envOf := func(s *mcpv1alpha1.MCPServer, container string) map[string]string {
		env := map[string]string{}
		for _, c := range deploymentOf(t, s).Spec.Template.Spec.Containers {
			if c.Name == container {
				for _, e := range c.Env {
					env[e.Name] = e.Value
				}
			}
		}
		return env
	}
	s := loadCase(t, "http-full")
	g.Expect(envOf(s, containerRuntime)).To(HaveKeyWithValue("GOMEMLIMIT", "483183819")) // 90% of 512Mi
	g.Expect(envOf(s, containerServer)).NotTo(HaveKey("GOMEMLIMIT"))

	s.Spec.RuntimeResources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}
	g.Expect(envOf(s, containerRuntime)).To(HaveKeyWithValue("GOMEMLIMIT", "966367638"))

	s.Spec.RuntimeResources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}
	g.Expect(envOf(s, containerRuntime)).NotTo(HaveKey("GOMEMLIMIT"))
}
