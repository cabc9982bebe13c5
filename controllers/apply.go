package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
)

// AnnotationAppliedHash records what the operator last applied to a child. A child is
// re-applied when the desired state changes (the hash differs; this also covers fields the
// operator stopped setting) or when someone changed a field the operator sets (the live
// object no longer contains the desired one). Otherwise no request is sent at all, so a
// steady state costs zero writes.
const AnnotationAppliedHash = "mcp.mcpfleet.dev/applied-hash"

// applyChild server-side applies desired unless live (from the cache; nil when absent)
// already matches it. It reports whether a write was sent.
func (r *MCPServerReconciler) applyChild(ctx context.Context, desired any, live client.Object) (bool, error) {
	want, err := toMap(desired)
	if err != nil {
		return false, fmt.Errorf("encoding desired object: %w", err)
	}
	hash := resources.Hash(mustJSON(want))
	meta, _ := want["metadata"].(map[string]any)
	annotations, _ := meta["annotations"].(map[string]any)
	if annotations == nil {
		annotations = map[string]any{}
	}
	annotations[AnnotationAppliedHash] = hash
	meta["annotations"] = annotations

	if live != nil && !isNil(live) && live.GetAnnotations()[AnnotationAppliedHash] == hash {
		have, err := toMap(live)
		if err != nil {
			return false, fmt.Errorf("encoding live object: %w", err)
		}
		// The cache drops TypeMeta from typed objects; kind and name already match by key.
		body := map[string]any{}
		for k, v := range want {
			if k != "apiVersion" && k != "kind" {
				body[k] = v
			}
		}
		if contains(have, body) {
			return false, nil
		}
	}
	u := &unstructured.Unstructured{Object: want}
	if live == nil || isNil(live) {
		// The cache holds only the operator's objects: one of the same name may exist.
		if err := r.checkNameFree(ctx, u); err != nil {
			return false, err
		}
	}
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(resources.FieldOwner), client.ForceOwnership); err != nil {
		return false, fmt.Errorf("applying %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	r.countWrite()
	logf.FromContext(ctx).V(1).Info("Applied child", "kind", u.GetKind(), "name", u.GetName())
	return true, nil
}

// childConflictError: a child's name is taken by an object this server does not control.
type childConflictError struct{ kind, name string }

func (e *childConflictError) Error() string {
	return fmt.Sprintf("%s %q already exists and was not created by this MCPServer (it lacks the label %s=%s or another owner controls it); "+
		"the operator does not take over objects it did not create: rename the MCPServer, or rename or delete that %s",
		e.kind, e.name, resources.LabelManagedBy, resources.ManagedBy, e.kind)
}

// checkNameFree reads desired's name from the API server (not the cache, which holds only
// the operator's objects) and refuses to apply over an object this server does not
// control: force-applying would rewrite it (a namespace's default-deny NetworkPolicy, a
// Service, a Secret) and its deletion would then follow the MCPServer's.
func (r *MCPServerReconciler) checkNameFree(ctx context.Context, desired *unstructured.Unstructured) error {
	var reader client.Reader = r.Client
	if r.mgr != nil {
		reader = r.mgr.GetAPIReader()
	}
	existing := &unstructured.Unstructured{}
	existing.SetGroupVersionKind(desired.GroupVersionKind())
	err := reader.Get(ctx, client.ObjectKeyFromObject(desired), existing)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading %s %s: %w", desired.GetKind(), desired.GetName(), err)
	}
	if existing.GetLabels()[resources.LabelManagedBy] == resources.ManagedBy && controllerUID(existing) == controllerUID(desired) {
		return nil // ours; the cache has not caught up
	}
	return &childConflictError{kind: desired.GetKind(), name: desired.GetName()}
}

// controllerUID is the UID of obj's controlling owner ("" when none).
func controllerUID(obj client.Object) string {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.Controller != nil && *ref.Controller {
			return string(ref.UID)
		}
	}
	return ""
}

// getLive reads a child from the cache; it returns nil when the child does not exist.
func (r *MCPServerReconciler) getLive(ctx context.Context, key client.ObjectKey, obj client.Object) (client.Object, error) {
	return getLive(ctx, r.Client, key, obj)
}

func getLive(ctx context.Context, reader client.Reader, key client.ObjectKey, obj client.Object) (client.Object, error) {
	if err := reader.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading %T %s: %w", obj, key, err)
	}
	return obj, nil
}

// deleteChild removes a child the spec no longer asks for, if it exists and is ours.
func (r *MCPServerReconciler) deleteChild(ctx context.Context, key client.ObjectKey, obj client.Object) error {
	return r.deleteChildFrom(ctx, r.Client, key, obj)
}

func (r *MCPServerReconciler) deleteChildFrom(ctx context.Context, reader client.Reader, key client.ObjectKey, obj client.Object) error {
	live, err := getLive(ctx, reader, key, obj)
	if err != nil || live == nil {
		return err
	}
	if live.GetLabels()[resources.LabelManagedBy] != resources.ManagedBy {
		return nil
	}
	if err := r.Delete(ctx, live); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %T %s: %w", obj, key, err)
	}
	r.countWrite()
	return nil
}

// contains reports whether every field of want is present in have with the same value.
// Lists must have the same length and match element by element.
func contains(have, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, wv := range w {
			hv, ok := h[k]
			if !ok || !contains(hv, wv) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return false
		}
		for i := range w {
			if !contains(h[i], w[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(have, want)
	}
}

// toMap turns a typed object or apply configuration into its JSON map form, so that both
// sides of a comparison have the same representation of numbers, bytes and quantities.
func toMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // a map decoded from JSON always encodes
	}
	return b
}

func isNil(o runtime.Object) bool {
	v := reflect.ValueOf(o)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
