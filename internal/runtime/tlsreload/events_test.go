package tlsreload

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/tlsreload/tlstest"
)

func TestWatchedNames(t *testing.T) {
	g := NewWithT(t)
	got := watchedNames("/etc/tls/tls.crt", "/etc/tls/./tls.key")
	g.Expect(got).To(Equal(map[string]bool{
		"/etc/tls/tls.crt": true,
		"/etc/tls/tls.key": true,
		"/etc/tls/..data":  true,
	}))
	got = watchedNames("certs/tls.crt", "keys/tls.key")
	g.Expect(got).To(HaveKey("certs/..data"))
	g.Expect(got).To(HaveKey("keys/..data"))
	g.Expect(got).NotTo(HaveKey("certs/audit.log"))
}

// startWatching runs r and waits until the directory watch is registered: a write to the
// certificate file must be seen (one coalesced check), so later counts are meaningful.
func startWatching(t *testing.T, r *Reloader, certFile string, pem []byte) {
	t.Helper()
	g := NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go r.Run(ctx)
	g.Eventually(func() int64 {
		g.Expect(os.WriteFile(certFile, pem, 0o600)).To(Succeed())
		return r.checks.Load()
	}, 5*time.Second, 100*time.Millisecond).Should(BeNumerically(">", 0))
	// Let the burst of the probing writes settle: wait until the count stops moving (on a
	// busy machine their events can arrive well after the first check).
	prev := r.checks.Load()
	g.Eventually(func() bool {
		time.Sleep(5 * r.opts.Coalesce)
		cur := r.checks.Load()
		settled := cur == prev
		prev = cur
		return settled
	}, 5*time.Second, time.Millisecond).Should(BeTrue())
}

func TestUnrelatedFileInTheDirectoryDoesNotReload(t *testing.T) {
	g := NewWithT(t)
	ca := tlstest.NewCA(t, "test-ca")
	leaf := ca.Issue(t, "first")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	g.Expect(os.WriteFile(certFile, leaf.CertPEM, 0o600)).To(Succeed())
	g.Expect(os.WriteFile(keyFile, leaf.KeyPEM, 0o600)).To(Succeed())
	r, err := New(certFile, keyFile, Options{PollInterval: time.Hour, Coalesce: 20 * time.Millisecond})
	g.Expect(err).NotTo(HaveOccurred())
	startWatching(t, r, certFile, leaf.CertPEM)
	before := r.checks.Load()

	// An audit log written line by line next to the certificate (the laptop layout).
	f, err := os.OpenFile(filepath.Join(dir, "audit.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = f.Close() }()
	for i := range 200 {
		_, err := fmt.Fprintf(f, "{\"line\":%d}\n", i)
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(os.WriteFile(filepath.Join(dir, "other.crt"), leaf.CertPEM, 0o600)).To(Succeed())
	g.Consistently(r.checks.Load, 300*time.Millisecond, 20*time.Millisecond).Should(Equal(before))
}

func TestBurstOfWritesCoalescesIntoOneReload(t *testing.T) {
	g := NewWithT(t)
	ca := tlstest.NewCA(t, "test-ca")
	first, second := ca.Issue(t, "first"), ca.Issue(t, "second")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	g.Expect(os.WriteFile(certFile, first.CertPEM, 0o600)).To(Succeed())
	g.Expect(os.WriteFile(keyFile, first.KeyPEM, 0o600)).To(Succeed())
	reloads := make(chan *tls.Certificate, 10)
	r, err := New(certFile, keyFile, Options{
		PollInterval: time.Hour,
		Coalesce:     300 * time.Millisecond,
		OnReload:     func(c *tls.Certificate) { reloads <- c },
	})
	g.Expect(err).NotTo(HaveOccurred())
	startWatching(t, r, certFile, first.CertPEM)
	before := r.checks.Load()

	// A rotator writing the key then the certificate, several times over: a reload between
	// the two writes would see a mismatched pair; one check after the burst sees the new one.
	for range 5 {
		g.Expect(os.WriteFile(keyFile, second.KeyPEM, 0o600)).To(Succeed())
		g.Expect(os.WriteFile(certFile, second.CertPEM, 0o600)).To(Succeed())
	}
	var got *tls.Certificate
	g.Eventually(reloads, 5*time.Second).Should(Receive(&got))
	g.Expect(got.Leaf.Subject.CommonName).To(Equal("second"))
	g.Expect(r.checks.Load() - before).To(Equal(int64(1)))
	g.Consistently(reloads, 400*time.Millisecond).ShouldNot(Receive())
}
