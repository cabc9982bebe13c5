package controllers

import (
	"os"
	"os/exec"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

var kcm *exec.Cmd

// startControllerManager runs the real kube-controller-manager's garbage collector beside
// envtest, so owner references are proven by real garbage collection.
func startControllerManager() {
	if kcm != nil {
		return
	}
	user, err := testEnv.AddUser(envtest.User{Name: "kcm", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	kubeconfig, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	dir := GinkgoT().TempDir()
	path := filepath.Join(dir, "kcm.kubeconfig")
	Expect(os.WriteFile(path, kubeconfig, 0o600)).To(Succeed())
	kcm = exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kube-controller-manager"),
		"--kubeconfig="+path,
		"--authentication-kubeconfig="+path,
		"--authorization-kubeconfig="+path,
		"--controllers=garbage-collector-controller",
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
	)
	log, err := os.Create(filepath.Join(dir, "kcm.log"))
	Expect(err).NotTo(HaveOccurred())
	kcm.Stdout, kcm.Stderr = log, log
	Expect(kcm.Start()).To(Succeed())
	DeferCleanup(func() {
		if CurrentSpecReport().Failed() {
			b, _ := os.ReadFile(log.Name())
			GinkgoWriter.Printf("kube-controller-manager log:\n%s\n", tail(b, 4000))
		}
	})
}

func stopControllerManager() {
	if kcm == nil || kcm.Process == nil {
		return
	}
	_ = kcm.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = kcm.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = kcm.Process.Kill()
	}
	kcm = nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
