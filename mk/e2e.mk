##@ Whole path on a real single-node cluster (Linux, root)
.PHONY: demo demo-down test-e2e

demo: ## Cluster + cert-manager + operator (Helm) + the stdio sample; prints URL, CA, token and a client command.
	@hack/demo.sh up

demo-down: ## Tear the demo cluster down and leave the machine as it was.
	@hack/demo.sh down

test-e2e: ## End-to-end suite (test/e2e) on a fresh local cluster; tears it down afterwards.
	@hack/e2e.sh
