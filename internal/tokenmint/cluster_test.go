package tokenmint

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/auth"
)

// The cluster tests run against a real kube-apiserver and etcd (envtest) with the CRDs of
// config/crd/bases, and run the real mcp-runtime binary built from cmd/mcp-runtime.

var (
	envOnce sync.Once
	env     *cluster
	envErr  error

	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		if err := env.testEnv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping envtest: %v\n", err)
		}
		_ = os.RemoveAll(filepath.Dir(env.kubeconfig))
	}
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// moduleRoot is the repository root (for the CRDs, go build and bin/).
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// cluster is one envtest API server with three identities in one kubeconfig file:
// context "admin" (system:masters, namespace defaulted to ns), "minter" (a Role granting
// exactly what minting needs for server "demo") and "viewer" (may only read MCPServers).
type cluster struct {
	testEnv    *envtest.Environment
	admin      *rest.Config
	c          client.Client
	cs         *kubernetes.Clientset
	kubeconfig string
	ns         string
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	envOnce.Do(func() { env, envErr = newCluster() })
	if envErr != nil {
		t.Fatal(envErr)
	}
	return env
}

func newCluster() (*cluster, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is unset: run `make test` (it builds the envtest binaries when needed), or export KUBEBUILDER_ASSETS=$(make -s envtest)")
	}
	te := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(moduleRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := te.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	e := &cluster{testEnv: te, admin: cfg, ns: "team-a"}
	scheme := kruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(mcpv1alpha1.AddToScheme(scheme))
	if e.c, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}
	if e.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	ctx := context.Background()
	if err := e.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}); err != nil {
		return nil, err
	}

	// RBAC: the minter may read the server, its auth Secret and its runtime ConfigMap and
	// nothing else; the viewer may only read MCPServers.
	roles := []*rbacv1.Role{
		{ObjectMeta: metav1.ObjectMeta{Name: "mint-demo", Namespace: e.ns}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"mcp.mcpfleet.dev"}, Resources: []string{"mcpservers"}, ResourceNames: []string{"demo"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"demo-auth"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"demo-runtime"}, Verbs: []string{"get"}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "view-servers", Namespace: e.ns}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"mcp.mcpfleet.dev"}, Resources: []string{"mcpservers"}, Verbs: []string{"get", "list"}},
		}},
	}
	for _, r := range roles {
		if err := e.c.Create(ctx, r); err != nil {
			return nil, err
		}
	}
	bind := func(role, user string) *rbacv1.RoleBinding {
		return &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role + "-" + user, Namespace: e.ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
		}
	}
	for _, b := range []*rbacv1.RoleBinding{bind("mint-demo", "minter"), bind("view-servers", "viewer")} {
		if err := e.c.Create(ctx, b); err != nil {
			return nil, err
		}
	}

	merged := clientcmdapi.NewConfig()
	for _, u := range []struct {
		name   string
		groups []string
		ns     string
	}{{"admin", []string{"system:masters"}, e.ns}, {"minter", nil, ""}, {"viewer", nil, ""}} {
		au, err := te.AddUser(envtest.User{Name: u.name, Groups: u.groups}, nil)
		if err != nil {
			return nil, err
		}
		raw, err := au.KubeConfig()
		if err != nil {
			return nil, err
		}
		kc, err := clientcmd.Load(raw)
		if err != nil {
			return nil, err
		}
		kctx := kc.Contexts[kc.CurrentContext]
		merged.Clusters["envtest"] = kc.Clusters[kctx.Cluster]
		merged.AuthInfos[u.name] = kc.AuthInfos[kctx.AuthInfo]
		merged.Contexts[u.name] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: u.name, Namespace: u.ns}
	}
	merged.CurrentContext = "admin"
	dir, err := os.MkdirTemp("", "tokenmint-kubeconfig-")
	if err != nil {
		return nil, err
	}
	e.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*merged, e.kubeconfig); err != nil {
		return nil, err
	}
	return e, nil
}

// createServer creates an MCPServer, reads it back with the API server's defaults and,
// unless bare, applies the auth Secret and runtime ConfigMap the operator's builders
// produce for it (with owner references, as the reconciler does).
func (e *cluster) createServer(t *testing.T, s *mcpv1alpha1.MCPServer, bare bool) *mcpv1alpha1.MCPServer {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	s = s.DeepCopy()
	s.UID, s.Generation = "", 0
	g.Expect(e.c.Create(ctx, s)).To(Succeed())
	live := &mcpv1alpha1.MCPServer{}
	g.Expect(e.c.Get(ctx, client.ObjectKeyFromObject(s), live)).To(Succeed())
	if bare {
		return live
	}
	data, err := resources.EnsureAuthKeys(nil, rand.Reader)
	g.Expect(err).NotTo(HaveOccurred())
	apply := metav1.ApplyOptions{FieldManager: resources.FieldOwner, Force: true}
	_, err = e.cs.CoreV1().Secrets(live.Namespace).Apply(ctx, resources.AuthSecret(live, data), apply)
	g.Expect(err).NotTo(HaveOccurred())
	cm, err := resources.ConfigMap(live, testOptions)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = e.cs.CoreV1().ConfigMaps(live.Namespace).Apply(ctx, cm, apply)
	g.Expect(err).NotTo(HaveOccurred())
	return live
}

// rendered reads back what the API server holds for a server: the Secret's data and the
// ConfigMap's runtime.yaml, i.e. exactly what the pods would mount.
func (e *cluster) rendered(t *testing.T, name string) rendered {
	t.Helper()
	ctx := context.Background()
	sec, err := e.cs.CoreV1().Secrets(e.ns).Get(ctx, AuthSecretName(name), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := e.cs.CoreV1().ConfigMaps(e.ns).Get(ctx, ConfigMapName(name), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rendered{secret: sec.Data, runtime: []byte(cm.Data["runtime.yaml"])}
}

// runtimeBinary builds cmd/mcp-runtime once per test binary.
func runtimeBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "tokenmint-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "mcp-runtime")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", binPath, "./cmd/mcp-runtime")
		cmd.Dir = moduleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/mcp-runtime: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// result is one run of `mcp-runtime token`.
type result struct {
	code           int
	stdout, stderr string
}

// mint runs the real binary with args; env entries are added to a clean environment
// (no KUBECONFIG unless given, HOME pointing nowhere so ~/.kube/config is not read).
func mint(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, runtimeBinary(t), append([]string{"token"}, args...)...)
	cmd.Env = append([]string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running mcp-runtime token: %v", err)
	}
	// Whatever happened, no token ever reaches stderr.
	if strings.Contains(r.stderr, "eyJ") {
		t.Errorf("stderr carries something token-like: %q", r.stderr)
	}
	return r
}

// tokenOf returns the one line of stdout, the token, checking nothing else was printed.
func tokenOf(t *testing.T, r result) string {
	t.Helper()
	g := NewWithT(t)
	g.Expect(r.code).To(Equal(0), "stderr: %s", r.stderr)
	g.Expect(r.stderr).To(BeEmpty())
	g.Expect(r.stdout).To(MatchRegexp(`^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$`))
	return strings.TrimSuffix(r.stdout, "\n")
}

func TestClusterMintsWhatTheRuntimeAccepts(t *testing.T) {
	e := startCluster(t)
	s := e.ensureDemo(t)
	r := e.rendered(t, "demo")
	now := time.Now()
	check := func(t *testing.T, tok, sub string, scopes ...string) {
		t.Helper()
		g := NewWithT(t)
		p, err := verifier(t, r.runtime, r.secret, at(time.Now())).VerifyToken(context.Background(), tok)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p.Subject).To(Equal(sub))
		g.Expect(p.Issuer).To(Equal(resources.GeneratedIssuer(s)))
		g.Expect(p.Method).To(Equal(auth.MethodJWT))
		g.Expect(p.Scopes).To(Equal(scopes))
	}

	t.Run("Load in process", func(t *testing.T) {
		g := NewWithT(t)
		is, err := Load(context.Background(), Cluster{Kubeconfig: e.kubeconfig, Namespace: e.ns}, "demo")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(is.Audiences).To(Equal([]string{resources.URL(s, testOptions)}))
		tok, _, err := is.Mint(Request{Subject: "alice", TTL: time.Minute, Scopes: []string{"mcp:tools"}})
		g.Expect(err).NotTo(HaveOccurred())
		check(t, tok, "alice", "mcp:tools")
	})

	t.Run("the binary with --kubeconfig, -n, --ttl, --subject and --scopes", func(t *testing.T) {
		g := NewWithT(t)
		tok := tokenOf(t, mint(t, nil, "--kubeconfig", e.kubeconfig, "--server", "demo", "-n", e.ns,
			"--ttl", "10m", "--subject", "ci-bot", "--scopes", "mcp:tools,mcp:read", "--scopes", "mcp:admin"))
		check(t, tok, "ci-bot", "mcp:tools", "mcp:read", "mcp:admin")
		_, claims := decode(t, tok)
		exp := time.Unix(int64(claims["exp"].(float64)), 0)
		g.Expect(exp).To(BeTemporally("~", now.Add(10*time.Minute), 30*time.Second))
	})

	t.Run("KUBECONFIG and the context's namespace, like kubectl", func(t *testing.T) {
		tok := tokenOf(t, mint(t, []string{"KUBECONFIG=" + e.kubeconfig, "USER=carol"}, "--server", "demo"))
		g := NewWithT(t)
		_, claims := decode(t, tok)
		g.Expect(claims["sub"]).NotTo(BeEmpty(), "default subject: the OS user")
		p, err := verifier(t, r.runtime, r.secret, at(time.Now())).VerifyToken(context.Background(), tok)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p.Subject).To(Equal(claims["sub"]))
	})

	t.Run("RBAC decides who may mint", func(t *testing.T) {
		g := NewWithT(t)
		tok := tokenOf(t, mint(t, nil, "--kubeconfig", e.kubeconfig, "--context", "minter", "-n", e.ns, "--server", "demo", "--subject", "minter"))
		check(t, tok, "minter")

		res := mint(t, nil, "--kubeconfig", e.kubeconfig, "--context", "viewer", "-n", e.ns, "--server", "demo")
		g.Expect(res.code).To(Equal(1))
		g.Expect(res.stdout).To(BeEmpty())
		g.Expect(res.stderr).To(ContainSubstring(`cannot get resource "secrets"`))
		g.Expect(res.stderr).To(ContainSubstring("Minting needs get on mcpservers, on the Secret NAME-auth and on the ConfigMap NAME-runtime"))
	})
}

func TestClusterRefusalsNameTheFix(t *testing.T) {
	e := startCluster(t)
	disabled := sampleServer(e.ns, "external-only")
	disabled.Spec.Auth.GeneratedIssuer.Disabled = true
	disabled.Spec.Auth.JWT = []mcpv1alpha1.JWTProvider{{Issuer: "https://login.example.com", JWKSURL: "https://login.example.com/jwks"}}
	e.createServer(t, disabled, false)
	e.createServer(t, sampleServer(e.ns, "fresh"), true) // the operator has not reconciled it

	kc := []string{"--kubeconfig", e.kubeconfig, "-n", e.ns}
	cases := []struct {
		name string
		args []string
		code int
		says []string
	}{
		{"server not found", []string{"--server", "nope"}, 1, []string{"MCPServer team-a/nope does not exist", "kubectl get mcpservers -n team-a"}},
		{"namespace without it", []string{"--server", "demo", "-n", "default"}, 1, []string{"MCPServer default/demo does not exist"}},
		{"generated issuer disabled", []string{"--server", "external-only"}, 1, []string{
			"spec.auth.generatedIssuer.disabled: true", `a token from issuer "https://login.example.com"`, "set spec.auth.generatedIssuer.disabled: false",
		}},
		{"not reconciled yet", []string{"--server", "fresh"}, 1, []string{"Secret team-a/fresh-auth does not exist", "kubectl wait --for=condition=Ready mcpserver/fresh -n team-a"}},
		{"ttl too long", []string{"--server", "demo", "--ttl", "25h"}, 2, []string{"--ttl 25h0m0s must be more than 0s and at most 24h0m0s"}},
		{"ttl zero", []string{"--server", "demo", "--ttl", "0s"}, 2, []string{"--ttl 0s"}},
		{"ttl negative", []string{"--server", "demo", "--ttl", "-5m"}, 2, []string{"--ttl -5m0s"}},
		{"bad scope", []string{"--server", "demo", "--scopes", "a b"}, 2, []string{"--scopes", `"a b"`}},
		{"no server", []string{}, 2, []string{"--server is required"}},
		{"bad server name", []string{"--server", "../secrets/x"}, 1, []string{"is not an MCPServer name"}},
		{"unknown context", []string{"--server", "demo", "--context", "nope"}, 1, []string{"loading the kubeconfig", `context "nope" does not exist`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			res := mint(t, nil, append(append([]string{}, kc...), c.args...)...)
			g.Expect(res.code).To(Equal(c.code), "stderr: %s", res.stderr)
			g.Expect(res.stdout).To(BeEmpty())
			for _, s := range c.says {
				g.Expect(res.stderr).To(ContainSubstring(s))
			}
		})
	}

	t.Run("no kubeconfig at all", func(t *testing.T) {
		g := NewWithT(t)
		res := mint(t, []string{"KUBECONFIG=" + filepath.Join(t.TempDir(), "missing")}, "--server", "demo")
		g.Expect(res.code).To(Equal(1))
		g.Expect(res.stderr).To(ContainSubstring("loading the kubeconfig (set --kubeconfig, KUBECONFIG or --context)"))
	})

	t.Run("the API is not installed", func(t *testing.T) {
		g := NewWithT(t)
		ctx := context.Background()
		cfg, ns, err := Cluster{Kubeconfig: e.kubeconfig}.RESTConfig()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ns).To(Equal(e.ns), "the context's namespace")
		cfg.Host += "/no-such-prefix" // every path 404s without naming an object
		_, err = ReadInputs(ctx, cfg, ns, "demo")
		g.Expect(err).To(MatchError(ErrServerNotFound))
		g.Expect(err.Error()).To(ContainSubstring("is the mcp-fleet-operator CRD installed?"))
	})
}

// ensureDemo creates server "demo" (the one the minter's Role names) the first time.
func (e *cluster) ensureDemo(t *testing.T) *mcpv1alpha1.MCPServer {
	t.Helper()
	live := &mcpv1alpha1.MCPServer{}
	err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: "demo"}, live)
	if apierrors.IsNotFound(err) {
		return e.createServer(t, sampleServer(e.ns, "demo"), false)
	}
	if err != nil {
		t.Fatal(err)
	}
	return live
}
