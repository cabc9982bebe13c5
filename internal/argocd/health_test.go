package argocd

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite config/argocd/argocd-cm-patch.yaml from health.lua")

var (
	scriptPath  = filepath.Join("..", "..", "config", "argocd", "health.lua")
	cmPatchPath = filepath.Join("..", "..", "config", "argocd", "argocd-cm-patch.yaml")
)

func readScript(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(scriptPath)
	if err != nil {
		t.Fatalf("reading the health script: %v", err)
	}
	return string(b)
}

const url = "https://everything.team-a.svc:8443/mcp"

func cond(typ string, status metav1.ConditionStatus, reason, msg string, gen int64) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen,
		LastTransitionTime: metav1.Unix(1_760_000_000, 0)}
}

// server is an MCPServer at generation gen whose status the operator wrote at observed,
// with the conditions computeStatus (controllers/status.go) sets in that situation.
func server(gen, observed int64, conds ...metav1.Condition) *mcpv1alpha1.MCPServer {
	s := &mcpv1alpha1.MCPServer{
		TypeMeta:   metav1.TypeMeta{APIVersion: mcpv1alpha1.GroupVersion.String(), Kind: "MCPServer"},
		ObjectMeta: metav1.ObjectMeta{Name: "everything", Namespace: "team-a", Generation: gen},
		Spec: mcpv1alpha1.MCPServerSpec{
			Image:   "ghcr.io/mcpfleet/everything-server:v1.8.0",
			Command: []string{"/everything-server"},
		},
	}
	if observed > 0 {
		s.Status = mcpv1alpha1.MCPServerStatus{
			ObservedGeneration: observed,
			Conditions:         conds,
			URL:                url,
			Replicas:           1,
			Selector:           "app.kubernetes.io/instance=everything,app.kubernetes.io/name=mcp-server",
		}
	}
	return s
}

func toObject(t *testing.T, s *mcpv1alpha1.MCPServer) map[string]any {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := ObjectFromJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

func TestHealthScript(t *testing.T) {
	script := readScript(t)
	const (
		certIssued = "Certificate issued into Secret everything-tls"
		available  = "1 of 1 replicas available"
		cmMissing  = "cert-manager's Certificate CRD (certificates.cert-manager.io) is not installed: install cert-manager, or set spec.tls.secretName to a TLS Secret you provide"
	)
	T, F := metav1.ConditionTrue, metav1.ConditionFalse

	insecure := server(3, 3,
		cond("Available", T, "Available", available, 3),
		cond("Ready", T, "Serving", "Serving at http://everything.team-a.svc:8443/mcp with insecure options [tls.insecureDisabled auth.insecureAnonymous]", 3))
	insecure.Status.InsecureOptions = []string{"tls.insecureDisabled", "auth.insecureAnonymous"}

	cases := []struct {
		name        string
		obj         *mcpv1alpha1.MCPServer
		wantStatus  string
		wantMessage string
	}{
		{
			name: "ready at the current generation",
			obj: server(2, 2,
				cond("CertificateReady", T, "Issued", certIssued, 2),
				cond("Available", T, "Available", available, 2),
				cond("Ready", T, "Serving", "Serving at "+url, 2)),
			wantStatus: StatusHealthy, wantMessage: "Serving at " + url,
		},
		{
			name: "ready but the operator has not seen the new generation",
			obj: server(3, 2,
				cond("CertificateReady", T, "Issued", certIssued, 2),
				cond("Available", T, "Available", available, 2),
				cond("Ready", T, "Serving", "Serving at "+url, 2)),
			wantStatus: StatusProgressing, wantMessage: "Waiting for the operator to observe generation 3",
		},
		{
			name: "rolling out a new spec",
			obj: server(4, 4,
				cond("CertificateReady", T, "Issued", certIssued, 4),
				cond("Available", F, "RollingOut", "0 of 1 replicas updated", 4),
				cond("Reconciling", T, "RollingOut", "0 of 1 replicas updated", 4),
				cond("Ready", F, "RollingOut", "0 of 1 replicas updated", 4)),
			wantStatus: StatusProgressing, wantMessage: "0 of 1 replicas updated",
		},
		{
			name: "waiting for cert-manager to issue the certificate",
			obj: server(1, 1,
				cond("CertificateReady", F, "Pending", "Waiting for cert-manager to issue the certificate", 1),
				cond("Available", F, "DeploymentCreating", "Waiting for the Deployment to be created", 1),
				cond("Reconciling", T, "WaitingForCertificate", "Waiting for cert-manager to issue the certificate", 1),
				cond("Ready", F, "WaitingForCertificate", "Waiting for cert-manager to issue the certificate", 1)),
			wantStatus: StatusProgressing, wantMessage: "Waiting for cert-manager to issue the certificate",
		},
		{
			name: "retrying after a transient error",
			obj: server(1, 1,
				cond("Available", F, "WaitingForPods", "0 of 1 replicas available", 1),
				cond("Reconciling", T, "RetryingAfterError", "Retrying after a transient error", 1),
				cond("Ready", F, "ReconcileError", "applying Deployment: connection refused", 1)),
			wantStatus:  StatusProgressing,
			wantMessage: "Retrying after a transient error (applying Deployment: connection refused)",
		},
		{
			name: "stalled on a configuration the runtime would refuse",
			obj: server(5, 5,
				cond("CertificateReady", T, "Issued", certIssued, 5),
				cond("Available", T, "Available", available, 5),
				cond("Stalled", T, "InvalidRuntimeConfig", "the runtime would refuse this configuration: limits.maxDepth: must be between 2 and 1000", 5),
				cond("Ready", F, "InvalidRuntimeConfig", "the runtime would refuse this configuration: limits.maxDepth: must be between 2 and 1000", 5)),
			wantStatus:  StatusDegraded,
			wantMessage: "InvalidRuntimeConfig: the runtime would refuse this configuration: limits.maxDepth: must be between 2 and 1000",
		},
		{
			name: "stalled because cert-manager is not installed",
			obj: server(1, 1,
				cond("CertificateReady", F, "CertManagerNotInstalled", cmMissing, 1),
				cond("Available", F, "DeploymentCreating", "Waiting for the Deployment to be created", 1),
				cond("Stalled", T, "CertManagerNotInstalled", cmMissing, 1),
				cond("Ready", F, "CertManagerNotInstalled", cmMissing, 1)),
			wantStatus: StatusDegraded, wantMessage: "CertManagerNotInstalled: " + cmMissing,
		},
		{
			name: "a stall of an older generation is not the verdict on the new spec",
			obj: server(6, 5,
				cond("Stalled", T, "InvalidSpec", "bad", 5),
				cond("Ready", F, "InvalidSpec", "bad", 5)),
			wantStatus: StatusProgressing, wantMessage: "Waiting for the operator to observe generation 6",
		},
		{
			name: "ready false without stalled is a wait, not a failure",
			obj: server(1, 1,
				cond("Available", F, "WaitingForPods", "0 of 1 replicas available", 1),
				cond("Ready", F, "WaitingForPods", "0 of 1 replicas available", 1)),
			wantStatus: StatusProgressing, wantMessage: "WaitingForPods: 0 of 1 replicas available",
		},
		{
			name:       "no status yet",
			obj:        server(1, 0),
			wantStatus: StatusProgressing, wantMessage: "Waiting for the operator to report status",
		},
		{
			name:       "status without conditions",
			obj:        server(1, 1),
			wantStatus: StatusProgressing, wantMessage: "Waiting for the Ready condition",
		},
		{
			name:       "ready with insecure options says so",
			obj:        insecure,
			wantStatus: StatusHealthy,
			wantMessage: "Serving at http://everything.team-a.svc:8443/mcp with insecure options " +
				"[tls.insecureDisabled auth.insecureAnonymous]",
		},
		{
			name: "a Ready condition older than the status is not trusted",
			obj: server(7, 7,
				cond("Ready", T, "Serving", "Serving at "+url, 6)),
			wantStatus: StatusProgressing, wantMessage: "Waiting for the Ready condition of generation 7",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			h, err := EvalHealth(script, toObject(t, tc.obj))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(h).To(Equal(Health{Status: tc.wantStatus, Message: tc.wantMessage}))
		})
	}
}

// A status written by an operator that predates observedGeneration, or an object as
// Argo CD sees it before the CRD defaults apply, must not crash the script.
func TestHealthScriptToleratesSparseObjects(t *testing.T) {
	script := readScript(t)
	for name, raw := range map[string]string{
		"no metadata.generation":    `{"metadata":{"name":"x"},"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"True","reason":"Serving","message":""}]}}`,
		"condition without message": `{"metadata":{"generation":1},"status":{"observedGeneration":1,"conditions":[{"type":"Stalled","status":"True","reason":"InvalidSpec"}]}}`,
		"empty status":              `{"metadata":{"generation":1},"status":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			obj, err := ObjectFromJSON([]byte(raw))
			g.Expect(err).NotTo(HaveOccurred())
			h, err := EvalHealth(script, obj)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(h.Message).NotTo(BeEmpty())
		})
	}
}

// The harness itself must catch broken scripts, or the table above proves nothing.
func TestEvalHealthRejectsBrokenScripts(t *testing.T) {
	obj := map[string]any{"metadata": map[string]any{"generation": 1.0}}
	for name, script := range map[string]string{
		"syntax error":        `hs = {`,
		"returns no table":    `return "Healthy"`,
		"unknown status":      `return {status = "Fine"}`,
		"uses the string lib": `return {status = string.upper("healthy")}`,
		"never returns":       `while true do end`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := EvalHealth(script, obj)
			NewWithT(t).Expect(err).To(HaveOccurred())
		})
	}
}

func TestToLuaKeepsArrayOrder(t *testing.T) {
	g := NewWithT(t)
	obj, err := ObjectFromJSON([]byte(`{"a":[{"n":"x"},{"n":"y"},{"n":"z"}],"b":2,"c":true,"d":null}`))
	g.Expect(err).NotTo(HaveOccurred())
	h, err := EvalHealth(`local s = ""
for i, e in ipairs(obj.a) do s = s .. i .. e.n end
if obj.b == 2 and obj.c == true and obj.d == nil then return {status = "Healthy", message = s} end
return {status = "Degraded", message = s}`, obj)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(h).To(Equal(Health{Status: StatusHealthy, Message: "1x2y3z"}))
}

// The argocd-cm snippet carries the script verbatim; `go test ./internal/argocd -update`
// rewrites it after editing health.lua.
func TestArgoCDConfigMapPatchCarriesTheScript(t *testing.T) {
	g := NewWithT(t)
	script := readScript(t)
	if *update {
		cm := corev1.ConfigMap{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: "argocd-cm", Namespace: "argocd", Labels: map[string]string{
				"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"}},
			Data: map[string]string{HealthKey: script},
		}
		b, err := yaml.Marshal(cm)
		g.Expect(err).NotTo(HaveOccurred())
		header := "# Argo CD health check for MCPServer. Merge into argocd-cm, e.g.\n" +
			"#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file config/argocd/argocd-cm-patch.yaml\n" +
			"# Generated from health.lua by `go test ./internal/argocd -update`; do not edit by hand.\n"
		g.Expect(os.WriteFile(cmPatchPath, append([]byte(header), b...), 0o644)).To(Succeed())
	}
	b, err := os.ReadFile(cmPatchPath)
	g.Expect(err).NotTo(HaveOccurred())
	var cm corev1.ConfigMap
	g.Expect(yaml.UnmarshalStrict(b, &cm)).To(Succeed())
	g.Expect(cm.Kind).To(Equal("ConfigMap"))
	g.Expect(cm.Name).To(Equal("argocd-cm"))
	g.Expect(cm.Data).To(HaveKeyWithValue(HealthKey, script),
		"argocd-cm-patch.yaml is out of date with health.lua: run `go test ./internal/argocd -update`")
	g.Expect(strings.Count(string(b), HealthKey)).To(Equal(1))
}

func TestExampleApplication(t *testing.T) {
	g := NewWithT(t)
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "argocd", "application.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	var app struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			Source struct {
				RepoURL string `json:"repoURL"`
				Path    string `json:"path"`
			} `json:"source"`
			SyncPolicy struct {
				SyncOptions []string `json:"syncOptions"`
			} `json:"syncPolicy"`
		} `json:"spec"`
	}
	g.Expect(yaml.Unmarshal(b, &app)).To(Succeed())
	g.Expect(app.APIVersion).To(Equal("argoproj.io/v1alpha1"))
	g.Expect(app.Kind).To(Equal("Application"))
	// The path must exist in this repository, or the example syncs nothing.
	g.Expect(filepath.Join("..", "..", app.Spec.Source.Path, "kustomization.yaml")).To(BeARegularFile())
	// Server-side apply matches how the operator and kubectl manage MCPServers.
	g.Expect(app.Spec.SyncPolicy.SyncOptions).To(ContainElement("ServerSideApply=true"))
}
