package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// managerUser is the identity the manager authenticates as; the audit log counts its
// writes and nobody else's.
const managerUser = "mcp-fleet-manager"

// auditPolicy records only the manager's writes, at Metadata level, once per request.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
- level: Metadata
  users: ["` + managerUser + `"]
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
`

// controlPlane is one fresh etcd + kube-apiserver with an audit log, so each scenario
// starts from an empty cluster.
type controlPlane struct {
	env       *envtest.Environment
	cfg       *rest.Config
	auditPath string
	dir       string
}

func startControlPlane(dir, assets string, withCertManager bool, moduleRoot string) (*controlPlane, error) {
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	cp := &controlPlane{dir: dir, auditPath: filepath.Join(dir, "audit.log")}
	crds := []string{filepath.Join(moduleRoot, "config", "crd", "bases")}
	if withCertManager {
		cmDir, err := certManagerCRDDir(moduleRoot)
		if err != nil {
			return nil, err
		}
		for _, f := range []string{"certificates", "issuers", "clusterissuers"} {
			crds = append(crds, filepath.Join(cmDir, "cert-manager.io_"+f+".yaml"))
		}
	}
	cp.env = &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        crds,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	cp.env.ControlPlane.GetAPIServer().Configure().
		// envtest's default /24 holds 254 Services; a cluster (kind: 10.96.0.0/16) holds more.
		Set("service-cluster-ip-range", "10.96.0.0/16").
		Set("audit-policy-file", policy).
		Set("audit-log-path", cp.auditPath).
		Set("audit-log-format", "json").
		Set("audit-log-mode", "blocking").
		Set("audit-log-maxsize", "0")
	cfg, err := cp.env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver (assets %s): %w", assets, err)
	}
	cp.cfg = cfg
	return cp, nil
}

func (cp *controlPlane) stop() error {
	if cp == nil || cp.env == nil {
		return nil
	}
	return cp.env.Stop()
}

// managerKubeconfig writes a kubeconfig for the manager's own user (cluster-admin, as the
// bench measures load, not RBAC).
func (cp *controlPlane) managerKubeconfig() (string, error) {
	u, err := cp.env.AddUser(envtest.User{Name: managerUser, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("adding the manager's user: %w", err)
	}
	b, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(cp.dir, "manager.kubeconfig")
	return path, os.WriteFile(path, b, 0o600)
}

// certManagerCRDDir finds deploy/crds in the cert-manager module pinned by go.mod.
func certManagerCRDDir(moduleRoot string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = moduleRoot
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating the cert-manager module (go list -m): %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("cert-manager CRDs: %w", err)
	}
	return dir, nil
}

// managerProcess is bin/manager running as its own process, as it runs in a cluster.
type managerProcess struct {
	cmd         *exec.Cmd
	metricsAddr string
	probeAddr   string
	logPath     string
	done        chan struct{}
}

func startManager(ctx context.Context, bin, kubeconfig, dir string) (*managerProcess, error) {
	metrics, err := freeAddr()
	if err != nil {
		return nil, err
	}
	probe, err := freeAddr()
	if err != nil {
		return nil, err
	}
	m := &managerProcess{metricsAddr: metrics, probeAddr: probe, logPath: filepath.Join(dir, "manager.log"), done: make(chan struct{})}
	log, err := os.Create(m.logPath)
	if err != nil {
		return nil, err
	}
	m.cmd = exec.Command(bin,
		"--metrics-bind-address="+metrics,
		"--health-probe-bind-address="+probe,
		"--runtime-image=ghcr.io/mcpfleet/mcp-runtime:bench",
		"--leader-elect=false",
	)
	m.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	m.cmd.Stdout, m.cmd.Stderr = log, log
	// The manager must not outlive the harness, even if the harness is killed.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		_ = log.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() { _ = m.cmd.Wait(); _ = log.Close(); close(m.done) }()

	deadline := time.Now().Add(time.Minute)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-m.done:
			return nil, fmt.Errorf("the manager exited during start-up; log:\n%s", tailFile(m.logPath, 3000))
		case <-ctx.Done():
			m.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if resp, err := client.Get("http://" + probe + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m, nil
			}
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, fmt.Errorf("the manager was not ready within a minute; log:\n%s", tailFile(m.logPath, 3000))
		}
	}
}

func (m *managerProcess) pid() int { return m.cmd.Process.Pid }

func (m *managerProcess) stop() {
	if m == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// moduleRoot is the directory of the go.mod that holds this harness.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the harness from inside the mcp-fleet-operator module")
	}
	return filepath.Dir(mod), nil
}
