##@ Documentation
.PHONY: docs
docs: ## Regenerate docs/api.md from the CRDs in config/crd/bases.
	go run ./hack/apidocs -crds config/crd/bases -out docs/api.md
