package controllers

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	ctrl "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/policy"
)

// maxListedViolating bounds status.violating: the counts are exact, the names a sample.
const maxListedViolating = 20

// PolicyReconciler keeps each MCPServerPolicy's status counts of matched, violating and
// waived servers.
type PolicyReconciler struct {
	ctrl.Client
}

// +kubebuilder:rbac:groups=mcp.mcpfleet.dev,resources=mcpserverpolicies/status,verbs=get;update;patch
// The admission webhook checks that referenced issuers exist.
// +kubebuilder:rbac:groups=cert-manager.io,resources=issuers;clusterissuers,verbs=get

// Reconcile recounts the servers one policy selects and patches the status when it changed.
func (r *PolicyReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	p := &mcpv1alpha1.MCPServerPolicy{}
	if err := r.Get(ctx, req.NamespacedName, p); err != nil {
		return reconcile.Result{}, ctrl.IgnoreNotFound(err)
	}
	servers := &mcpv1alpha1.MCPServerList{}
	if err := r.List(ctx, servers); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing MCPServers: %w", err)
	}
	namespaces := map[string]*corev1.Namespace{}
	status := mcpv1alpha1.MCPServerPolicyStatus{ObservedGeneration: p.Generation}
	for i := range servers.Items {
		s := &servers.Items[i]
		ns, ok := namespaces[s.Namespace]
		if !ok {
			var err error
			if ns, err = namespaceFor(ctx, r.Client, []mcpv1alpha1.MCPServerPolicy{*p}, s.Namespace); err != nil {
				return reconcile.Result{}, err
			}
			namespaces[s.Namespace] = ns
		}
		res := policy.EvaluateAll([]mcpv1alpha1.MCPServerPolicy{*p}, ns, s)
		if len(res.Matched) == 0 {
			continue
		}
		status.MatchedServers++
		if len(res.Blocking()) > 0 {
			status.ViolatingServers++
			status.Violating = append(status.Violating, s.Namespace+"/"+s.Name)
		}
		if len(res.Blocking()) < len(res.Violations) {
			status.WaivedServers++
		}
	}
	sort.Strings(status.Violating)
	if len(status.Violating) > maxListedViolating {
		status.Violating = status.Violating[:maxListedViolating]
	}
	if equality.Semantic.DeepEqual(p.Status, status) {
		return reconcile.Result{}, nil
	}
	before := p.DeepCopy()
	p.Status = status
	if err := r.Status().Patch(ctx, p, ctrl.MergeFrom(before)); err != nil {
		return reconcile.Result{}, ctrl.IgnoreNotFound(err)
	}
	logf.FromContext(ctx).V(1).Info("Wrote policy status", "matched", status.MatchedServers, "violating", status.ViolatingServers)
	return reconcile.Result{}, nil
}

// SetupWithManager recounts every policy when a server or a namespace's labels change.
// Without the policy CRD there is nothing to count and the controller is not started.
func (r *PolicyReconciler) SetupWithManager(mgr manager.Manager) error {
	gk := schema.GroupKind{Group: mcpv1alpha1.GroupVersion.Group, Kind: "MCPServerPolicy"}
	if _, err := mgr.GetRESTMapper().RESTMapping(gk, mcpv1alpha1.GroupVersion.Version); err != nil {
		mgr.GetLogger().Info("MCPServerPolicy CRD not found; the policy controller is off until the operator restarts with it installed", "error", err.Error())
		return nil
	}
	return builder.ControllerManagedBy(mgr).
		For(&mcpv1alpha1.MCPServerPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&mcpv1alpha1.MCPServer{}, handler.EnqueueRequestsFromMapFunc(r.allPolicies),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.allPolicies),
			builder.WithPredicates(predicate.LabelChangedPredicate{}, skipCreateDelete)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Named("mcpserverpolicy").
		Complete(r)
}

func (r *PolicyReconciler) allPolicies(ctx context.Context, _ ctrl.Object) []reconcile.Request {
	list := &mcpv1alpha1.MCPServerPolicyList{}
	if err := r.List(ctx, list); err != nil {
		logf.FromContext(ctx).Error(err, "Listing MCPServerPolicies failed")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, p := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: p.Name}})
	}
	return reqs
}
