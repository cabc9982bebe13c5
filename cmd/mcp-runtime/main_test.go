package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/sysmon"
	"github.com/mcpfleet/mcp-fleet-operator/internal/testutil"
	"github.com/mcpfleet/mcp-fleet-operator/internal/version"
)

func TestVersion(t *testing.T) {
	g := NewWithT(t)
	var out, errOut bytes.Buffer
	g.Expect(run([]string{"version"}, &out, &errOut)).To(Equal(0))
	g.Expect(out.String()).To(Equal(version.Version + "\n"))
}

func TestUsageErrors(t *testing.T) {
	g := NewWithT(t)
	var out, errOut bytes.Buffer
	g.Expect(run(nil, &out, &errOut)).To(Equal(2))
	g.Expect(run([]string{"frobnicate"}, &out, &errOut)).To(Equal(2))
	g.Expect(errOut.String()).To(ContainSubstring(`unknown command "frobnicate"`))
	errOut.Reset()
	g.Expect(run([]string{"serve"}, &out, &errOut)).To(Equal(2))
	g.Expect(errOut.String()).To(ContainSubstring("--config is required"))
}

func TestInvalidConfigNamesTheField(t *testing.T) {
	g := NewWithT(t)
	cfg := filepath.Join(t.TempDir(), "runtime.yaml")
	g.Expect(os.WriteFile(cfg, []byte("tls: {insecure: true}\nlimits: {maxDepth: 5000}\n"), 0o600)).To(Succeed())
	var out, errOut bytes.Buffer
	g.Expect(run([]string{"serve", "--config", cfg}, &out, &errOut)).To(Equal(1))
	g.Expect(errOut.String()).To(ContainSubstring("limits.maxDepth"))
	g.Expect(errOut.String()).To(ContainSubstring("auth: no authentication configured"))
}

func TestInstallCopiesItselfAtomically(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	g.Expect(run([]string{"install", dir}, &out, &errOut)).To(Equal(0), errOut.String())
	dst := filepath.Join(dir, "mcp-runtime")
	fi, err := os.Stat(dst)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o755)))
	self, _ := os.Executable()
	want, _ := os.ReadFile(self)
	got, _ := os.ReadFile(dst)
	g.Expect(bytes.Equal(got, want)).To(BeTrue(), "the installed file is this executable")
	entries, _ := os.ReadDir(dir)
	g.Expect(entries).To(HaveLen(1), "no temporary file is left behind")

	g.Expect(run([]string{"install", filepath.Join(dir, "missing")}, &out, &errOut)).To(Equal(1))
}

// The token command refuses bad flags before it reads any kubeconfig; the cluster path
// is tested against a real API server in internal/tokenmint.
func TestTokenFlagErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-kubeconfig")
	cases := []struct {
		args []string
		says string
	}{
		{[]string{}, "--server is required"},
		{[]string{"--server", "demo", "--ttl", "25h"}, "--ttl 25h0m0s must be more than 0s and at most 24h0m0s"},
		{[]string{"--server", "demo", "--ttl", "0s"}, "--ttl 0s must be more than 0s"},
		{[]string{"--server", "demo", "--scopes", "a,b c"}, `--scopes: "b c" is not a scope token`},
		{[]string{"--server", "demo", "--subject", ""}, "--subject must not be empty"},
		{[]string{"--server", "demo", "extra"}, `unexpected argument "extra"`},
		{[]string{"--server", "demo", "--frobnicate"}, "flag provided but not defined: -frobnicate"},
	}
	for _, c := range cases {
		g := NewWithT(t)
		var out, errOut bytes.Buffer
		g.Expect(run(append([]string{"token", "--kubeconfig", missing}, c.args...), &out, &errOut)).To(Equal(2), "%v", c.args)
		g.Expect(errOut.String()).To(ContainSubstring(c.says))
		g.Expect(out.String()).To(BeEmpty())
	}

	g := NewWithT(t)
	var out, errOut bytes.Buffer
	g.Expect(run([]string{"token", "--kubeconfig", missing, "--server", "demo"}, &out, &errOut)).To(Equal(1))
	g.Expect(errOut.String()).To(ContainSubstring("loading the kubeconfig (set --kubeconfig, KUBECONFIG or --context)"))
	g.Expect(out.String()).To(BeEmpty())

	out.Reset()
	g.Expect(run([]string{"help"}, &out, &errOut)).To(Equal(0))
	g.Expect(out.String()).To(ContainSubstring("mcp-runtime token --server NAME"))
}

// asMainVar makes the test binary run main() instead of the tests, so a test can start it
// as the mcp-runtime executable.
const asMainVar = "MCP_RUNTIME_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainVar) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestKeepSchedulerAwake runs `serve` as its own process: with tuning.keepSchedulerAwake it
// runs with sysmon's GODEBUG setting and its upstream does not; without it neither does.
func TestKeepSchedulerAwake(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/PID/environ")
	}
	for _, awake := range []bool{true, false} {
		t.Run(fmt.Sprintf("keepSchedulerAwake=%v", awake), func(t *testing.T) {
			g := NewWithT(t)
			dir := t.TempDir()
			cfg := filepath.Join(dir, "runtime.yaml")
			ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port for health: the two addresses must differ
			g.Expect(err).NotTo(HaveOccurred())
			health := ln.Addr().String()
			_ = ln.Close()
			g.Expect(os.WriteFile(cfg, fmt.Appendf(nil, `listen: {address: "127.0.0.1:0", healthAddress: %q}
tls: {insecure: true}
auth: {anonymous: true}
tuning: {keepSchedulerAwake: %v}
`, health, awake), 0o600)).To(Succeed())
			childEnv := filepath.Join(dir, "child.env")
			cmd := exec.Command(os.Args[0], "serve", "--config", cfg, "--drain-timeout", "1s", "--",
				"sh", "-c", `env > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 30`, childEnv)
			cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") }),
				asMainVar+"=1")
			var stderr testutil.SyncBuffer
			cmd.Stderr = &stderr
			g.Expect(cmd.Start()).To(Succeed())
			t.Cleanup(func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				done := make(chan struct{})
				go func() { _ = cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
			})
			g.Eventually(func() error { _, err := os.Stat(childEnv); return err }, 15*time.Second, 20*time.Millisecond).Should(Succeed(),
				func() string { return "the upstream never started; runtime stderr:\n" + stderr.String() })

			raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
			g.Expect(err).NotTo(HaveOccurred())
			execEnv := strings.Split(string(raw), "\x00")
			if awake {
				g.Expect(execEnv).To(ContainElement("GODEBUG="+sysmon.Setting), "the runtime re-executed itself with the setting")
			} else {
				g.Expect(execEnv).NotTo(ContainElement(HavePrefix("GODEBUG=")))
			}
			child, err := os.ReadFile(childEnv)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(string(child)).NotTo(ContainSubstring("GODEBUG="), "the upstream gets the environment the runtime was given")
			g.Expect(string(child)).NotTo(ContainSubstring("MCP_RUNTIME_ORIGINAL_GODEBUG"))
			g.Expect(string(child)).To(ContainSubstring(asMainVar + "=1"))
		})
	}
}
