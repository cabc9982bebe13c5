package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
)

func TestParseFlags(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(value string) func(string) string {
		return func(key string) string {
			if key == "KUBECONFIG" {
				return value
			}
			return ""
		}
	}

	t.Run("defaults run out of cluster with no listeners and no leader election", func(t *testing.T) {
		g := NewWithT(t)
		o, err := parseFlags(nil, env(kubeconfig), io.Discard)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(o).To(Equal(options{
			kubeconfig:               kubeconfig,
			clusterResourceNamespace: "cert-manager",
			leaderElectionNamespace:  "kube-system",
			metricsAddr:              "0",
			healthAddr:               "0",
			verbosity:                2,
		}))
	})

	t.Run("flags override the defaults", func(t *testing.T) {
		g := NewWithT(t)
		o, err := parseFlags([]string{"--kubeconfig", kubeconfig, "--cluster-resource-namespace", "pki",
			"--leader-elect", "--leader-election-namespace", "locks",
			"--metrics-bind-address", "127.0.0.1:9402", "--health-probe-bind-address", "localhost:9403", "-v", "4"},
			env(""), io.Discard)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(o).To(Equal(options{
			kubeconfig:               kubeconfig,
			clusterResourceNamespace: "pki",
			leaderElect:              true,
			leaderElectionNamespace:  "locks",
			metricsAddr:              "127.0.0.1:9402",
			healthAddr:               "localhost:9403",
			verbosity:                4,
		}))
	})

	for _, tc := range []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"no kubeconfig anywhere", nil, "", "--kubeconfig is required (or set KUBECONFIG)"},
		{"kubeconfig file missing", []string{"--kubeconfig", "/nonexistent/kubeconfig"}, "", "--kubeconfig: stat /nonexistent/kubeconfig"},
		{"metrics on every interface", []string{"--metrics-bind-address", "0.0.0.0:9402"}, kubeconfig, "--metrics-bind-address \"0.0.0.0:9402\": host must be a loopback address"},
		{"health on an empty host", []string{"--health-probe-bind-address", ":9403"}, kubeconfig, "--health-probe-bind-address \":9403\": host must be a loopback address"},
		{"health without a port", []string{"--health-probe-bind-address", "127.0.0.1"}, kubeconfig, "want host:port on a loopback address"},
		{"empty cluster resource namespace", []string{"--cluster-resource-namespace="}, kubeconfig, "--cluster-resource-namespace must not be empty"},
		{"leader election without a namespace", []string{"--leader-elect", "--leader-election-namespace="}, kubeconfig, "--leader-election-namespace must not be empty"},
		{"negative verbosity", []string{"-v", "-1"}, kubeconfig, "-v must be 0 or more"},
		{"stray argument", []string{"run"}, kubeconfig, "unexpected arguments [\"run\"]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlags(tc.args, env(tc.env), io.Discard)
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}
}
