##@ Local cluster (a real single-node Kubernetes on this machine; Linux + root; see hack/localcluster/README.md)
LOCALCLUSTER := hack/localcluster/cluster.sh

.PHONY: cluster-up cluster-down cluster-status cluster-images cluster-import cluster-smoke cluster-leftovers
cluster-up: ## Start the local cluster (imports dist/images/*.tar and the cluster's own images); prints the kubeconfig path.
	@$(LOCALCLUSTER) up

cluster-down: ## Stop the local cluster and remove everything it created on the host (idempotent).
	@$(LOCALCLUSTER) down

cluster-status: ## Show the local cluster's components, node and kubeconfig; fails unless all are up.
	@$(LOCALCLUSTER) status

cluster-images: ## Build the local cluster's own images (pause, probe, everything-server) into its images dir.
	@$(LOCALCLUSTER) images

cluster-import: ## Import dist/images/*.tar (from `make images`) into the running local cluster.
	@tars="$(wildcard $(IMAGES_DIR)/*.tar)"; [ -n "$$tars" ] || { echo "no image tarballs in $(IMAGES_DIR): run 'make images' first" >&2; exit 1; }; \
	  $(LOCALCLUSTER) import $$tars

cluster-smoke: ## Check the running local cluster end to end (runtime Deployment, Services from the host, API from a pod).
	@hack/localcluster/smoke.sh

cluster-leftovers: ## List anything of the local cluster left on the host (after cluster-down); fails if any.
	@$(LOCALCLUSTER) leftovers
