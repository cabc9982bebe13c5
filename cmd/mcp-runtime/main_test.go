package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"

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
