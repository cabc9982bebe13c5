// Command images builds the manager and mcp-runtime container images without a container
// engine and writes them as tarballs (`make images`):
//
//	go run ./hack/images -version v0.1.0 -out dist/images
//
// Load them with `docker load -i`, `ctr -n k8s.io images import` or push them with
// `crane push dist/images/mcp-runtime.tar ghcr.io/...`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/mcpfleet/mcp-fleet-operator/hack/images/imagebuild"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run() error {
	var o imagebuild.Options
	var registry, outDir, binDir string
	flag.StringVar(&o.Version, "version", "dev", "Version stamped into the binaries and used as the image tag.")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "GOARCH of the images.")
	flag.StringVar(&o.CABundle, "ca-bundle", imagebuild.CABundlePath, "PEM CA bundle copied into the images (for HTTPS to JWKS and OIDC issuers).")
	flag.StringVar(&registry, "registry", imagebuild.DefaultRegistry, "Registry and namespace of the image names.")
	flag.StringVar(&outDir, "out", "dist/images", "Directory of the image tarballs.")
	flag.StringVar(&binDir, "bin-dir", "dist/images/bin", "Directory of the static binaries.")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(binDir, 0o750); err != nil {
		return err
	}
	outs, err := imagebuild.BuildAll(ctx, imagebuild.Shipped(registry), o, binDir, outDir)
	if err != nil {
		return err
	}
	for i, s := range imagebuild.Shipped(registry) {
		tag, _ := s.Tag(o.Version)
		fmt.Printf("%s\t%s\n", outs[i], tag)
	}
	return nil
}
