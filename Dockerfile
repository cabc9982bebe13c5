# Two images from one build (BuildKit: Docker 23+ or docker buildx):
#   docker build --target manager --build-arg VERSION=v0.1.0 -t ghcr.io/mcpfleet/mcp-fleet-operator:v0.1.0 .
#   docker build --target runtime --build-arg VERSION=v0.1.0 -t ghcr.io/mcpfleet/mcp-runtime:v0.1.0 .
# Without a container engine, `make images` builds the same two images (hack/images).
#
# Base images are pinned by digest (multi-arch index digests, as published in public
# Dockerfiles pinning golang:1.26.8 and gcr.io/distroless/static:nonroot); bump tag and
# digest together.
ARG GO_IMAGE=docker.io/library/golang:1.26.8@sha256:0f063af2d465d8dcae54cce04278ada488b96f77b42449c8d071e47d016cc65a
ARG BASE_IMAGE=gcr.io/distroless/static:nonroot@sha256:e2e927ec666bae08560abb3c55d0659eceabb657f56b6782ab500a9fc7f555e3

# The builder runs on the build machine and cross-compiles (pure Go), so no emulation.
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS builder
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} go build -trimpath \
      -ldflags "-s -w -X github.com/mcpfleet/mcp-fleet-operator/internal/version.Version=${VERSION}" \
      -o /out/manager ./cmd/manager && \
    GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} go build -trimpath \
      -ldflags "-s -w -X github.com/mcpfleet/mcp-fleet-operator/internal/version.Version=${VERSION}" \
      -o /out/mcp-runtime ./cmd/mcp-runtime

# The runtime image: the operator's init container runs `/mcp-runtime install /opt/mcp-runtime`
# to copy the binary into stdio servers' pods; http servers run it as a sidecar.
# Distroless static: CA certificates for HTTPS to JWKS/OIDC issuers, no shell.
FROM ${BASE_IMAGE} AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="mcp-runtime" \
      org.opencontainers.image.description="Runtime in front of an MCP server: TLS, Origin allowlist, auth, rate limits, validation, audit" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/mcpfleet/mcp-fleet-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder --chmod=0555 /out/mcp-runtime /mcp-runtime
WORKDIR /
USER 65532:65532
ENTRYPOINT ["/mcp-runtime"]

# The operator. Last, so that a plain `docker build .` builds it.
FROM ${BASE_IMAGE} AS manager
ARG VERSION=dev
LABEL org.opencontainers.image.title="mcp-fleet-operator" \
      org.opencontainers.image.description="Kubernetes operator for secured MCP servers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/mcpfleet/mcp-fleet-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder --chmod=0555 /out/manager /manager
WORKDIR /
USER 65532:65532
ENTRYPOINT ["/manager"]
