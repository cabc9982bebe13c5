package controllers

import (
	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions keeps the cache small: children only when labelled as the operator's,
// cert-manager's CRD only by name, and only the watched namespaces. Managed fields are
// dropped: the reconciler compares desired and live objects without them.
func CacheOptions(namespaces []string) cache.Options {
	managed := cache.ByObject{Label: ManagedSelector()}
	o := cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.ServiceAccount{}:        managed,
			&corev1.Secret{}:                managed,
			&corev1.ConfigMap{}:             managed,
			&corev1.Service{}:               managed,
			&appsv1.Deployment{}:            managed,
			&networkingv1.NetworkPolicy{}:   managed,
			&policyv1.PodDisruptionBudget{}: managed,
			&apiextensionsv1.CustomResourceDefinition{}: {
				Field: fields.OneTermEqualSelector("metadata.name", CertificateCRDName),
			},
		},
	}
	setNamespaces(&o, namespaces)
	return o
}

// certificateCacheOptions caches only the operator's Certificates. It is a cache of its
// own because cert-manager may be installed after the manager started.
func certificateCacheOptions(namespaces []string) cache.Options {
	o := cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject:         map[client.Object]cache.ByObject{&cmv1.Certificate{}: {Label: ManagedSelector()}},
	}
	setNamespaces(&o, namespaces)
	return o
}

func setNamespaces(o *cache.Options, namespaces []string) {
	if len(namespaces) > 0 {
		o.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			o.DefaultNamespaces[ns] = cache.Config{}
		}
	}
}
