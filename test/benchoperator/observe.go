package main

import (
	"context"
	"fmt"
	"sync/atomic"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
)

// childKind is one kind of object the manager makes for each server.
type childKind struct {
	name string
	list client.ObjectList
}

func childKinds(withCertManager bool) []childKind {
	kinds := []childKind{
		{"ServiceAccount", &corev1.ServiceAccountList{}},
		{"Secret", &corev1.SecretList{}},
		{"ConfigMap", &corev1.ConfigMapList{}},
	}
	if !withCertManager {
		// Without cert-manager the reconcile stops, Stalled, at the Certificate step:
		// these three are every child the manager is meant to make.
		return kinds
	}
	return append(kinds,
		childKind{"Certificate", &cmv1.CertificateList{}},
		childKind{"Service", &corev1.ServiceList{}},
		childKind{"NetworkPolicy", &networkingv1.NetworkPolicyList{}},
		childKind{"Deployment", &appsv1.DeploymentList{}},
	)
}

// observer reads the harness's cache: which servers have every child, and what kstatus
// says of each server's status.
type observer struct {
	cache cache.Cache
	kinds []childKind
	// statusChanges counts MCPServer updates whose status differs from the previous
	// version: status writes that changed something (the harness never writes servers
	// after creating them).
	statusChanges atomic.Int64
}

func (o *observer) start(ctx context.Context) error {
	inf, err := o.cache.GetInformer(ctx, &mcpv1alpha1.MCPServer{})
	if err != nil {
		return err
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			a, ok1 := oldObj.(*mcpv1alpha1.MCPServer)
			b, ok2 := newObj.(*mcpv1alpha1.MCPServer)
			if ok1 && ok2 && a.ResourceVersion != b.ResourceVersion && !equality.Semantic.DeepEqual(a.Status, b.Status) {
				o.statusChanges.Add(1)
			}
		},
	})
	if err != nil {
		return err
	}
	// Listing once starts each kind's informer now, not in the middle of a measurement.
	for _, k := range o.kinds {
		if err := o.cache.List(ctx, k.list.DeepCopyObject().(client.ObjectList)); err != nil {
			return fmt.Errorf("watching %ss: %w", k.name, err)
		}
	}
	return nil
}

// childrenComplete counts servers that have one of every child kind, owned by them.
func (o *observer) childrenComplete(ctx context.Context, ns string) (int, error) {
	have := map[string]int{}
	for _, k := range o.kinds {
		list := k.list.DeepCopyObject().(client.ObjectList)
		if err := o.cache.List(ctx, list, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
			return 0, fmt.Errorf("listing %ss: %w", k.name, err)
		}
		seen := map[string]bool{}
		if err := meta.EachListItem(list, func(obj runtime.Object) error {
			m, err := meta.Accessor(obj)
			if err != nil {
				return err
			}
			if ref := metav1.GetControllerOfNoCopy(m); ref != nil && ref.Kind == "MCPServer" && !seen[ref.Name] {
				seen[ref.Name] = true
				have[ref.Name]++
			}
			return nil
		}); err != nil {
			return 0, err
		}
	}
	n := 0
	for _, c := range have {
		if c == len(o.kinds) {
			n++
		}
	}
	return n, nil
}

// statusSummary counts servers by kstatus status (Current, InProgress, Failed, …) and
// by Ready reason, for the scenario's "settled" test and the report.
type statusSummary struct {
	kstatus map[status.Status]int
	ready   map[string]int // "True/Serving", "False/WaitingForPods", …
}

func (o *observer) statuses(ctx context.Context, ns string) (statusSummary, error) {
	list := &mcpv1alpha1.MCPServerList{}
	if err := o.cache.List(ctx, list, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
		return statusSummary{}, err
	}
	sum := statusSummary{kstatus: map[status.Status]int{}, ready: map[string]int{}}
	for i := range list.Items {
		s := &list.Items[i]
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(s)
		if err != nil {
			return sum, err
		}
		res, err := status.Compute(&unstructured.Unstructured{Object: obj})
		if err != nil {
			return sum, fmt.Errorf("kstatus of %s: %w", s.Name, err)
		}
		sum.kstatus[res.Status]++
		if c := meta.FindStatusCondition(s.Status.Conditions, "Ready"); c != nil {
			sum.ready[string(c.Status)+"/"+c.Reason]++
		} else {
			sum.ready["none"]++
		}
	}
	return sum, nil
}
