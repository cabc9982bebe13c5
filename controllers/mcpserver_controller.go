// Package controllers holds the MCPServer reconciler.
package controllers

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	ctrl "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/origin"
)

// CertificateCRDName is the cert-manager CRD whose presence turns Certificates on.
const CertificateCRDName = "certificates.cert-manager.io"

// MCPServerReconciler turns an MCPServer into its hardened workload.
type MCPServerReconciler struct {
	ctrl.Client
	Scheme   *runtime.Scheme
	Recorder recorder.EventRecorder
	Options  resources.Options
	// Rand generates auth keys; crypto/rand when nil.
	Rand io.Reader
	// Namespaces limits the Certificate cache like the manager's (empty: all).
	Namespaces []string

	certReader  ctrl.Reader
	controller  controller.Controller
	certWatch   sync.Mutex
	certManager atomic.Bool
	writes      atomic.Int64
	// lastStatus remembers the status last written per server: the cache can lag
	// behind our own write, and re-sending the same status would be a wasted write.
	lastStatus sync.Map // types.NamespacedName → writtenStatus
	reconciles atomic.Int64
	mgr        manager.Manager
}

// Writes is the number of write requests the reconciler has sent (applies, deletes,
// status patches, events), for tests and benchmarks.
func (r *MCPServerReconciler) Writes() int64 { return r.writes.Load() }

func (r *MCPServerReconciler) countWrite() { r.writes.Add(1) }

// Reconciles is the number of reconciles run, for tests and benchmarks.
func (r *MCPServerReconciler) Reconciles() int64 { return r.reconciles.Load() }

// +kubebuilder:rbac:groups=mcp.mcpfleet.dev,resources=mcpservers,verbs=get;list;watch
// +kubebuilder:rbac:groups=mcp.mcpfleet.dev,resources=mcpservers/status,verbs=get;update;patch
// Children carry blockOwnerDeletion, which needs this where OwnerReferencesPermissionEnforcement is on.
// +kubebuilder:rbac:groups=mcp.mcpfleet.dev,resources=mcpservers/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=serviceaccounts;services;configmaps;secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile gets the server, runs the ordered steps, and writes the status once at the end.
func (r *MCPServerReconciler) Reconcile(ctx context.Context, req reconcile.Request) (result reconcile.Result, retErr error) {
	r.reconciles.Add(1)
	log := logf.FromContext(ctx)
	srv := &mcpv1alpha1.MCPServer{}
	if err := r.Get(ctx, req.NamespacedName, srv); err != nil {
		if apierrors.IsNotFound(err) {
			r.lastStatus.Delete(req.NamespacedName)
		}
		return reconcile.Result{}, ctrl.IgnoreNotFound(err)
	}
	if !srv.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil // children are garbage-collected through owner references
	}

	sc := &scope{server: srv, before: srv.Status.DeepCopy()}
	defer func() {
		if err := r.writeStatus(ctx, sc, retErr); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	steps := []func(context.Context, *scope) error{
		// First, not last: later steps may stall, and compliance must be reported anyway.
		r.reconcilePolicy,
		r.reconcileServiceAccount,
		r.reconcileAuthSecret,
		r.renderConfigMap,
		r.reconcileCertificate,
		r.reconcileService,
		r.reconcileNetworkPolicy,
		// Last before the Deployment: pods of the running template that restart read it.
		r.reconcileConfigMap,
		r.reconcileDeployment,
		r.retireAuthSecret,
		r.reconcileIssuedTLSSecret,
		r.reconcilePodDisruptionBudget,
	}
	for _, step := range steps {
		if err := step(ctx, sc); err != nil {
			var stall *stalledError
			if errors.As(err, &stall) {
				log.Info("Reconcile stalled", "reason", stall.reason, "message", stall.message)
				return reconcile.Result{}, nil // terminal until the spec or a watched dependency changes
			}
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{}, nil
}

// scope carries what one reconcile has learnt, step to step.
type scope struct {
	server      *mcpv1alpha1.MCPServer
	before      *mcpv1alpha1.MCPServerStatus
	configData  []byte
	configMap   *corev1ac.ConfigMapApplyConfiguration
	authData    map[string][]byte
	deployment  *appsv1.Deployment
	certificate *cmv1.Certificate
	stalled     *stalledError
	policy      *policyState
}

type writtenStatus struct {
	uid    types.UID
	status *mcpv1alpha1.MCPServerStatus
}

// stalledError is a terminal condition: retrying will not help until something changes.
type stalledError struct{ reason, message string }

func (e *stalledError) Error() string { return e.reason + ": " + e.message }

func stalled(sc *scope, reason, format string, a ...any) error {
	sc.stalled = &stalledError{reason: reason, message: fmt.Sprintf(format, a...)}
	return sc.stalled
}

// terminal maps a child name taken by someone else's object, and API rejections of what
// the operator built (invalid, forbidden by admission), to Stalled; anything else is transient and retried with backoff.
func terminal(sc *scope, err error) error {
	var conflict *childConflictError
	if errors.As(err, &conflict) {
		return stalled(sc, "ChildConflict", "%v", err)
	}
	if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err) {
		return stalled(sc, "ApplyRejected", "%v", err)
	}
	return err
}

func key(s *mcpv1alpha1.MCPServer, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: s.Namespace, Name: name}
}

func (r *MCPServerReconciler) reconcileServiceAccount(ctx context.Context, sc *scope) error {
	live, err := r.getLive(ctx, key(sc.server, sc.server.Name), &corev1.ServiceAccount{})
	if err != nil {
		return err
	}
	_, err = r.applyChild(ctx, resources.ServiceAccount(sc.server), live)
	return terminal(sc, err)
}

func (r *MCPServerReconciler) reconcileAuthSecret(ctx context.Context, sc *scope) error {
	if sc.server.Spec.Auth.InsecureAnonymous {
		return nil // retired once no pod needs it (retireAuthSecret)
	}
	secret := &corev1.Secret{}
	live, err := r.getLive(ctx, key(sc.server, resources.AuthSecretName(sc.server)), secret)
	if err != nil {
		return err
	}
	var existing map[string][]byte
	if live != nil {
		existing = secret.Data
	}
	rnd := r.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	data, err := resources.EnsureAuthKeys(existing, rnd)
	if err != nil {
		return err
	}
	sc.authData = data
	_, err = r.applyChild(ctx, resources.AuthSecret(sc.server, data), live)
	return terminal(sc, err)
}

// renderConfigMap renders the runtime config and stalls before anything changes when the
// runtime would refuse it; reconcileConfigMap applies it just before the Deployment.
func (r *MCPServerReconciler) renderConfigMap(_ context.Context, sc *scope) error {
	cfg := resources.RuntimeConfig(sc.server, r.Options)
	// The operator renders only configs the runtime accepts; a failure here is a spec
	// the CRD rules could not catch, so it stalls with the runtime's own message.
	check := *cfg
	check.Default()
	if err := check.Validate(); err != nil {
		return stalled(sc, "InvalidRuntimeConfig", "the runtime would refuse this configuration: %v", err)
	}
	if _, err := origin.New(check.Origins, check.Endpoint.PublicURL); err != nil { // what the runtime checks at start
		return stalled(sc, "InvalidRuntimeConfig", "the runtime would refuse this configuration: %v", err)
	}
	cm, err := resources.ConfigMap(sc.server, r.Options)
	if err != nil {
		return stalled(sc, "InvalidSpec", "%v", err)
	}
	sc.configData = []byte(cm.Data[configFileKey()])
	sc.configMap = cm
	return nil
}

func (r *MCPServerReconciler) reconcileConfigMap(ctx context.Context, sc *scope) error {
	live, err := r.getLive(ctx, key(sc.server, resources.ConfigMapName(sc.server)), &corev1.ConfigMap{})
	if err != nil {
		return err
	}
	_, err = r.applyChild(ctx, sc.configMap, live)
	return terminal(sc, err)
}

func (r *MCPServerReconciler) reconcileCertificate(ctx context.Context, sc *scope) error {
	s := sc.server
	installed, err := r.certManagerInstalled(ctx)
	if err != nil {
		return err
	}
	if s.Spec.TLS.InsecureDisabled || s.Spec.TLS.SecretName != "" {
		if !installed {
			return nil
		}
		return r.deleteChildFrom(ctx, r.certReader, key(s, resources.CertificateName(s)), &cmv1.Certificate{})
	}
	if !installed {
		return stalled(sc, "CertManagerNotInstalled",
			"cert-manager's Certificate CRD (%s) is not installed: install cert-manager, or set spec.tls.secretName to a TLS Secret you provide", CertificateCRDName)
	}
	cert := &cmv1.Certificate{}
	live, err := getLive(ctx, r.certReader, key(s, resources.CertificateName(s)), cert)
	if err != nil {
		return err
	}
	if live != nil {
		sc.certificate = cert
	}
	_, err = r.applyChild(ctx, resources.Certificate(s, r.Options), live)
	return terminal(sc, err)
}

func (r *MCPServerReconciler) reconcileService(ctx context.Context, sc *scope) error {
	live, err := r.getLive(ctx, key(sc.server, resources.ServiceName(sc.server)), &corev1.Service{})
	if err != nil {
		return err
	}
	_, err = r.applyChild(ctx, resources.Service(sc.server), live)
	return terminal(sc, err)
}

func (r *MCPServerReconciler) reconcileNetworkPolicy(ctx context.Context, sc *scope) error {
	np, err := resources.NetworkPolicy(sc.server, r.Options)
	if err != nil {
		return stalled(sc, "InvalidSpec", "%v", err)
	}
	k := key(sc.server, sc.server.Name)
	if np == nil {
		return r.deleteChild(ctx, k, &networkingv1.NetworkPolicy{})
	}
	live, err := r.getLive(ctx, k, &networkingv1.NetworkPolicy{})
	if err != nil {
		return err
	}
	_, err = r.applyChild(ctx, np, live)
	return terminal(sc, err)
}

func (r *MCPServerReconciler) reconcileDeployment(ctx context.Context, sc *scope) error {
	d, err := resources.Deployment(sc.server, r.Options, resources.ConfigHash(sc.configData, sc.authData))
	if err != nil {
		return stalled(sc, "InvalidSpec", "%v", err)
	}
	dep := &appsv1.Deployment{}
	live, err := r.getLive(ctx, key(sc.server, resources.DeploymentName(sc.server)), dep)
	if err != nil {
		return err
	}
	if live != nil {
		sc.deployment = dep
	}
	_, err = r.applyChild(ctx, d, live)
	return terminal(sc, err)
}

// retireAuthSecret deletes the auth Secret of a server that turned authentication off,
// but only once its Deployment has rolled out a template without it: deleted earlier (say,
// before a later step stalled on a bad spec), the running pods' replacements could not
// start, and turning authentication back on would mint new keys.
func (r *MCPServerReconciler) retireAuthSecret(ctx context.Context, sc *scope) error {
	if !sc.server.Spec.Auth.InsecureAnonymous {
		return nil
	}
	if d := sc.deployment; d != nil && (mountsSecret(d, resources.AuthSecretName(sc.server)) || !rolledOut(d)) {
		return nil // the Deployment's next status change brings the server back here
	}
	return r.deleteChild(ctx, key(sc.server, resources.AuthSecretName(sc.server)), &corev1.Secret{})
}

// reconcileIssuedTLSSecret looks after the Secret cert-manager issued for the server, which
// cert-manager itself never deletes: while the server uses it, the server becomes its owner
// (so the garbage collector deletes it, private key included, with the server); once the
// server no longer does (TLS off, or a Secret of your own) it is deleted when no pod mounts it.
func (r *MCPServerReconciler) reconcileIssuedTLSSecret(ctx context.Context, sc *scope) error {
	s := sc.server
	secret := &corev1.Secret{}
	live, err := r.getLive(ctx, key(s, resources.IssuedTLSSecretName(s)), secret)
	if err != nil || live == nil {
		return err
	}
	if secret.Labels[resources.LabelInstance] != s.Name {
		return nil // not issued through this server's Certificate (its secretTemplate sets the labels)
	}
	if resources.UsesCertManager(s) {
		for _, ref := range secret.OwnerReferences {
			if ref.UID == s.UID {
				return nil
			}
		}
		// A patch, not an apply: an apply racing a deletion would create an empty Opaque
		// Secret, whose type cert-manager could then not change.
		patch := ctrl.StrategicMergeFrom(secret.DeepCopy(), ctrl.MergeFromWithOptimisticLock{})
		secret.OwnerReferences = append(secret.OwnerReferences, resources.IssuedTLSSecretOwner(s))
		if err := r.Patch(ctx, secret, patch, ctrl.FieldOwner(resources.FieldOwner)); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return terminal(sc, fmt.Errorf("adding the server as owner of Secret %s: %w", secret.Name, err))
		}
		r.countWrite()
		return nil
	}
	if d := sc.deployment; d != nil && (mountsSecret(d, secret.Name) || !rolledOut(d)) {
		return nil // the Deployment's next status change brings the server back here
	}
	return r.deleteChild(ctx, key(s, secret.Name), &corev1.Secret{})
}

// mountsSecret reports whether d's pod template mounts the Secret name.
func mountsSecret(d *appsv1.Deployment, name string) bool {
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == name {
			return true
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil && src.Secret.Name == name {
					return true
				}
			}
		}
	}
	return false
}

// rolledOut reports whether every replica of d runs its current template.
func rolledOut(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == want && st.Replicas == want
}

func (r *MCPServerReconciler) reconcilePodDisruptionBudget(ctx context.Context, sc *scope) error {
	k := key(sc.server, sc.server.Name)
	pdb := resources.PodDisruptionBudget(sc.server)
	if pdb == nil {
		return r.deleteChild(ctx, k, &policyv1.PodDisruptionBudget{})
	}
	live, err := r.getLive(ctx, k, &policyv1.PodDisruptionBudget{})
	if err != nil {
		return err
	}
	_, err = r.applyChild(ctx, pdb, live)
	return terminal(sc, err)
}

// writeStatus derives the status from what the steps observed and patches it only when
// it changed, emitting events on Ready transitions.
func (r *MCPServerReconciler) writeStatus(ctx context.Context, sc *scope, reconcileErr error) error {
	s := sc.server
	if sc.deployment == nil {
		// A step before the Deployment's stopped this reconcile: the pods of the last good
		// spec still run, and the status reports them rather than a Deployment "creating".
		dep := &appsv1.Deployment{}
		if live, err := r.getLive(ctx, key(s, resources.DeploymentName(s)), dep); err == nil && live != nil && controllerUID(dep) == string(s.UID) {
			sc.deployment = dep
		}
	}
	computeStatus(s, sc, r.Options, reconcileErr)
	// What the API server holds is what we last wrote, when we wrote since the manager
	// started; the cache may not have caught up with it (in either direction), so compare
	// with that. Otherwise the cached status is the best knowledge there is.
	current := sc.before
	if last, ok := r.lastStatus.Load(ctrl.ObjectKeyFromObject(s)); ok && last.(writtenStatus).uid == s.UID {
		current = last.(writtenStatus).status
	}
	if statusEqual(current, &s.Status) {
		return nil
	}
	patched := s.DeepCopy()
	before := s.DeepCopy()
	before.Status = *current // the patch removes what the server holds and we no longer set
	if err := r.Status().Patch(ctx, patched, ctrl.MergeFrom(before)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("writing status: %w", err)
	}
	r.countWrite()
	r.lastStatus.Store(ctrl.ObjectKeyFromObject(s), writtenStatus{uid: s.UID, status: s.Status.DeepCopy()})
	logf.FromContext(ctx).V(1).Info("Wrote status", "ready", readySummary(&s.Status))
	r.emitTransitions(current, &s.Status, s)
	return nil
}

func (r *MCPServerReconciler) emitTransitions(before, after *mcpv1alpha1.MCPServerStatus, s *mcpv1alpha1.MCPServer) {
	if r.Recorder == nil {
		return
	}
	// Events mark transitions a person cares about: becoming ready, losing readiness, and
	// stalling. Progress while a new server comes up is in the conditions, not in events.
	was := meta.FindStatusCondition(before.Conditions, ConditionReady)
	now := meta.FindStatusCondition(after.Conditions, ConditionReady)
	stalledNow := meta.FindStatusCondition(after.Conditions, ConditionStalled)
	stalledBefore := meta.FindStatusCondition(before.Conditions, ConditionStalled)
	switch {
	case stalledNow != nil && (stalledBefore == nil || stalledBefore.Reason != stalledNow.Reason):
		r.Recorder.Eventf(s, nil, corev1.EventTypeWarning, stalledNow.Reason, "Reconcile", "%s", stalledNow.Message)
	case now == nil:
		return
	case now.Status == metav1.ConditionTrue && (was == nil || was.Status != metav1.ConditionTrue):
		r.Recorder.Eventf(s, nil, corev1.EventTypeNormal, now.Reason, "Reconcile", "%s", now.Message)
	case now.Status != metav1.ConditionTrue && was != nil && was.Status == metav1.ConditionTrue:
		r.Recorder.Eventf(s, nil, corev1.EventTypeWarning, now.Reason, "Reconcile", "%s", now.Message)
	default:
		return
	}
	r.countWrite()
}

// SetupWithManager registers the controller: it owns every child kind, watched through a
// label-selected cache, and watches cert-manager's CRD so that installing cert-manager
// later is noticed without polling.
func (r *MCPServerReconciler) SetupWithManager(ctx context.Context, mgr manager.Manager) error {
	r.mgr = mgr
	b := builder.ControllerManagedBy(mgr).
		For(&mcpv1alpha1.MCPServer{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		Owns(&corev1.ServiceAccount{}).
		Owns(&corev1.Secret{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.Service{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Owns(&appsv1.Deployment{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Watches(&apiextensionsv1.CustomResourceDefinition{},
			handler.EnqueueRequestsFromMapFunc(r.certManagerAppeared),
			builder.WithPredicates(predicate.NewPredicateFuncs(func(o ctrl.Object) bool { return o.GetName() == CertificateCRDName }))).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Named("mcpserver")
	b = r.watchPolicies(mgr, b)
	c, err := b.Build(r)
	if err != nil {
		return err
	}
	r.controller = c
	return nil
}

// certManagerAppeared requeues every server when cert-manager's CRD becomes established
// (at start or later), so their Certificates get created without polling.
func (r *MCPServerReconciler) certManagerAppeared(ctx context.Context, o ctrl.Object) []reconcile.Request {
	crd, ok := o.(*apiextensionsv1.CustomResourceDefinition)
	if !ok || crd.DeletionTimestamp != nil || !established(crd) || r.certManager.Load() {
		return nil
	}
	list := &mcpv1alpha1.MCPServerList{}
	if err := r.List(ctx, list); err != nil {
		logf.FromContext(ctx).Error(err, "Listing MCPServers failed")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, s := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
	}
	return reqs
}

// certManagerInstalled reports whether Certificates can be managed, starting their
// label-selected cache and watch the first time cert-manager's CRD is established. An
// error (e.g. discovery not caught up yet) is transient: the reconcile is retried.
func (r *MCPServerReconciler) certManagerInstalled(ctx context.Context) (bool, error) {
	if r.certManager.Load() {
		return true, nil
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := r.Get(ctx, types.NamespacedName{Name: CertificateCRDName}, crd); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading the %s CRD: %w", CertificateCRDName, err)
	}
	if !established(crd) {
		return false, nil
	}
	r.certWatch.Lock()
	defer r.certWatch.Unlock()
	if r.certManager.Load() {
		return true, nil
	}
	opts := certificateCacheOptions(r.Namespaces)
	opts.Scheme, opts.Mapper = r.mgr.GetScheme(), r.mgr.GetRESTMapper()
	certCache, err := cache.New(r.mgr.GetConfig(), opts)
	if err != nil {
		return false, fmt.Errorf("creating the Certificate cache: %w", err)
	}
	if err := r.mgr.Add(certCache); err != nil {
		return false, fmt.Errorf("starting the Certificate cache: %w", err)
	}
	if err := r.controller.Watch(source.Kind(certCache, &cmv1.Certificate{},
		handler.TypedEnqueueRequestForOwner[*cmv1.Certificate](r.mgr.GetScheme(), r.mgr.GetRESTMapper(), &mcpv1alpha1.MCPServer{}, handler.OnlyControllerOwner()))); err != nil {
		return false, fmt.Errorf("watching Certificates: %w", err)
	}
	// Reads before the first sync would fail with "cache is not started"; wait, bounded.
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !certCache.WaitForCacheSync(syncCtx) {
		return false, errors.New("the Certificate cache did not sync within a minute")
	}
	r.certReader = certCache
	r.certManager.Store(true)
	logf.FromContext(ctx).Info("cert-manager detected; managing Certificates", "crd", klog.KRef("", CertificateCRDName))
	return true, nil
}

func readySummary(st *mcpv1alpha1.MCPServerStatus) string {
	c := meta.FindStatusCondition(st.Conditions, ConditionReady)
	if c == nil {
		return "unknown"
	}
	return string(c.Status) + "/" + c.Reason
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

// ManagedSelector selects the children the operator made; the cache holds only those.
func ManagedSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{resources.LabelManagedBy: resources.ManagedBy})
}
