package controllers

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
)

// A server scaled to zero is Ready (it is as asked, kstatus Current) but does not claim to
// serve: its Ready reason is ScaledToZero, not Serving.
func TestAServerScaledToZeroDoesNotClaimToServe(t *testing.T) {
	for _, tc := range []struct {
		replicas   int32
		wantReason string
	}{{0, "ScaledToZero"}, {1, "Serving"}} {
		s := &mcpv1alpha1.MCPServer{
			ObjectMeta: metav1.ObjectMeta{Name: "srv", Namespace: "ns", Generation: 1},
			Spec:       mcpv1alpha1.MCPServerSpec{Replicas: ptr.To(tc.replicas), TLS: mcpv1alpha1.TLSSpec{InsecureDisabled: true}},
		}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: 1},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: tc.replicas, UpdatedReplicas: tc.replicas,
				ReadyReplicas: tc.replicas, AvailableReplicas: tc.replicas},
		}
		computeStatus(s, &scope{server: s, deployment: d}, resources.Options{}, nil)
		ready := meta.FindStatusCondition(s.Status.Conditions, ConditionReady)
		if ready == nil || ready.Status != metav1.ConditionTrue || ready.Reason != tc.wantReason {
			t.Errorf("replicas %d: Ready = %+v, want True/%s", tc.replicas, ready, tc.wantReason)
		}
	}
}
