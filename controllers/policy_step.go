package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	ctrl "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/policy"
)

// ConditionPolicyCompliant reports whether a server follows every MCPServerPolicy that
// selects it. Present only while at least one policy selects the server.
const ConditionPolicyCompliant = "PolicyCompliant"

// Reasons of the PolicyCompliant condition.
const (
	ReasonPolicyViolations = "PolicyViolations"
	ReasonPolicyCompliant  = "Compliant"
)

// +kubebuilder:rbac:groups=mcp.mcpfleet.dev,resources=mcpserverpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// policyState is what the policy step learnt: nil when the step did not run, so the
// condition is left as it was.
type policyState struct {
	result policy.Result
}

// reconcilePolicy evaluates the policies that select the server. It never changes the
// spec: violations are reported in the PolicyCompliant condition only. A missing policy
// CRD means no policies.
func (r *MCPServerReconciler) reconcilePolicy(ctx context.Context, sc *scope) error {
	policies := &mcpv1alpha1.MCPServerPolicyList{}
	if err := r.List(ctx, policies); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			sc.policy = &policyState{}
			return nil
		}
		return fmt.Errorf("listing MCPServerPolicies: %w", err)
	}
	if len(policies.Items) == 0 {
		sc.policy = &policyState{}
		return nil
	}
	ns, err := namespaceFor(ctx, r.Client, policies.Items, sc.server.Namespace)
	if err != nil {
		return err
	}
	sc.policy = &policyState{result: policy.EvaluateAll(policies.Items, ns, sc.server)}
	return nil
}

// namespaceFor reads the namespace's labels (metadata only) when a policy selects by them.
func namespaceFor(ctx context.Context, c ctrl.Reader, policies []mcpv1alpha1.MCPServerPolicy, name string) (*corev1.Namespace, error) {
	needed := false
	for i := range policies {
		needed = needed || policies[i].Spec.NamespaceSelector != nil
	}
	if !needed {
		return nil, nil
	}
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := c.Get(ctx, types.NamespacedName{Name: name}, m); err != nil {
		return nil, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return &corev1.Namespace{ObjectMeta: m.ObjectMeta}, nil
}

// setPolicyCondition sets PolicyCompliant from the policy step: absent when no policy
// selects the server (so a cluster without policies sees no extra writes), False with
// the violations listed, or True naming the policies and any waivers honoured.
func setPolicyCondition(st *mcpv1alpha1.MCPServerStatus, sc *scope, gen int64) {
	if sc.policy == nil {
		return
	}
	res := sc.policy.result
	if len(res.Matched) == 0 {
		meta.RemoveStatusCondition(&st.Conditions, ConditionPolicyCompliant)
		return
	}
	var violations, waived []string
	for _, v := range res.Violations {
		if v.Waived() {
			waived = append(waived, fmt.Sprintf("%s/%s (%s)", v.Policy, v.Rule, v.Waiver))
		} else {
			violations = append(violations, v.Short())
		}
	}
	c := metav1.Condition{Type: ConditionPolicyCompliant, ObservedGeneration: gen}
	if len(violations) > 0 {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonPolicyViolations
		c.Message = fmt.Sprintf("%d violation(s): %s", len(violations), strings.Join(violations, "; "))
	} else {
		c.Status, c.Reason = metav1.ConditionTrue, ReasonPolicyCompliant
		c.Message = "Complies with " + strings.Join(res.Matched, ", ")
	}
	if len(waived) > 0 {
		c.Message += "; waived: " + strings.Join(dedupe(waived), "; ")
	}
	c.Message = truncate(c.Message)
	meta.SetStatusCondition(&st.Conditions, c)
}

func dedupe(xs []string) []string {
	seen := map[string]bool{}
	out := xs[:0]
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// watchPolicies requeues every server when a policy's spec changes and the servers of a
// namespace when its labels change. Without the policy CRD (an install that left it
// out) the watch is skipped and servers see no policies.
func (r *MCPServerReconciler) watchPolicies(mgr manager.Manager, b *builder.Builder) *builder.Builder {
	gk := schema.GroupKind{Group: mcpv1alpha1.GroupVersion.Group, Kind: "MCPServerPolicy"}
	if _, err := mgr.GetRESTMapper().RESTMapping(gk, mcpv1alpha1.GroupVersion.Version); err != nil {
		mgr.GetLogger().Info("MCPServerPolicy CRD not found; policies are not evaluated until the operator restarts with it installed", "error", err.Error())
		return b
	}
	return b.
		Watches(&mcpv1alpha1.MCPServerPolicy{}, handler.EnqueueRequestsFromMapFunc(r.allServers),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.serversInNamespace),
			builder.WithPredicates(predicate.LabelChangedPredicate{}, skipCreateDelete))
}

// skipCreateDelete ignores namespace creation (no servers yet) and deletion (servers go too).
var skipCreateDelete = predicate.Funcs{
	CreateFunc: func(event.CreateEvent) bool { return false },
	DeleteFunc: func(event.DeleteEvent) bool { return false },
}

func (r *MCPServerReconciler) allServers(ctx context.Context, _ ctrl.Object) []reconcile.Request {
	return r.listServers(ctx)
}

func (r *MCPServerReconciler) serversInNamespace(ctx context.Context, o ctrl.Object) []reconcile.Request {
	return r.listServers(ctx, ctrl.InNamespace(o.GetName()))
}

func (r *MCPServerReconciler) listServers(ctx context.Context, opts ...ctrl.ListOption) []reconcile.Request {
	list := &mcpv1alpha1.MCPServerList{}
	if err := r.List(ctx, list, opts...); err != nil {
		logf.FromContext(ctx).Error(err, "Listing MCPServers failed")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, s := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
	}
	return reqs
}
