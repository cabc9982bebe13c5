// Package webhook is the validating admission webhook for MCPServers: it enforces the
// MCPServerPolicies that select a server, and the checks CEL cannot do: referenced Secrets
// and cert-manager issuers exist, tool globs parse. Per-object rules stay in the CRD.
package webhook

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/policy"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/glob"
)

// Path serves the MCPServer validating webhook; config/webhook points the API server at it.
const Path = "/validate-mcp-mcpfleet-dev-v1alpha1-mcpserver"

// Validator admits or rejects MCPServer creates and updates.
type Validator struct {
	// Policies lists MCPServerPolicies and reads namespace metadata; the manager's cached
	// client is right.
	Policies client.Reader
	// Objects reads Secret and issuer metadata. Use an uncached reader (the manager's
	// APIReader): the operator's cache holds only its own Secrets.
	Objects client.Reader
	// Decoder decodes MCPServers from admission requests.
	Decoder admission.Decoder
}

// NewValidator returns a Validator decoding with the scheme (which must hold v1alpha1).
func NewValidator(policies, objects client.Reader, scheme *runtime.Scheme) *Validator {
	return &Validator{Policies: policies, Objects: objects, Decoder: admission.NewDecoder(scheme)}
}

var _ admission.Handler = (*Validator)(nil)

// Handle validates one MCPServer create or update. Updates are judged against the old
// object: violations and missing references it already had are warned about, not
// rejected, so that a server created before a policy can still be scaled or fixed step by
// step; anything new or worse is rejected.
func (v *Validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	srv := &mcpv1alpha1.MCPServer{}
	if err := v.Decoder.Decode(req, srv); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the MCPServer: %w", err))
	}
	var old *mcpv1alpha1.MCPServer
	if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
		old = &mcpv1alpha1.MCPServer{}
		if err := v.Decoder.DecodeRaw(req.OldObject, old); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the old MCPServer: %w", err))
		}
	}

	var denials, warnings []string
	d, w, err := v.checkPolicies(ctx, req.Namespace, srv, old)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	denials, warnings = append(denials, d...), append(warnings, w...)
	d, w, err = v.checkReferences(ctx, req.Namespace, srv, old)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	denials, warnings = append(denials, d...), append(warnings, w...)
	d, w = checkToolGlobs(srv, old)
	denials, warnings = append(denials, d...), append(warnings, w...)

	if len(denials) > 0 {
		logf.FromContext(ctx).Info("Rejected MCPServer", "namespace", req.Namespace, "name", srv.Name, "user", req.UserInfo.Username, "reasons", len(denials))
		return admission.Denied(strings.Join(denials, "\n")).WithWarnings(warnings...)
	}
	return admission.Allowed("").WithWarnings(warnings...)
}

func (v *Validator) checkPolicies(ctx context.Context, namespace string, srv, old *mcpv1alpha1.MCPServer) (denials, warnings []string, err error) {
	list := &mcpv1alpha1.MCPServerPolicyList{}
	if err := v.Policies.List(ctx, list); err != nil {
		if meta.IsNoMatchError(err) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("listing MCPServerPolicies: %w", err)
	}
	if len(list.Items) == 0 {
		return nil, nil, nil
	}
	ns, err := v.namespace(ctx, namespace)
	if err != nil {
		return nil, nil, err
	}
	res := policy.EvaluateAll(list.Items, ns, srv)
	existing := map[string]bool{}
	if old != nil {
		for _, o := range policy.EvaluateAll(list.Items, ns, old).Blocking() {
			existing[o.String()] = true
		}
	}
	for _, vi := range res.Violations {
		switch {
		case vi.Waived():
			// The waiver's use is on record in the API server's audit log and in the
			// server's PolicyCompliant condition; the warning shows it to the author too.
			warnings = append(warnings, fmt.Sprintf("waiver honoured: MCPServerPolicy %q rule %s waived (%s)", vi.Policy, vi.Rule, vi.Waiver))
		case vi.Enforcement == mcpv1alpha1.EnforcementAudit:
			warnings = append(warnings, "audit only: "+vi.String())
		case existing[vi.String()]:
			warnings = append(warnings, "already violated before this update: "+vi.String())
		default:
			denials = append(denials, vi.String()+waiverHint(list.Items, vi))
		}
	}
	return denials, warnings, nil
}

// waiverHint tells the author how to waive the rule when the policy permits it.
func waiverHint(policies []mcpv1alpha1.MCPServerPolicy, vi policy.Violation) string {
	for _, p := range policies {
		if p.Name != vi.Policy {
			continue
		}
		for _, r := range p.Spec.Waivers.Rules {
			if r == vi.Rule {
				return fmt.Sprintf(" (or waive it: annotation %s%s: <why>)", mcpv1alpha1.WaiverAnnotationPrefix, vi.Rule)
			}
		}
	}
	return ""
}

func (v *Validator) namespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := v.Policies.Get(ctx, types.NamespacedName{Name: name}, m); err != nil {
		return nil, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return &corev1.Namespace{ObjectMeta: m.ObjectMeta}, nil
}

// reference is one object a server refers to, with the field that names it.
type reference struct {
	gvk             schema.GroupVersionKind
	namespace, name string
	field           string
}

func (r reference) key() string { return r.gvk.Kind + "/" + r.namespace + "/" + r.name }

var (
	secretGVK        = corev1.SchemeGroupVersion.WithKind("Secret")
	issuerGVK        = schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Issuer"}
	clusterIssuerGVK = schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "ClusterIssuer"}
)

// references lists the Secrets and the issuer the server names. Optional Secret
// references (env with optional: true) are left out: the pod starts without them.
func references(namespace string, s *mcpv1alpha1.MCPServer) []reference {
	var out []reference
	secret := func(name, field string) {
		if name != "" {
			out = append(out, reference{gvk: secretGVK, namespace: namespace, name: name, field: field})
		}
	}
	sp := &s.Spec
	secret(sp.TLS.SecretName, "spec.tls.secretName")
	if sp.TLS.ClientCASecretRef != nil {
		secret(sp.TLS.ClientCASecretRef.Name, "spec.tls.clientCASecretRef.name")
	}
	for i, j := range sp.Auth.JWT {
		if j.PublicKeySecretRef != nil {
			secret(j.PublicKeySecretRef.Name, fmt.Sprintf("spec.auth.jwt[%d].publicKeySecretRef.name", i))
		}
	}
	if sp.Auth.APIKeys != nil {
		secret(sp.Auth.APIKeys.SecretName, "spec.auth.apiKeys.secretName")
	}
	for i, e := range sp.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !ptrTrue(e.ValueFrom.SecretKeyRef.Optional) {
			secret(e.ValueFrom.SecretKeyRef.Name, fmt.Sprintf("spec.env[%d].valueFrom.secretKeyRef.name", i))
		}
	}
	for i, e := range sp.EnvFrom {
		if e.SecretRef != nil && !ptrTrue(e.SecretRef.Optional) {
			secret(e.SecretRef.Name, fmt.Sprintf("spec.envFrom[%d].secretRef.name", i))
		}
	}
	if ref := sp.TLS.IssuerRef; ref != nil && (ref.Group == "" || ref.Group == issuerGVK.Group) {
		switch ref.Kind {
		case "Issuer":
			out = append(out, reference{gvk: issuerGVK, namespace: namespace, name: ref.Name, field: "spec.tls.issuerRef"})
		case "ClusterIssuer", "":
			out = append(out, reference{gvk: clusterIssuerGVK, name: ref.Name, field: "spec.tls.issuerRef"})
		}
	}
	return out
}

func ptrTrue(b *bool) bool { return b != nil && *b }

// checkReferences rejects references to Secrets or issuers that do not exist, when the
// reference is new in this request: a Secret deleted later must not block unrelated edits.
// Issuers are checked only when cert-manager is installed.
// checkToolGlobs refuses tool globs the runtime would not load (it would stay on its last
// configuration and the server would stall). A glob the old object already had is only
// warned about, so a server created before this check can still be changed.
func checkToolGlobs(srv, old *mcpv1alpha1.MCPServer) (denials, warnings []string) {
	had := map[string]bool{}
	if old != nil {
		for _, g := range toolGlobs(old) {
			had[g.value] = true
		}
	}
	for _, g := range toolGlobs(srv) {
		err := glob.Validate(g.value)
		if err == nil {
			continue
		}
		msg := fmt.Sprintf("%s: %q is not a tool glob: %v; fix: * matches any characters ('/' included), ? one, [...] one of a class, \\ escapes the next character", g.field, g.value, err)
		if had[g.value] {
			warnings = append(warnings, msg)
		} else {
			denials = append(denials, msg)
		}
	}
	return denials, warnings
}

type fieldValue struct{ field, value string }

func toolGlobs(s *mcpv1alpha1.MCPServer) []fieldValue {
	var out []fieldValue
	for i, g := range s.Spec.Tools.Allow {
		out = append(out, fieldValue{fmt.Sprintf("spec.tools.allow[%d]", i), g})
	}
	for i, g := range s.Spec.Tools.Deny {
		out = append(out, fieldValue{fmt.Sprintf("spec.tools.deny[%d]", i), g})
	}
	for i, sc := range s.Spec.Tools.Scopes {
		out = append(out, fieldValue{fmt.Sprintf("spec.tools.scopes[%d].tool", i), sc.Tool})
	}
	for i, t := range s.Spec.RateLimit.PerTool {
		out = append(out, fieldValue{fmt.Sprintf("spec.rateLimit.perTool[%d].tool", i), t.Tool})
	}
	return out
}

func (v *Validator) checkReferences(ctx context.Context, namespace string, srv, old *mcpv1alpha1.MCPServer) (denials, warnings []string, err error) {
	had := map[string]bool{}
	if old != nil {
		for _, r := range references(namespace, old) {
			had[r.key()] = true
		}
	}
	for _, r := range references(namespace, srv) {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(r.gvk)
		err := v.Objects.Get(ctx, types.NamespacedName{Namespace: r.namespace, Name: r.name}, m)
		switch {
		case err == nil:
			continue
		case meta.IsNoMatchError(err):
			continue // cert-manager is not installed: the reconciler reports that on the server
		case !apierrors.IsNotFound(err):
			return nil, nil, fmt.Errorf("reading %s %s referenced by %s: %w", r.gvk.Kind, r.name, r.field, err)
		}
		msg := missingMessage(r)
		if had[r.key()] {
			warnings = append(warnings, msg)
		} else {
			denials = append(denials, msg)
		}
	}
	return denials, warnings, nil
}

func missingMessage(r reference) string {
	switch r.gvk.Kind {
	case "Issuer":
		return fmt.Sprintf("%s: cert-manager Issuer %q does not exist in namespace %s; fix: create it first, or refer to an existing Issuer or ClusterIssuer (kind: ClusterIssuer)", r.field, r.name, r.namespace)
	case "ClusterIssuer":
		return fmt.Sprintf("%s: cert-manager ClusterIssuer %q does not exist; fix: create it first, or refer to an existing one (kubectl get clusterissuers)", r.field, r.name)
	}
	return fmt.Sprintf("%s: Secret %q does not exist in namespace %s; fix: create the Secret before the MCPServer (or fix the name)", r.field, r.name, r.namespace)
}
