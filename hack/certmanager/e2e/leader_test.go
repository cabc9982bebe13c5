package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestLeaderElection: with --leader-elect the launcher holds cert-manager's own Leases (so it
// takes turns with an in-cluster cert-manager), issues once it leads, and hands the Leases
// back on SIGTERM so a successor does not wait out the lease duration.
func TestLeaderElection(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	const ns = "leader-test"
	_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())

	start := time.Now()
	l := startLauncher(t, "--leader-elect", "--leader-election-namespace", ns, "--cluster-resource-namespace", ns)
	leases := []string{"cert-manager-controller", "cert-manager-cainjector-leader-election"}
	for _, name := range leases {
		eventually(t, l, time.Minute, func(ctx context.Context) error {
			lease, err := kube.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
				return fmt.Errorf("Lease %s/%s has no holder: %w", ns, name, errNotYet)
			}
			return nil
		})
	}
	t.Logf("both Leases held %s after start", time.Since(start).Round(10*time.Millisecond))

	_, err = cm.CertmanagerV1().Issuers(ns).Create(ctx, &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Name: "selfsigned"},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = cm.CertmanagerV1().Certificates(ns).Create(ctx, &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Name: "elected"},
		Spec: cmapi.CertificateSpec{
			DNSNames:   []string{"elected.leader-test.svc"},
			SecretName: "elected-tls",
			IssuerRef:  cmmeta.IssuerReference{Name: "selfsigned", Kind: "Issuer"},
		},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	eventually(t, l, time.Minute, certificateReady(ns, "elected", 1))

	took, err := l.stop(45 * time.Second)
	g.Expect(err).NotTo(HaveOccurred(), "SIGTERM ends the launcher with exit status 0")
	t.Logf("stopped on SIGTERM in %s", took.Round(10*time.Millisecond))
	for _, name := range leases {
		lease, err := kube.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(lease.Spec.HolderIdentity).To(Or(BeNil(), HaveValue(BeEmpty())), "Lease %s released on shutdown", name)
	}
}
