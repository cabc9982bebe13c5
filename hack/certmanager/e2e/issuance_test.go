package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"testing"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestIssuesRenewsAndInjects walks the chain the operator's charts rely on: a SelfSigned
// Issuer signs a CA, a CA ClusterIssuer (key pair in the cluster resource namespace) signs
// a serving certificate, a cmctl-style renewal reissues it, and cainjector puts the CA into
// a webhook configuration.
func TestIssuesRenewsAndInjects(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	metricsAddr, healthAddr := freeAddr(t), freeAddr(t)
	// The default --cluster-resource-namespace is cert-manager, used below.
	l := startLauncher(t, "--metrics-bind-address", metricsAddr, "--health-probe-bind-address", healthAddr)

	for _, ns := range []string{"cert-manager", "app"} {
		_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
	}

	start := time.Now()
	_, err := cm.CertmanagerV1().Issuers("cert-manager").Create(ctx, &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Name: "selfsigned"},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	eventually(t, l, time.Minute, func(ctx context.Context) error {
		iss, err := cm.CertmanagerV1().Issuers("cert-manager").Get(ctx, "selfsigned", metav1.GetOptions{})
		if err != nil {
			return err
		}
		return issuerReady(iss.Status.Conditions, iss.Generation)
	})
	t.Logf("SelfSigned Issuer Ready %s after the launcher started", time.Since(start).Round(10*time.Millisecond))

	start = time.Now()
	_, err = cm.CertmanagerV1().Certificates("cert-manager").Create(ctx, &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Name: "local-ca"},
		Spec: cmapi.CertificateSpec{
			IsCA:       true,
			CommonName: "cert-manager-local test CA",
			SecretName: "local-ca",
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:  cmmeta.IssuerReference{Name: "selfsigned", Kind: "Issuer"},
		},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	eventually(t, l, time.Minute, certificateReady("cert-manager", "local-ca", 1))
	t.Logf("CA Certificate Ready in %s", time.Since(start).Round(10*time.Millisecond))

	start = time.Now()
	_, err = cm.CertmanagerV1().ClusterIssuers().Create(ctx, &cmapi.ClusterIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "local-ca"},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "local-ca"}}},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	eventually(t, l, time.Minute, func(ctx context.Context) error {
		iss, err := cm.CertmanagerV1().ClusterIssuers().Get(ctx, "local-ca", metav1.GetOptions{})
		if err != nil {
			return err
		}
		return issuerReady(iss.Status.Conditions, iss.Generation)
	})
	t.Logf("CA ClusterIssuer Ready in %s", time.Since(start).Round(10*time.Millisecond))

	start = time.Now()
	_, err = cm.CertmanagerV1().Certificates("app").Create(ctx, &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Name: "leaf"},
		Spec: cmapi.CertificateSpec{
			DNSNames:   []string{"leaf.app.svc", "leaf.app.svc.cluster.local"},
			SecretName: "leaf-tls",
			IssuerRef:  cmmeta.IssuerReference{Name: "local-ca", Kind: "ClusterIssuer"},
		},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	eventually(t, l, time.Minute, certificateReady("app", "leaf", 1))
	t.Logf("leaf Certificate Ready with its Secret in %s", time.Since(start).Round(10*time.Millisecond))

	caSecret, err := kube.CoreV1().Secrets("cert-manager").Get(ctx, "local-ca", metav1.GetOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	ca := parseCert(t, caSecret.Data["tls.crt"])
	g.Expect(ca.IsCA).To(BeTrue(), "the CA Certificate's certificate is a CA")
	leafSecret, err := kube.CoreV1().Secrets("app").Get(ctx, "leaf-tls", metav1.GetOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(leafSecret.Data["ca.crt"]).To(Equal(caSecret.Data["tls.crt"]), "ca.crt is the CA that signed the leaf")
	first := verifyLeaf(t, leafSecret.Data, ca)

	// Renew the way `cmctl renew` does: Issuing=True on the Certificate status.
	start = time.Now()
	crt, err := cm.CertmanagerV1().Certificates("app").Get(ctx, "leaf", metav1.GetOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	apiutil.SetCertificateCondition(crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue,
		"ManuallyTriggered", "Certificate re-issuance manually triggered")
	_, err = cm.CertmanagerV1().Certificates("app").UpdateStatus(ctx, crt, metav1.UpdateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	eventually(t, l, time.Minute, certificateReady("app", "leaf", 2))
	leafSecret, err = kube.CoreV1().Secrets("app").Get(ctx, "leaf-tls", metav1.GetOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	second := verifyLeaf(t, leafSecret.Data, ca)
	g.Expect(second.SerialNumber).NotTo(Equal(first.SerialNumber), "renewal issued a new certificate")
	g.Expect(second.PublicKey).NotTo(Equal(first.PublicKey), "renewal rotated the key (rotationPolicy Always)")
	t.Logf("renewal: revision 2 Ready with a new serial in %s", time.Since(start).Round(10*time.Millisecond))

	start = time.Now()
	_, err = kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "cert-manager-local-test",
			Annotations: map[string]string{"cert-manager.io/inject-ca-from": "app/leaf"},
		},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name:                    "validate.leaf.app.svc",
			ClientConfig:            admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "app", Name: "leaf", Path: ptr.To("/validate")}},
			SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			FailurePolicy:           ptr.To(admissionv1.Ignore),
			// Matches nothing: this webhook exists to be injected, never called.
			ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"cert-manager-local-test": "never"}},
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
			}},
		}},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	eventually(t, l, time.Minute, func(ctx context.Context) error {
		vwc, err := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "cert-manager-local-test", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := vwc.Webhooks[0].ClientConfig.CABundle; !bytes.Equal(got, caSecret.Data["tls.crt"]) {
			return fmt.Errorf("caBundle is %d bytes, want the CA's %d: %w", len(got), len(caSecret.Data["tls.crt"]), errNotYet)
		}
		return nil
	})
	t.Logf("cainjector: caBundle injected into the ValidatingWebhookConfiguration in %s", time.Since(start).Round(10*time.Millisecond))

	g.Expect(httpGet(ctx, "http://"+healthAddr+"/livez")).To(ContainSubstring("ok"))
	g.Expect(httpGet(ctx, "http://"+metricsAddr+"/metrics")).To(ContainSubstring(`certmanager_certificate_ready_status{condition="True",issuer_group="",issuer_kind="ClusterIssuer",issuer_name="local-ca",name="leaf",namespace="app"} 1`))

	took, err := l.stop(45 * time.Second)
	g.Expect(err).NotTo(HaveOccurred(), "SIGTERM ends the launcher with exit status 0")
	t.Logf("stopped on SIGTERM in %s", took.Round(10*time.Millisecond))
}

// certificateReady checks Ready=True for the current generation at the given revision.
func certificateReady(namespace, name string, revision int) func(context.Context) error {
	return func(ctx context.Context) error {
		crt, err := cm.CertmanagerV1().Certificates(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !apiutil.CertificateHasConditionWithObservedGeneration(crt, cmapi.CertificateCondition{
			Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue, ObservedGeneration: crt.Generation,
		}) {
			return fmt.Errorf("Certificate %s/%s conditions %+v: %w", namespace, name, crt.Status.Conditions, errNotYet)
		}
		if crt.Status.Revision == nil || *crt.Status.Revision != revision {
			return fmt.Errorf("Certificate %s/%s revision %v, want %d: %w", namespace, name, crt.Status.Revision, revision, errNotYet)
		}
		if apiutil.CertificateHasCondition(crt, cmapi.CertificateCondition{Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue}) {
			return fmt.Errorf("Certificate %s/%s still issuing: %w", namespace, name, errNotYet)
		}
		return nil
	}
}

func issuerReady(conditions []cmapi.IssuerCondition, generation int64) error {
	for _, c := range conditions {
		if c.Type == cmapi.IssuerConditionReady && c.Status == cmmeta.ConditionTrue && c.ObservedGeneration == generation {
			return nil
		}
	}
	return fmt.Errorf("issuer conditions %+v: %w", conditions, errNotYet)
}

// verifyLeaf checks the Secret a client would mount: a key pair that matches, chaining to
// ca for the DNS names asked for, and returns the certificate.
func verifyLeaf(t *testing.T, data map[string][]byte, ca *x509.Certificate) *x509.Certificate {
	t.Helper()
	g := NewWithT(t)
	_, err := tls.X509KeyPair(data["tls.crt"], data["tls.key"])
	g.Expect(err).NotTo(HaveOccurred(), "tls.key matches tls.crt")
	leaf := parseCert(t, data["tls.crt"])
	g.Expect(leaf.IsCA).To(BeFalse())
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, name := range []string{"leaf.app.svc", "leaf.app.svc.cluster.local"} {
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		g.Expect(err).NotTo(HaveOccurred(), "the leaf chains to the CA for %s", name)
	}
	g.Expect(leaf.SerialNumber.Cmp(big.NewInt(0))).To(Equal(1))
	return leaf
}

func parseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("want a PEM CERTIFICATE, got %q", pemBytes)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return string(body), err
}
