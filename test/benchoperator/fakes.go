package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// stand-ins play the parts of cert-manager and the Deployment controller, which do not run
// against a bare apiserver, the way controllers/mcpserver_controller_test.go's makeReady
// does: a Certificate is issued (Ready, NotAfter) and a Deployment has every replica
// available. They write through the harness's own client and user, so none of their
// writes is counted as the manager's.
type standIns struct {
	cache  cache.Cache
	client client.Client
	// issue and roll switch the parts on: a scenario without pods leaves roll off.
	issue, roll bool
	queue       workqueue.TypedDelayingInterface[standInKey]
	writes      atomic.Int64
}

type standInKey struct {
	kind string // "cert" or "deploy"
	name types.NamespacedName
}

func (s *standIns) start(ctx context.Context, workers int) error {
	s.queue = workqueue.NewTypedDelayingQueue[standInKey]()
	if s.issue {
		inf, err := s.cache.GetInformer(ctx, &cmv1.Certificate{})
		if err != nil {
			return fmt.Errorf("watching Certificates: %w", err)
		}
		if _, err := inf.AddEventHandler(s.handler("cert", func(o any) bool {
			c, ok := o.(*cmv1.Certificate)
			return ok && !certIssued(c)
		})); err != nil {
			return err
		}
	}
	if s.roll {
		inf, err := s.cache.GetInformer(ctx, &appsv1.Deployment{})
		if err != nil {
			return fmt.Errorf("watching Deployments: %w", err)
		}
		if _, err := inf.AddEventHandler(s.handler("deploy", func(o any) bool {
			d, ok := o.(*appsv1.Deployment)
			return ok && !deploymentAvailable(d)
		})); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s.work(ctx) {
			}
		}()
	}
	go func() { <-ctx.Done(); s.queue.ShutDown() }()
	return nil
}

func (s *standIns) handler(kind string, needsWork func(any) bool) toolscache.ResourceEventHandler {
	add := func(o any) {
		if obj, ok := o.(client.Object); ok && needsWork(o) {
			s.queue.Add(standInKey{kind: kind, name: client.ObjectKeyFromObject(obj)})
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { add(o) },
		UpdateFunc: func(_, o any) { add(o) },
	}
}

func (s *standIns) work(ctx context.Context) bool {
	k, shutdown := s.queue.Get()
	if shutdown {
		return false
	}
	defer s.queue.Done(k)
	var err error
	switch k.kind {
	case "cert":
		err = s.issueCertificate(ctx, k.name)
	case "deploy":
		err = s.rollDeployment(ctx, k.name)
	}
	if err != nil && ctx.Err() == nil {
		s.queue.AddAfter(k, 200*time.Millisecond) // a conflict with the manager's apply: read again
	}
	return true
}

func (s *standIns) issueCertificate(ctx context.Context, key types.NamespacedName) error {
	c := &cmv1.Certificate{}
	if err := s.cache.Get(ctx, key, c); err != nil {
		return client.IgnoreNotFound(err)
	}
	if certIssued(c) {
		return nil
	}
	notAfter := metav1.NewTime(time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second))
	c.Status = cmv1.CertificateStatus{
		NotAfter:   &notAfter,
		Conditions: []cmv1.CertificateCondition{{Type: cmv1.CertificateConditionReady, Status: cmmeta.ConditionTrue, Reason: "Ready", Message: "Issued by the bench's stand-in", ObservedGeneration: c.Generation}},
	}
	s.writes.Add(1)
	return s.client.Status().Update(ctx, c)
}

func (s *standIns) rollDeployment(ctx context.Context, key types.NamespacedName) error {
	d := &appsv1.Deployment{}
	if err := s.cache.Get(ctx, key, d); err != nil {
		return client.IgnoreNotFound(err)
	}
	if deploymentAvailable(d) {
		return nil
	}
	n := int32(1)
	if d.Spec.Replicas != nil {
		n = *d.Spec.Replicas
	}
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
	s.writes.Add(1)
	return s.client.Status().Update(ctx, d)
}

func certIssued(c *cmv1.Certificate) bool {
	for _, cond := range c.Status.Conditions {
		if cond.Type == cmv1.CertificateConditionReady {
			return cond.Status == cmmeta.ConditionTrue && cond.ObservedGeneration == c.Generation
		}
	}
	return false
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	n := int32(1)
	if d.Spec.Replicas != nil {
		n = *d.Spec.Replicas
	}
	st := d.Status
	return st.ObservedGeneration == d.Generation && st.UpdatedReplicas == n && st.AvailableReplicas == n && st.Replicas == n
}
