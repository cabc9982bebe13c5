##@ cert-manager (out of cluster, for the local cluster and tests)
# hack/certmanager is its own Go module (cert-manager v1.21 pins older k8s.io/* than the root
# module), so the root `go test ./...` does not see it; test-certmanager runs its tests.
.PHONY: cert-manager-local test-certmanager

cert-manager-local: ## Build cert-manager-local once (cached outside the repo) and print its path.
	@hack/certmanager.sh build

test-certmanager: ## cert-manager-local's tests: flags, then issuance, renewal, CA injection, leader election on envtest.
	@assets=$$(ENVTEST_K8S_VERSION=$(ENVTEST_K8S_VERSION) hack/envtest.sh) && \
	bin=$$(hack/certmanager.sh build) && crds=$$(hack/certmanager.sh crds) && \
	cd hack/certmanager && \
	KUBEBUILDER_ASSETS=$$assets CERT_MANAGER_LOCAL=$$bin CERT_MANAGER_CRDS=$$crds go test -count=1 -v ./...
