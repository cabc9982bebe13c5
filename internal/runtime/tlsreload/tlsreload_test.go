package tlsreload_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/tlsreload"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/tlsreload/tlstest"
)

// echoServer accepts TLS connections and echoes lines back.
func echoServer(t *testing.T, tc *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, addr string, ca *tlstest.CA, certs ...tls.Certificate) (*tls.Conn, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second}
	return tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", Certificates: certs})
}

func TestRotationOnSecretVolumeSwapKeepsOpenConnections(t *testing.T) {
	g := NewWithT(t)
	ca := tlstest.NewCA(t, "test-ca")
	first, second := ca.Issue(t, "first"), ca.Issue(t, "second")
	vol := tlstest.NewSecretVolume(t, first)

	reloaded := make(chan struct{}, 1)
	// A long poll interval proves the fsnotify path does the work.
	r, err := tlsreload.New(vol.CertFile(), vol.KeyFile(), tlsreload.Options{
		PollInterval: time.Hour,
		OnReload:     func(*tls.Certificate) { reloaded <- struct{}{} },
	})
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)

	tc, err := tlsreload.ServerConfig(config.TLS{MinVersion: "1.2"}, r)
	g.Expect(err).NotTo(HaveOccurred())
	addr := echoServer(t, tc)

	old, err := dial(t, addr, ca)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = old.Close() }()
	g.Expect(old.ConnectionState().PeerCertificates[0].Subject.CommonName).To(Equal("first"))

	time.Sleep(50 * time.Millisecond) // let the watcher register before the swap
	vol.Write(t, second)
	g.Eventually(reloaded, 5*time.Second).Should(Receive())

	fresh, err := dial(t, addr, ca)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = fresh.Close() }()
	g.Expect(fresh.ConnectionState().PeerCertificates[0].Subject.CommonName).To(Equal("second"))

	// The connection opened before the rotation still carries data.
	_, err = old.Write([]byte("still here\n"))
	g.Expect(err).NotTo(HaveOccurred())
	_ = old.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(old).ReadString('\n')
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(line).To(Equal("still here\n"))
}

func TestPollingFallbackAndBrokenPairKeepsOldCertificate(t *testing.T) {
	g := NewWithT(t)
	ca := tlstest.NewCA(t, "test-ca")
	first, second := ca.Issue(t, "first"), ca.Issue(t, "second")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	g.Expect(os.WriteFile(certFile, first.CertPEM, 0o600)).To(Succeed())
	g.Expect(os.WriteFile(keyFile, first.KeyPEM, 0o600)).To(Succeed())

	r, err := tlsreload.New(certFile, keyFile, tlsreload.Options{PollInterval: 20 * time.Millisecond})
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)

	// A certificate that does not match the key: the old pair stays in service.
	g.Expect(os.WriteFile(certFile, second.CertPEM, 0o600)).To(Succeed())
	g.Consistently(func() string { return r.Current().Leaf.Subject.CommonName }, 200*time.Millisecond).Should(Equal("first"))

	g.Expect(os.WriteFile(keyFile, second.KeyPEM, 0o600)).To(Succeed())
	g.Eventually(func() string { return r.Current().Leaf.Subject.CommonName }, 5*time.Second).Should(Equal("second"))
}

func TestNewFailsOnMissingFiles(t *testing.T) {
	g := NewWithT(t)
	_, err := tlsreload.New("/nonexistent/tls.crt", "/nonexistent/tls.key", tlsreload.Options{})
	g.Expect(err).To(MatchError(ContainSubstring("reading TLS file")))
}

func TestServerConfig(t *testing.T) {
	ca := tlstest.NewCA(t, "clients")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	srvCA := tlstest.NewCA(t, "server-ca")
	vol := tlstest.NewSecretVolume(t, srvCA.Issue(t, "server"))
	r, err := tlsreload.New(vol.CertFile(), vol.KeyFile(), tlsreload.Options{ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		cfg        config.TLS
		minVersion uint16
		clientAuth tls.ClientAuthType
		err        string
	}{
		{name: "defaults", cfg: config.TLS{MinVersion: "1.2"}, minVersion: tls.VersionTLS12, clientAuth: tls.NoClientCert},
		{name: "tls13", cfg: config.TLS{MinVersion: "1.3"}, minVersion: tls.VersionTLS13, clientAuth: tls.NoClientCert},
		{name: "request", cfg: config.TLS{ClientAuth: "request", ClientCAFile: caFile}, minVersion: tls.VersionTLS12, clientAuth: tls.VerifyClientCertIfGiven},
		{name: "require", cfg: config.TLS{ClientAuth: "require", ClientCAFile: caFile}, minVersion: tls.VersionTLS12, clientAuth: tls.RequireAndVerifyClientCert},
		{name: "CA file the reloader does not watch", cfg: config.TLS{ClientAuth: "require", ClientCAFile: "/elsewhere/ca.pem"}, err: "tls.clientCAFile"},
		{name: "bad mode", cfg: config.TLS{ClientAuth: "sometimes"}, err: "tls.clientAuth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := tlsreload.ServerConfig(tc.cfg, r)
			if tc.err != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.err)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.MinVersion).To(Equal(tc.minVersion))
			g.Expect(got.ClientAuth).To(Equal(tc.clientAuth))
		})
	}

	g := NewWithT(t)
	_, err = tlsreload.New(vol.CertFile(), vol.KeyFile(), tlsreload.Options{ClientCAFile: "/nonexistent"})
	g.Expect(err).To(MatchError(ContainSubstring("/nonexistent")))
	_, err = tlsreload.New(vol.CertFile(), vol.KeyFile(), tlsreload.Options{ClientCAFile: vol.KeyFile()})
	g.Expect(err).To(MatchError(ContainSubstring("holds no PEM certificate")))
}

func TestRequiredClientCertificateIsEnforced(t *testing.T) {
	g := NewWithT(t)
	clientCA, otherCA := tlstest.NewCA(t, "clients"), tlstest.NewCA(t, "other")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	g.Expect(os.WriteFile(caFile, clientCA.CertPEM, 0o600)).To(Succeed())
	srvCA := tlstest.NewCA(t, "server-ca")
	vol := tlstest.NewSecretVolume(t, srvCA.Issue(t, "server"))
	r, err := tlsreload.New(vol.CertFile(), vol.KeyFile(), tlsreload.Options{ClientCAFile: caFile})
	g.Expect(err).NotTo(HaveOccurred())
	tc, err := tlsreload.ServerConfig(config.TLS{ClientAuth: "require", ClientCAFile: caFile, MinVersion: "1.3"}, r)
	g.Expect(err).NotTo(HaveOccurred())
	addr := echoServer(t, tc)

	roundTrip := clientRoundTrip(t, addr, srvCA)
	g.Expect(roundTrip(clientCA.Issue(t, "alice").TLSCertificate(t))).To(Succeed())
	g.Expect(roundTrip()).NotTo(Succeed())
	g.Expect(roundTrip(otherCA.Issue(t, "mallory").TLSCertificate(t))).NotTo(Succeed())
}

// clientRoundTrip dials addr with the given client certificates and echoes one line.
func clientRoundTrip(t *testing.T, addr string, srvCA *tlstest.CA) func(certs ...tls.Certificate) error {
	return func(certs ...tls.Certificate) error {
		c, err := dial(t, addr, srvCA, certs...)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		// TLS 1.3 reports a rejected client certificate on the first read.
		if _, err := c.Write([]byte("x\n")); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = bufio.NewReader(c).ReadString('\n')
		return err
	}
}

// Replacing the client CA bundle (a CA rotation, a revoked intermediate dropped) takes effect
// for new handshakes without a restart; connections verified before keep going; a broken
// bundle keeps the previous one.
func TestClientCARotation(t *testing.T) {
	g := NewWithT(t)
	oldCA, newCA := tlstest.NewCA(t, "clients-2025"), tlstest.NewCA(t, "clients-2026")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	replace := func(content []byte) {
		tmp := caFile + ".tmp"
		g.Expect(os.WriteFile(tmp, content, 0o600)).To(Succeed())
		g.Expect(os.Rename(tmp, caFile)).To(Succeed())
	}
	replace(oldCA.CertPEM)
	srvCA := tlstest.NewCA(t, "server-ca")
	vol := tlstest.NewSecretVolume(t, srvCA.Issue(t, "server"))
	r, err := tlsreload.New(vol.CertFile(), vol.KeyFile(), tlsreload.Options{ClientCAFile: caFile, PollInterval: time.Hour})
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	tc, err := tlsreload.ServerConfig(config.TLS{ClientAuth: "require", ClientCAFile: caFile}, r)
	g.Expect(err).NotTo(HaveOccurred())
	addr := echoServer(t, tc)
	roundTrip := clientRoundTrip(t, addr, srvCA)
	alice, bob := oldCA.Issue(t, "alice").TLSCertificate(t), newCA.Issue(t, "bob").TLSCertificate(t)

	g.Expect(roundTrip(alice)).To(Succeed())
	g.Expect(roundTrip(bob)).To(MatchError(ContainSubstring("remote error: tls:")))
	open, err := dial(t, addr, srvCA, alice)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = open.Close() }()

	time.Sleep(50 * time.Millisecond) // let the watcher register before the swap
	replace(newCA.CertPEM)
	g.Eventually(func() error { return roundTrip(bob) }, 5*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(roundTrip(alice)).NotTo(Succeed(), "the replaced CA no longer verifies anyone")

	_, err = open.Write([]byte("still here\n"))
	g.Expect(err).NotTo(HaveOccurred())
	_ = open.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(open).ReadString('\n')
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(line).To(Equal("still here\n"), "a connection verified before the rotation stays open")

	replace([]byte("not a certificate"))
	g.Consistently(func() error { return roundTrip(bob) }, 300*time.Millisecond, 50*time.Millisecond).Should(Succeed(),
		"a broken bundle keeps the previous one")

	// A broken bundle does not hold back a renewed server certificate.
	vol.Write(t, srvCA.Issue(t, "server-renewed"))
	g.Eventually(func() string { return r.Current().Leaf.Subject.CommonName }, 5*time.Second).Should(Equal("server-renewed"))
	g.Expect(roundTrip(bob)).To(Succeed())
}

// A certificate file that gains an intermediate (the Secret was fixed, or the CA changed
// its chain) while the leaf stays the same is served with the new chain: clients that need
// the intermediate must not wait for a restart.
func TestChainChangeWithSameLeafIsReloaded(t *testing.T) {
	g := NewWithT(t)
	ca := tlstest.NewCA(t, "test-ca")
	leaf := ca.Issue(t, "server")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	g.Expect(os.WriteFile(certFile, leaf.CertPEM, 0o600)).To(Succeed())
	g.Expect(os.WriteFile(keyFile, leaf.KeyPEM, 0o600)).To(Succeed())

	r, err := tlsreload.New(certFile, keyFile, tlsreload.Options{PollInterval: 20 * time.Millisecond})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.Current().Certificate).To(HaveLen(1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)

	g.Expect(os.WriteFile(certFile, append(append([]byte{}, leaf.CertPEM...), ca.CertPEM...), 0o600)).To(Succeed())
	g.Eventually(func() int { return len(r.Current().Certificate) }, 5*time.Second).Should(Equal(2))
}
