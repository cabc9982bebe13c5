package resources

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/cryptotest"

	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const testUID = types.UID("4f9a7c2e-0000-4000-8000-000000000001")

var testOptions = Options{
	RuntimeImage:        "ghcr.io/mcpfleet/mcp-runtime:v0.1.0",
	DefaultIssuer:       mcpv1alpha1.IssuerReference{Name: "mcp-fleet-ca", Kind: "ClusterIssuer", Group: "cert-manager.io"},
	MonitoringNamespace: "monitoring",
}

// testCases name the inputs testdata/<name>.input.yaml (MCPServers as users write them,
// which the envtest suite also creates against the real API server) and their golden
// outputs testdata/<name>.yaml.
var testCases = []string{"stdio-default", "http-full", "stdio-mtls-per-session", "insecure"}

// mcpServerSchema is the OpenAPI schema of the generated CRD.
func mcpServerSchema(t *testing.T) *apiextensionsv1.JSONSchemaProps {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", "mcp.mcpfleet.dev_mcpservers.yaml"))
	if err != nil {
		t.Fatalf("reading the CRD (run `make manifests`): %v", err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &crd); err != nil {
		t.Fatalf("decoding the CRD: %v", err)
	}
	return crd.Spec.Versions[0].Schema.OpenAPIV3Schema
}

// applyDefaults does what the API server does with a CRD's defaults: a missing property
// with a default gets it, then every value (defaulted or not) is defaulted in turn.
// (k8s.io/apiextensions-apiserver's own defaulting package drags in cel-go.)
func applyDefaults(t *testing.T, x any, s *apiextensionsv1.JSONSchemaProps) {
	t.Helper()
	switch v := x.(type) {
	case map[string]any:
		for name, prop := range s.Properties {
			if _, ok := v[name]; !ok && prop.Default != nil {
				var d any
				if err := json.Unmarshal(prop.Default.Raw, &d); err != nil {
					t.Fatalf("default of %s: %v", name, err)
				}
				v[name] = d
			}
			if val, ok := v[name]; ok {
				applyDefaults(t, val, &prop)
			}
		}
	case []any:
		if s.Items != nil && s.Items.Schema != nil {
			for _, item := range v {
				applyDefaults(t, item, s.Items.Schema)
			}
		}
	}
}

// load decodes a manifest, applies the CRD defaults and sets a fixed UID.
func load(t *testing.T, manifest string) *mcpv1alpha1.MCPServer {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(manifest), &obj); err != nil {
		t.Fatalf("decoding manifest: %v", err)
	}
	applyDefaults(t, obj, mcpServerSchema(t))
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	s := &mcpv1alpha1.MCPServer{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(s); err != nil {
		t.Fatalf("decoding MCPServer: %v", err)
	}
	s.UID = testUID
	return s
}

// loadCase loads testdata/<name>.input.yaml with the CRD defaults applied.
func loadCase(t *testing.T, name string) *mcpv1alpha1.MCPServer {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".input.yaml"))
	if err != nil {
		t.Fatalf("reading test case: %v", err)
	}
	return load(t, string(data))
}

// fixedReader yields a repeating byte pattern: deterministic "randomness" for golden files.
type fixedReader struct{ n byte }

func (r *fixedReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.n
		r.n++
	}
	return len(p), nil
}

// rendered holds every child of a server, in the order the reconciler applies them;
// nil where the server has no such child.
type rendered struct {
	serviceAccount, authSecret, configMap, certificate, service, networkPolicy, deployment, pdb any
	authData                                                                                    map[string][]byte
	configHash                                                                                  string
}

// render builds every child as the reconciler does, including the pod config hash
// (runtime config plus the auth material the pods mount).
func render(t *testing.T, s *mcpv1alpha1.MCPServer) rendered {
	t.Helper()
	var r rendered
	r.serviceAccount = ServiceAccount(s)
	if !s.Spec.Auth.InsecureAnonymous {
		data, err := EnsureAuthKeys(nil, &fixedReader{})
		if err != nil {
			t.Fatal(err)
		}
		r.authData = data
		r.authSecret = AuthSecret(s, data)
	}
	cm, err := ConfigMap(s, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	r.configMap = cm
	r.configHash = ConfigHash([]byte(cm.Data["runtime.yaml"]), r.authData)
	if !s.Spec.TLS.InsecureDisabled && s.Spec.TLS.SecretName == "" {
		r.certificate = Certificate(s, testOptions)
	}
	r.service = Service(s)
	np, err := NetworkPolicy(s, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if np != nil {
		r.networkPolicy = np
	}
	d, err := Deployment(s, testOptions, r.configHash)
	if err != nil {
		t.Fatal(err)
	}
	r.deployment = d
	if pdb := PodDisruptionBudget(s); pdb != nil {
		r.pdb = pdb
	}
	return r
}

func (r rendered) yaml(t *testing.T) []byte {
	t.Helper()
	var out bytes.Buffer
	for _, c := range []struct {
		kind string
		obj  any
	}{
		{"ServiceAccount", r.serviceAccount},
		{"Secret (auth)", r.authSecret},
		{"ConfigMap", r.configMap},
		{"Certificate", r.certificate},
		{"Service", r.service},
		{"NetworkPolicy", r.networkPolicy},
		{"Deployment", r.deployment},
		{"PodDisruptionBudget", r.pdb},
	} {
		if c.obj == nil {
			fmt.Fprintf(&out, "# %s: none\n---\n", c.kind)
			continue
		}
		b, err := yaml.Marshal(c.obj)
		if err != nil {
			t.Fatalf("marshalling %s: %v", c.kind, err)
		}
		fmt.Fprintf(&out, "# %s\n%s---\n", c.kind, b)
	}
	return out.Bytes()
}

func TestGoldenChildren(t *testing.T) {
	for _, name := range testCases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			cryptotest.SetGlobalRandom(t, 1) // the signing key is generated from the global source
			got := render(t, loadCase(t, name)).yaml(t)
			file := filepath.Join("testdata", name+".yaml")
			if *update {
				g.Expect(os.MkdirAll("testdata", 0o755)).To(Succeed())
				g.Expect(os.WriteFile(file, got, 0o644)).To(Succeed())
			}
			want, err := os.ReadFile(file)
			g.Expect(err).NotTo(HaveOccurred(), "missing golden file: run go test ./internal/resources/ -update")
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the rendered children (review, then refresh with -update):\n%s", file, diff(string(want), string(got)))
			}
		})
	}
}

// diff reports the first differing lines, enough to see what changed.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for i := 0; i < max(len(w), len(g)) && len(out) < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			out = append(out, fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, wl, gl))
		}
	}
	return strings.Join(out, "\n")
}

// The golden cases themselves must be servers the API server accepts (the envtest
// suite proves the CEL rules); here: the CRD defaults really were applied.
func TestLoadAppliesCRDDefaults(t *testing.T) {
	g := NewWithT(t)
	s := loadCase(t, "stdio-default")
	g.Expect(s.Spec.Transport).To(Equal(mcpv1alpha1.TransportStdio))
	g.Expect(s.Spec.Endpoint.Port).To(Equal(int32(8443)))
	g.Expect(s.Spec.Endpoint.Transports).To(Equal([]mcpv1alpha1.EndpointTransport{mcpv1alpha1.EndpointStreamableHTTP}))
	g.Expect(s.Spec.RateLimit.MaxMessageSize.String()).To(Equal("1Mi"))
	g.Expect(s.Spec.Auth.WebSocket.Tickets.TTL.Duration.String()).To(Equal("30s"))
	g.Expect(*s.Spec.Replicas).To(Equal(int32(1)))
}
