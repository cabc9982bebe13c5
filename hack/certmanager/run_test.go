package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
)

// TestWaitForCRDs checks the launcher says what is wrong before running controllers that
// would otherwise wait forever on informers for resources nobody serves.
func TestWaitForCRDs(t *testing.T) {
	served := func(resources ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/apis/cert-manager.io/v1" || resources == nil {
				http.NotFound(w, r)
				return
			}
			body := `{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"cert-manager.io/v1","resources":[`
			for i, name := range resources {
				if i > 0 {
					body += ","
				}
				body += fmt.Sprintf(`{"name":%q,"namespaced":true,"kind":"X","verbs":["get"]}`, name)
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(body + "]}"))
		}
	}
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    string // empty: no error
	}{
		{"all served", served("certificaterequests", "certificates", "clusterissuers", "issuers", "certificates/status"), ""},
		{"group not served", served(), `missing cert-manager.io/v1 certificaterequests, certificates, clusterissuers, issuers; install them first: kubectl apply --server-side -f "$(hack/certmanager.sh crds)"`},
		{"some missing", served("certificates", "issuers"), "missing cert-manager.io/v1 certificaterequests, clusterissuers;"},
		{"forbidden", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "forbidden", http.StatusForbidden) },
			"for the cert-manager.io/v1 API failed for 1s (is the cluster up and --kubeconfig right?)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			err := waitForCRDs(t.Context(), &rest.Config{Host: srv.URL}, time.Second)
			if tc.want == "" {
				NewWithT(t).Expect(err).NotTo(HaveOccurred())
				return
			}
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}
}
