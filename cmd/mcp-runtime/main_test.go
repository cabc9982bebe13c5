package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
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

// servedRuntime is `serve` running as its own process (the test binary as main()), with an
// upstream that writes its environment to childEnv and sleeps.
type servedRuntime struct {
	cmd      *exec.Cmd
	health   string // host:port of the health and metrics listener
	childEnv string
	stderr   *testutil.SyncBuffer
}

// startServe runs `serve` with tuning (a YAML flow mapping) and the environment of the
// test without GODEBUG and GOMAXPROCS, and waits until its upstream started.
func startServe(t *testing.T, tuning string) *servedRuntime {
	t.Helper()
	g := NewWithT(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "runtime.yaml")
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port for health: the two addresses must differ
	g.Expect(err).NotTo(HaveOccurred())
	r := &servedRuntime{health: ln.Addr().String(), childEnv: filepath.Join(dir, "child.env"), stderr: &testutil.SyncBuffer{}}
	_ = ln.Close()
	g.Expect(os.WriteFile(cfg, fmt.Appendf(nil, `listen: {address: "127.0.0.1:0", healthAddress: %q}
tls: {insecure: true}
auth: {anonymous: true}
tuning: %s
`, r.health, tuning), 0o600)).To(Succeed())
	r.cmd = exec.Command(os.Args[0], "serve", "--config", cfg, "--drain-timeout", "1s", "--",
		"sh", "-c", `env > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 30`, r.childEnv)
	r.cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "GODEBUG=") || strings.HasPrefix(kv, "GOMAXPROCS=")
	}), asMainVar+"=1")
	r.cmd.Stderr = r.stderr
	g.Expect(r.cmd.Start()).To(Succeed())
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = r.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = r.cmd.Process.Kill()
			<-done
		}
	})
	g.Eventually(func() error { _, err := os.Stat(r.childEnv); return err }, 15*time.Second, 20*time.Millisecond).Should(Succeed(),
		func() string { return "the upstream never started; runtime stderr:\n" + r.stderr.String() })
	return r
}

// TestKeepSchedulerAwake: with tuning.keepSchedulerAwake `serve` runs with sysmon's GODEBUG
// setting and its upstream does not; without it neither does.
func TestKeepSchedulerAwake(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/PID/environ")
	}
	for _, awake := range []bool{true, false} {
		t.Run(fmt.Sprintf("keepSchedulerAwake=%v", awake), func(t *testing.T) {
			g := NewWithT(t)
			r := startServe(t, fmt.Sprintf("{keepSchedulerAwake: %v}", awake))
			raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", r.cmd.Process.Pid))
			g.Expect(err).NotTo(HaveOccurred())
			execEnv := strings.Split(string(raw), "\x00")
			if awake {
				g.Expect(execEnv).To(ContainElement("GODEBUG="+sysmon.Setting), "the runtime re-executed itself with the setting")
			} else {
				g.Expect(execEnv).NotTo(ContainElement(HavePrefix("GODEBUG=")))
			}
			child, err := os.ReadFile(r.childEnv)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(string(child)).NotTo(ContainSubstring("GODEBUG="), "the upstream gets the environment the runtime was given")
			g.Expect(string(child)).NotTo(ContainSubstring("MCP_RUNTIME_ORIGINAL_GODEBUG"))
			g.Expect(string(child)).To(ContainSubstring(asMainVar + "=1"))
		})
	}
}

// TestGOMAXPROCSFollowsTheLoad: an idle `serve` runs on one P (package procs), with
// tuning.staticProcs on Go's default, as its metrics show; the upstream's environment
// has no GOMAXPROCS either way.
func TestGOMAXPROCSFollowsTheLoad(t *testing.T) {
	goDefault := runtime.GOMAXPROCS(0)
	if _, set := os.LookupEnv("GOMAXPROCS"); set || goDefault < 2 {
		t.Skip("needs Go's default GOMAXPROCS above one (GOMAXPROCS unset, two or more CPUs)")
	}
	for _, static := range []bool{false, true} {
		t.Run(fmt.Sprintf("staticProcs=%v", static), func(t *testing.T) {
			g := NewWithT(t)
			r := startServe(t, fmt.Sprintf("{staticProcs: %v}", static))
			want := 1
			if static {
				want = goDefault
			}
			gomaxprocs := func() string {
				resp, err := http.Get("http://" + r.health + "/metrics")
				if err != nil {
					return err.Error()
				}
				defer func() { _ = resp.Body.Close() }()
				b, _ := io.ReadAll(resp.Body)
				for _, line := range strings.Split(string(b), "\n") {
					if strings.HasPrefix(line, "go_sched_gomaxprocs_threads ") {
						return line
					}
				}
				return "no go_sched_gomaxprocs_threads in /metrics"
			}
			g.Eventually(gomaxprocs, 10*time.Second, 50*time.Millisecond).Should(Equal(fmt.Sprintf("go_sched_gomaxprocs_threads %d", want)),
				func() string { return "runtime stderr:\n" + r.stderr.String() })
			g.Consistently(gomaxprocs, 2500*time.Millisecond, 250*time.Millisecond).Should(Equal(fmt.Sprintf("go_sched_gomaxprocs_threads %d", want)),
				"idle, it stays there")
			child, err := os.ReadFile(r.childEnv)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(string(child)).NotTo(ContainSubstring("GOMAXPROCS="))
		})
	}
}
