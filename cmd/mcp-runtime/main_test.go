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
