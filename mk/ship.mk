##@ Ship
IMAGE_REGISTRY ?= ghcr.io/mcpfleet
IMAGES_DIR ?= $(CURDIR)/dist/images
IMAGE_ARCH ?= $(shell go env GOARCH)
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt

.PHONY: images images-test
images: ## Build the manager and mcp-runtime images without a container engine: dist/images/{manager,mcp-runtime}.tar.
	go run ./hack/images -version $(VERSION) -arch $(IMAGE_ARCH) -registry $(IMAGE_REGISTRY) \
	  -ca-bundle $(CA_BUNDLE) -out $(IMAGES_DIR) -bin-dir $(IMAGES_DIR)/bin

images-test: ## Test the image build (user, entrypoint, no shell, version) and the Dockerfile pins.
	go test -count=1 ./test/images/ ./hack/images/...
