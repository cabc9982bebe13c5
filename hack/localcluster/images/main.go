// Command images builds the localcluster's own images without a container engine, with the
// same code as `make images` (hack/images/imagebuild), and writes them as tarballs for
// `ctr -n k8s.io images import` (`make cluster-images`):
//
//	go run ./hack/localcluster/images -out ~/.cache/mcp-fleet-operator/localcluster/images
//
//	pause.tar              localhost/pause:<tag>       the pod sandbox image
//	probe.tar              localhost/probe:<tag>       HTTP server and in-cluster API check
//	everything-server.tar  <registry>/everything-server:<version>
//	                       go-sdk's conformance server, binary at /everything-server
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/hack/images/imagebuild"
)

const everythingServerPackage = "github.com/modelcontextprotocol/go-sdk/conformance/everything-server"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster images:", err)
		os.Exit(1)
	}
}

func run() error {
	var o imagebuild.Options
	var outDir, registry, tag, esVersion string
	flag.StringVar(&outDir, "out", "", "Directory of the image tarballs (required).")
	flag.StringVar(&registry, "registry", imagebuild.DefaultRegistry, "Registry and namespace of the everything-server image.")
	flag.StringVar(&tag, "tag", "v1", "Tag of the localhost/pause and localhost/probe images.")
	flag.StringVar(&esVersion, "everything-server-version", "v1.8.0", "Version of "+everythingServerPackage+" (also its image tag).")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "GOARCH of the images.")
	flag.StringVar(&o.CABundle, "ca-bundle", imagebuild.CABundlePath, "PEM CA bundle copied into the images.")
	flag.StringVar(&o.ModuleDir, "module-dir", ".", "Root of this repository (where ./hack/localcluster/... resolve).")
	flag.Parse()
	if outDir == "" {
		return fmt.Errorf("-out is required: the directory the tarballs are written to")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	work, err := os.MkdirTemp("", "localcluster-images-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()

	own := []imagebuild.Spec{
		{Name: "pause", Package: "./hack/localcluster/pause", Repository: "localhost/pause", Path: "/pause",
			Title: "localcluster pause", Description: "Pod sandbox: sleeps, reaps children, exits on SIGTERM"},
		{Name: "probe", Package: "./hack/localcluster/probe", Repository: "localhost/probe", Path: "/probe",
			Title: "localcluster probe", Description: "HTTP server and in-cluster API server check"},
	}
	ownOpts := o
	ownOpts.Version = tag
	if _, err := imagebuild.BuildAll(ctx, own, ownOpts, work, outDir); err != nil {
		return err
	}
	for _, s := range own {
		t, _ := s.Tag(tag)
		fmt.Printf("%s\t%s\n", filepath.Join(outDir, s.Name+".tar"), t)
	}

	es := imagebuild.Spec{Name: "everything-server", Package: everythingServerPackage,
		Repository: registry + "/everything-server", Path: "/everything-server",
		Title: "everything-server", Description: "MCP go-sdk conformance server " + esVersion + " (stdio)"}
	bin, err := installEverythingServer(ctx, esVersion, o.Arch, work)
	if err != nil {
		return err
	}
	esOpts := o
	esOpts.Version = esVersion
	out := filepath.Join(outDir, es.Name+".tar")
	if err := imagebuild.Write(es, esOpts, bin, out); err != nil {
		return err
	}
	t, err := es.Tag(esVersion)
	if err != nil {
		return err
	}
	fmt.Printf("%s\t%s\n", out, t)
	return nil
}

// installEverythingServer runs `go install pkg@version` (static) into dir: the module is not
// a dependency of this repository, so it is built from its own go.mod.
func installEverythingServer(ctx context.Context, version, arch, dir string) (string, error) {
	if arch != runtime.GOARCH {
		return "", fmt.Errorf("the everything-server image can only be built for the host architecture %s (got -arch %s)", runtime.GOARCH, arch)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", "-trimpath", "-ldflags", "-s -w", everythingServerPackage+"@"+version)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOBIN="+dir)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", everythingServerPackage, version, err, b)
	}
	return filepath.Join(dir, "everything-server"), nil
}
