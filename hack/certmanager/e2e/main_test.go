// Package e2e runs the cert-manager-local binary against a real kube-apiserver (envtest) and
// checks what a user of the local cluster relies on: issuance through a CA chain, renewal,
// CA injection, leader election and clean shutdown.
package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

var (
	launcherBin string // the binary under test
	kubeconfig  string // admin kubeconfig the launcher runs with
	kube        kubernetes.Interface
	cm          cmclient.Interface
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run `make test-certmanager`, or export KUBEBUILDER_ASSETS=\"$(hack/envtest.sh)\"")
		return 1
	}
	dir, err := os.MkdirTemp("", "cert-manager-local-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()

	if launcherBin, err = launcherBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	crds, err := crdPath()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env := &envtest.Environment{CRDInstallOptions: envtest.CRDInstallOptions{Paths: []string{crds}, ErrorIfPathMissing: true}}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()

	user, err := env.AddUser(envtest.User{Name: "cert-manager-local", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "adding the launcher's user:", err)
		return 1
	}
	b, err := user.KubeConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, b, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if kube, err = kubernetes.NewForConfig(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if cm, err = cmclient.NewForConfig(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// launcherBinary is $CERT_MANAGER_LOCAL (what `hack/certmanager.sh build` printed), else a
// fresh build of this module's launcher.
func launcherBinary(dir string) (string, error) {
	if bin := os.Getenv("CERT_MANAGER_LOCAL"); bin != "" {
		return bin, nil
	}
	bin := filepath.Join(dir, "cert-manager-local")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/mcpfleet/mcp-fleet-operator/hack/certmanager")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the launcher (or set CERT_MANAGER_LOCAL): %w\n%s", err, out)
	}
	return bin, nil
}

// crdPath is $CERT_MANAGER_CRDS (what `hack/certmanager.sh crds` printed), else deploy/crds
// of the cert-manager module this module pins.
func crdPath() (string, error) {
	if p := os.Getenv("CERT_MANAGER_CRDS"); p != "" {
		return p, nil
	}
	var stderr bytes.Buffer
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating the cert-manager module (go list -m): %w: %s", err, stderr.String())
	}
	return filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds"), nil
}
