package controllers

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// Condition types. Ready summarises; Reconciling and Stalled follow kstatus and are present
// only while true.
const (
	ConditionReady            = "Ready"
	ConditionReconciling      = "Reconciling"
	ConditionStalled          = "Stalled"
	ConditionCertificateReady = "CertificateReady"
	ConditionAvailable        = "Available"
)

// ReasonProgressDeadlineExceeded: the Deployment controller gave up waiting for the pods
// (progressDeadlineSeconds). It does not settle by itself, so it is Stalled, as kstatus
// and Argo CD judge the Deployment itself.
const ReasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"

func configFileKey() string { return config.FileName }

// computeStatus derives the whole status from what the reconcile observed.
func computeStatus(s *mcpv1alpha1.MCPServer, sc *scope, o resources.Options, reconcileErr error) {
	st := &s.Status
	gen := s.Generation
	set := func(t string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen})
	}
	st.ObservedGeneration = gen
	st.URL = resources.URL(s, o)
	st.InsecureOptions = resources.InsecureOptions(s)
	st.Replicas = 1
	if s.Spec.Replicas != nil {
		st.Replicas = *s.Spec.Replicas
	}
	st.Selector = metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: resources.SelectorLabels(s)})

	certOK, certReason, certMsg := certificateState(s, sc)
	switch {
	case s.Spec.TLS.InsecureDisabled:
		meta.RemoveStatusCondition(&st.Conditions, ConditionCertificateReady)
		st.CertificateNotAfter = nil
	default:
		status := metav1.ConditionFalse
		if certOK {
			status = metav1.ConditionTrue
		}
		set(ConditionCertificateReady, status, certReason, certMsg)
		st.CertificateNotAfter = nil
		if sc.certificate != nil && sc.certificate.Status.NotAfter != nil {
			na := *sc.certificate.Status.NotAfter
			st.CertificateNotAfter = &na
		}
	}

	setPolicyCondition(st, sc, gen)

	availOK, availReason, availMsg := deploymentState(sc.deployment, st.Replicas)
	st.ReadyReplicas = 0
	if sc.deployment != nil {
		st.ReadyReplicas = sc.deployment.Status.ReadyReplicas
	}
	if availOK {
		set(ConditionAvailable, metav1.ConditionTrue, availReason, availMsg)
	} else {
		set(ConditionAvailable, metav1.ConditionFalse, availReason, availMsg)
	}

	switch {
	case sc.stalled != nil:
		set(ConditionStalled, metav1.ConditionTrue, sc.stalled.reason, sc.stalled.message)
		meta.RemoveStatusCondition(&st.Conditions, ConditionReconciling)
		set(ConditionReady, metav1.ConditionFalse, sc.stalled.reason, sc.stalled.message)
	case reconcileErr != nil:
		meta.RemoveStatusCondition(&st.Conditions, ConditionStalled)
		set(ConditionReconciling, metav1.ConditionTrue, "RetryingAfterError", "Retrying after a transient error")
		set(ConditionReady, metav1.ConditionFalse, "ReconcileError", truncate(reconcileErr.Error()))
	case !certOK:
		meta.RemoveStatusCondition(&st.Conditions, ConditionStalled)
		set(ConditionReconciling, metav1.ConditionTrue, "WaitingForCertificate", certMsg)
		set(ConditionReady, metav1.ConditionFalse, "WaitingForCertificate", certMsg)
	case availReason == ReasonProgressDeadlineExceeded:
		set(ConditionStalled, metav1.ConditionTrue, availReason, availMsg)
		meta.RemoveStatusCondition(&st.Conditions, ConditionReconciling)
		set(ConditionReady, metav1.ConditionFalse, availReason, availMsg)
	case !availOK:
		meta.RemoveStatusCondition(&st.Conditions, ConditionStalled)
		set(ConditionReconciling, metav1.ConditionTrue, availReason, availMsg)
		set(ConditionReady, metav1.ConditionFalse, availReason, availMsg)
	default:
		meta.RemoveStatusCondition(&st.Conditions, ConditionStalled)
		meta.RemoveStatusCondition(&st.Conditions, ConditionReconciling)
		reason, msg := "Serving", "Serving at "+st.URL
		if st.Replicas == 0 { // as asked, so Ready (kstatus Current), but nothing answers
			reason, msg = "ScaledToZero", "Scaled to zero replicas: nothing serves at "+st.URL
		}
		if len(st.InsecureOptions) > 0 {
			msg += fmt.Sprintf(" with insecure options %v", st.InsecureOptions)
		}
		set(ConditionReady, metav1.ConditionTrue, reason, msg)
	}
}

// certificateState reports whether the serving certificate is usable.
func certificateState(s *mcpv1alpha1.MCPServer, sc *scope) (bool, string, string) {
	switch {
	case s.Spec.TLS.InsecureDisabled:
		return true, "TLSDisabled", "TLS is disabled"
	case s.Spec.TLS.SecretName != "":
		return true, "UserProvided", fmt.Sprintf("Certificate from Secret %s, managed by you", s.Spec.TLS.SecretName)
	case sc.stalled != nil && sc.stalled.reason == "CertManagerNotInstalled":
		return false, sc.stalled.reason, sc.stalled.message
	case sc.certificate == nil:
		return false, "Pending", "Waiting for cert-manager to issue the certificate"
	}
	c := sc.certificate
	for _, cond := range c.Status.Conditions {
		if cond.Type != cmv1.CertificateConditionReady {
			continue
		}
		if cond.ObservedGeneration != 0 && cond.ObservedGeneration < c.Generation {
			return false, "Pending", "cert-manager has not yet observed the latest Certificate"
		}
		if cond.Status == cmmeta.ConditionTrue {
			return true, "Issued", "Certificate issued into Secret " + c.Spec.SecretName
		}
		return false, "NotIssued", truncate(fmt.Sprintf("cert-manager: %s: %s", cond.Reason, cond.Message))
	}
	return false, "Pending", "Waiting for cert-manager to issue the certificate"
}

// deploymentState reports whether the Deployment has rolled out all ready replicas.
func deploymentState(d *appsv1.Deployment, want int32) (bool, string, string) {
	if d == nil {
		return false, "DeploymentCreating", "Waiting for the Deployment to be created"
	}
	st := d.Status
	switch {
	case st.ObservedGeneration < d.Generation:
		return false, "RollingOut", "Waiting for the Deployment controller to observe the latest spec"
	case progressDeadlineExceeded(d):
		return false, ReasonProgressDeadlineExceeded, truncate("The Deployment made no progress within its deadline (" +
			progressMessage(d) + "): see the events of its newest pods (image pull, scheduling, crashes), then fix the spec")
	case st.UpdatedReplicas < want:
		return false, "RollingOut", fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, want)
	case st.Replicas > st.UpdatedReplicas:
		return false, "RollingOut", fmt.Sprintf("%d old replicas pending termination", st.Replicas-st.UpdatedReplicas)
	case st.AvailableReplicas < want:
		return false, "WaitingForPods", fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, want)
	}
	return true, "Available", fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, want)
}

func progressDeadlineExceeded(d *appsv1.Deployment) bool {
	c := deploymentCondition(d, appsv1.DeploymentProgressing)
	return c != nil && c.Status == corev1.ConditionFalse && c.Reason == ReasonProgressDeadlineExceeded
}

func progressMessage(d *appsv1.Deployment) string {
	if c := deploymentCondition(d, appsv1.DeploymentProgressing); c != nil {
		return c.Message
	}
	return ""
}

func deploymentCondition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

// statusEqual compares statuses ignoring condition timestamps: SetStatusCondition keeps
// them unless a condition's status changes, so a timestamp alone differs only when the
// reconcile started from a cache that had not yet seen our last write.
func statusEqual(a, b *mcpv1alpha1.MCPServerStatus) bool {
	return equality.Semantic.DeepEqual(withoutTimestamps(a), withoutTimestamps(b))
}

func withoutTimestamps(s *mcpv1alpha1.MCPServerStatus) *mcpv1alpha1.MCPServerStatus {
	c := s.DeepCopy()
	for i := range c.Conditions {
		c.Conditions[i].LastTransitionTime = metav1.Time{}
	}
	return c
}

func truncate(s string) string {
	const limit = 1024
	if len(s) > limit {
		return s[:limit] + "…"
	}
	return s
}
