##@ Packaging (Helm chart, kustomize installer)
CHART_DIR := charts/mcp-fleet-operator
# Recursive (=): read from Chart.yaml only when a recipe needs it.
RELEASE_VERSION ?= $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*$$/\1/p' $(CHART_DIR)/Chart.yaml)
OPERATOR_IMAGE_REPO ?= ghcr.io/mcpfleet/mcp-fleet-operator
RUNTIME_IMAGE_REPO ?= ghcr.io/mcpfleet/mcp-runtime

# test/packaging finds the tools through these (bin/helm, bin/kube-score are links into the
# version-keyed cache that hack/tools.sh fills).
export MCP_HELM := $(LOCALBIN)/helm
export MCP_KUBE_SCORE := $(LOCALBIN)/kube-score

# dist/install.yaml too: test/packaging dry-runs and scores what `make build-installer` ships
# (`make test` has already run `manifests`).
test-deps: helm-bin kube-score-bin installer

.PHONY: helm-bin kube-score-bin
helm-bin: | $(LOCALBIN) ## Build the pinned helm v4 once (cached outside the repo) and link bin/helm.
	@ln -sfn "$$(hack/tools.sh helm)" $(LOCALBIN)/helm

kube-score-bin: | $(LOCALBIN) ## Build the pinned kube-score once (cached outside the repo) and link bin/kube-score.
	@ln -sfn "$$(hack/tools.sh kube-score)" $(LOCALBIN)/kube-score

.PHONY: chart-sync
chart-sync: ## Copy the generated CRDs and manager RBAC rules into the chart (run after `make manifests`).
	rm -f $(CHART_DIR)/files/crds/*.yaml
	cp config/crd/bases/*.yaml $(CHART_DIR)/files/crds/
	cp config/rbac/role.yaml $(CHART_DIR)/files/rbac/role.yaml

.PHONY: helm-lint
helm-lint: helm-bin ## helm lint --strict the chart.
	$(LOCALBIN)/helm lint --strict $(CHART_DIR)

.PHONY: build-installer installer
build-installer: manifests ## Render config/default to dist/install.yaml (images tagged RELEASE_VERSION).
	@$(MAKE) --no-print-directory installer

installer: # dist/install.yaml from config/default as it is (no manifests regeneration).
	@kubectl="$$(ENVTEST_K8S_VERSION=$(ENVTEST_K8S_VERSION) hack/envtest.sh)/kubectl" && \
	mkdir -p dist/installer && \
	printf '%s\n' \
	  'apiVersion: kustomize.config.k8s.io/v1beta1' \
	  'kind: Kustomization' \
	  'resources: [../../config/default]' \
	  'images:' \
	  '  - name: ghcr.io/mcpfleet/mcp-fleet-operator' \
	  '    newName: $(OPERATOR_IMAGE_REPO)' \
	  '    newTag: $(RELEASE_VERSION)' \
	  'patches:' \
	  '  - patch: |-' \
	  '      apiVersion: apps/v1' \
	  '      kind: Deployment' \
	  '      metadata: {name: mcp-fleet-operator-controller-manager, namespace: mcp-fleet-system}' \
	  '      spec: {template: {spec: {containers: [{name: manager, env: [{name: RUNTIME_IMAGE, value: "$(RUNTIME_IMAGE_REPO):$(RELEASE_VERSION)"}]}]}}}' \
	  >dist/installer/kustomization.yaml && \
	"$$kubectl" kustomize dist/installer >dist/install.yaml.tmp && mv dist/install.yaml.tmp dist/install.yaml && \
	echo "wrote dist/install.yaml ($(OPERATOR_IMAGE_REPO):$(RELEASE_VERSION), runtime $(RUNTIME_IMAGE_REPO):$(RELEASE_VERSION))"

.PHONY: packaging-test
packaging-test: test-deps ## Chart and installer checks only: lint, dry-run, kube-score, install, upgrade.
	KUBEBUILDER_ASSETS="$$(ENVTEST_K8S_VERSION=$(ENVTEST_K8S_VERSION) hack/envtest.sh)" \
	  go test -count=1 -timeout 10m ./test/packaging/...
