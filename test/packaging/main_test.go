// Package packaging tests the Helm chart (charts/mcp-fleet-operator) and the kustomize
// installer (config/default) against a real kube-apiserver (envtest): lint, server-side
// dry-run, restricted Pod Security, kube-score, install, upgrade and drift against config/.
package packaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const (
	chartRel  = "charts/mcp-fleet-operator"
	cmdBudget = 2 * time.Minute
)

var (
	testEnv    *envtest.Environment
	repoRoot   string
	chartDir   string
	cfg        *rest.Config
	k8sClient  client.Client
	scheme     = runtime.NewScheme()
	kubeconfig string
	helmBin    string
	kubeScore  string
	kubectl    string
	helmEnv    []string
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/packaging:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return 1, err
	}
	repoRoot, chartDir = root, filepath.Join(root, chartRel)

	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return 1, errors.New("KUBEBUILDER_ASSETS is unset: run `make test` or `make packaging-test`, or export KUBEBUILDER_ASSETS=$(make -s envtest)")
	}
	kubectl = filepath.Join(assets, "kubectl")
	if helmBin, err = findTool("MCP_HELM", "helm"); err != nil {
		return 1, err
	}
	if kubeScore, err = findTool("MCP_KUBE_SCORE", "kube-score"); err != nil {
		return 1, err
	}

	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))

	tmp, err := os.MkdirTemp("", "packaging-test-")
	if err != nil {
		return 1, err
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	// No CRDs of our own at start: `helm install` must be able to create (and own) them.
	testEnv = &envtest.Environment{}
	// As in OpenShift and other distributions: the manager's children carry
	// blockOwnerDeletion, so its RBAC must allow updating its servers' finalizers.
	testEnv.ControlPlane.GetAPIServer().Configure().Set("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
	if cfg, err = testEnv.Start(); err != nil {
		return 1, fmt.Errorf("starting envtest: %w", err)
	}
	defer func() { _ = testEnv.Stop() }()

	admin, err := testEnv.AddUser(envtest.User{Name: "packaging-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return 1, fmt.Errorf("adding the admin user: %w", err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return 1, err
	}
	kubeconfig = filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return 1, err
	}
	if k8sClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return 1, err
	}
	if err := installCertManagerCRDs(); err != nil {
		return 1, err
	}
	// Hermetic helm: no user config, repositories or cache.
	helmEnv = append(os.Environ(),
		"KUBECONFIG="+kubeconfig,
		"HELM_CACHE_HOME="+filepath.Join(tmp, "helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(tmp, "helm-config"),
		"HELM_DATA_HOME="+filepath.Join(tmp, "helm-data"),
	)
	return m.Run(), nil
}

// findTool returns the binary named by env, else bin/<name> (linked by `make test-deps`).
func findTool(env, name string) (string, error) {
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join(repoRoot, "bin", name)
	}
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s binary not found at %s: run `make test` (or `make %s-bin`), or export %s=$(hack/tools.sh %s)", name, p, name, env, name)
	}
	return p, nil
}

// installCertManagerCRDs installs the kinds the chart renders from the pinned cert-manager module.
func installCertManagerCRDs() error {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("locating the cert-manager module: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	_, err = envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Paths: []string{
			filepath.Join(dir, "cert-manager.io_certificates.yaml"),
			filepath.Join(dir, "cert-manager.io_issuers.yaml"),
			filepath.Join(dir, "cert-manager.io_clusterissuers.yaml"),
		},
		ErrorIfPathMissing: true,
		MaxTime:            time.Minute,
	})
	if err != nil {
		return fmt.Errorf("installing cert-manager CRDs: %w", err)
	}
	return nil
}

// runTool runs a binary with a bounded time and returns stdout; stderr goes into the error.
func runTool(env []string, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdBudget)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = repoRoot
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

func helm(args ...string) (string, error) { return runTool(helmEnv, helmBin, args...) }

// decodeObjects splits a multi-document YAML stream into objects, dropping empty documents.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}
