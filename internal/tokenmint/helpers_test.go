package tokenmint

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

var testOptions = resources.Options{
	RuntimeImage:  "ghcr.io/mcpfleet/mcp-runtime:test",
	DefaultIssuer: mcpv1alpha1.IssuerReference{Name: "mcp-fleet-ca", Kind: "ClusterIssuer", Group: "cert-manager.io"},
}

// sampleServer is a stdio server trusting the generated issuer, with a scope-guarded tool.
func sampleServer(ns, name string) *mcpv1alpha1.MCPServer {
	return &mcpv1alpha1.MCPServer{
		TypeMeta:   metav1.TypeMeta{APIVersion: mcpv1alpha1.GroupVersion.String(), Kind: "MCPServer"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: testUID, Generation: 1},
		Spec: mcpv1alpha1.MCPServerSpec{
			Image:     "ghcr.io/example/everything-server:v1.8.0",
			Transport: mcpv1alpha1.TransportStdio,
			Command:   []string{"/everything-server"},
			Tools: mcpv1alpha1.ToolsSpec{Scopes: []mcpv1alpha1.ToolScopes{
				{Tool: "test_simple_text", Scopes: []string{"mcp:tools"}},
			}},
		},
	}
}

// rendered is what the operator would write for a server: the auth Secret's data and
// the runtime.yaml of its ConfigMap, both from the builders.
type rendered struct {
	secret  map[string][]byte
	runtime []byte
}

func render(t *testing.T, s *mcpv1alpha1.MCPServer, o resources.Options) rendered {
	t.Helper()
	data, err := resources.EnsureAuthKeys(nil, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return rendered{secret: data, runtime: renderConfig(t, s, o)}
}

func renderConfig(t *testing.T, s *mcpv1alpha1.MCPServer, o resources.Options) []byte {
	t.Helper()
	cm, err := resources.ConfigMap(s, o)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(cm.Data[config.FileName])
}

// serverOf decodes the server the way Load does: from its JSON.
func serverOf(t *testing.T, s *mcpv1alpha1.MCPServer) Server {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out Server
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func inputsOf(t *testing.T, s *mcpv1alpha1.MCPServer, r rendered) Inputs {
	t.Helper()
	return Inputs{Server: serverOf(t, s), SecretData: r.secret, RuntimeConfig: r.runtime}
}

// mountedConfig parses a rendered runtime.yaml with the runtime's own loader and points
// its /etc/mcp-runtime/... paths into dir, where the auth Secret's keys are written as the
// pod's volume would hold them (only the keys the pod mounts).
func mountedConfig(t *testing.T, runtimeYAML []byte, secret map[string][]byte, dir string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(runtimeYAML)
	if err != nil {
		t.Fatalf("the rendered runtime config does not load: %v", err)
	}
	authDir := filepath.Join(dir, "auth")
	if err := os.MkdirAll(authDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{resources.AuthKeyPublic, resources.AuthKeyTicketKey} {
		if err := os.WriteFile(filepath.Join(authDir, k), secret[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mount := func(p *string) {
		if rest, ok := strings.CutPrefix(*p, "/etc/mcp-runtime/"); ok {
			*p = filepath.Join(dir, rest)
		}
	}
	for i := range cfg.Auth.JWT {
		for j := range cfg.Auth.JWT[i].KeyFiles {
			mount(&cfg.Auth.JWT[i].KeyFiles[j].Path)
		}
	}
	mount(&cfg.Auth.WebSocket.Tickets.KeyFile)
	mount(&cfg.TLS.CertFile)
	mount(&cfg.TLS.KeyFile)
	return cfg
}

// verifier is the runtime's authenticator built from that config, with a manual clock and
// no token cache (each check verifies afresh).
func verifier(t *testing.T, runtimeYAML []byte, secret map[string][]byte, now func() time.Time) *auth.Authenticator {
	t.Helper()
	cfg := mountedConfig(t, runtimeYAML, secret, t.TempDir())
	a, err := auth.New(context.Background(), cfg.Auth, cfg.Endpoint.PublicURL, auth.Options{Now: now, TokenCacheSize: -1})
	if err != nil {
		t.Fatalf("building the runtime's authenticator: %v", err)
	}
	return a
}

func at(t time.Time) func() time.Time { return func() time.Time { return t } }

const testUID = types.UID("4f9a7c2e-0000-4000-8000-00000000abcd")
