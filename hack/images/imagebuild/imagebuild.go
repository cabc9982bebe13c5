// Package imagebuild builds the project's container images without a container engine:
// a static Go binary (and the CA bundle it needs for HTTPS) as the only layer on an empty
// base, run as UID 65532, written as a `docker save`-style tarball that `docker load`,
// `ctr images import` and `crane push` accept. The same code backs `make images` and the
// test in test/images.
package imagebuild

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// User the images run as: distroless "nonroot", matching the pods' runAsUser.
	User = "65532:65532"
	// VersionPackage receives the version through -ldflags -X.
	VersionPackage = "github.com/mcpfleet/mcp-fleet-operator/internal/version.Version"
	// CABundlePath is where Go's crypto/x509 looks first on Linux; the runtime needs it
	// to fetch JWKS and OIDC discovery documents over HTTPS.
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
	// DefaultRegistry prefixes the image names.
	DefaultRegistry = "ghcr.io/mcpfleet"
	// Source is the repository the images are built from (OCI source label).
	Source = "https://github.com/mcpfleet/mcp-fleet-operator"
)

// Epoch is the timestamp of every file and of the image config, so that the same
// binary always gives the same image digest.
var Epoch = time.Unix(0, 0).UTC()

// Spec describes one image.
type Spec struct {
	// Name is the file stem of the tarball (manager → manager.tar).
	Name string
	// Package is the Go main package of the binary.
	Package string
	// Repository is the image name without tag (ghcr.io/mcpfleet/mcp-runtime).
	Repository string
	// Path of the binary inside the image; also the entrypoint.
	Path string
	// VersionArgs make the binary print its version (used by tests and smoke checks).
	VersionArgs []string
	// Title and Description become OCI labels.
	Title, Description string
}

// Shipped returns the project's images: the operator and the runtime.
func Shipped(registry string) []Spec {
	if registry == "" {
		registry = DefaultRegistry
	}
	registry = strings.TrimSuffix(registry, "/")
	return []Spec{
		{
			Name:        "manager",
			Package:     "./cmd/manager",
			Repository:  registry + "/mcp-fleet-operator",
			Path:        "/manager",
			VersionArgs: []string{"-version"},
			Title:       "mcp-fleet-operator",
			Description: "Kubernetes operator for secured MCP servers",
		},
		{
			Name:        "mcp-runtime",
			Package:     "./cmd/mcp-runtime",
			Repository:  registry + "/mcp-runtime",
			Path:        "/mcp-runtime",
			VersionArgs: []string{"version"},
			Title:       "mcp-runtime",
			Description: "Runtime in front of an MCP server: TLS, Origin allowlist, auth, rate limits, validation, audit",
		},
	}
}

// Options of a build. The zero value builds for linux/runtime.GOARCH at version "dev"
// with the host's CA bundle.
type Options struct {
	// Version is stamped into the binary and used as the image tag.
	Version string
	// Arch is the GOARCH (amd64, arm64, …).
	Arch string
	// CABundle is a PEM file copied to CABundlePath; "" uses CABundlePath of the host.
	CABundle string
	// ModuleDir is the directory `go build` runs in; "" is the current directory.
	ModuleDir string
	// KeepPaths builds without -trimpath, so that tests reuse the build cache of
	// `go test`; release images never set it.
	KeepPaths bool
}

func (o Options) withDefaults() Options {
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.CABundle == "" {
		o.CABundle = CABundlePath
	}
	return o
}

// Tag is the image reference the tarball is written with.
func (s Spec) Tag(version string) (name.Tag, error) {
	t, err := name.NewTag(s.Repository+":"+version, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image tag for version %q: %w", version, err)
	}
	return t, nil
}

// BuildBinary compiles the spec's package into out: static (CGO_ENABLED=0), -trimpath,
// stripped, with the version stamped in.
func BuildBinary(ctx context.Context, s Spec, o Options, out string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := BuildCommand(ctx, s, o, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %w\n%s", s.Package, err, b)
	}
	return nil
}

// BuildCommand is the `go build` that BuildBinary runs.
func BuildCommand(ctx context.Context, s Spec, o Options, out string) *exec.Cmd {
	o = o.withDefaults()
	args := []string{"build"}
	if !o.KeepPaths {
		args = append(args, "-trimpath")
	}
	args = append(args, "-ldflags", "-s -w -X "+VersionPackage+"="+o.Version, "-o", out, s.Package)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = o.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.Arch)
	return cmd
}

// Image assembles the image around an already built binary.
func Image(s Spec, o Options, binary string) (v1.Image, error) {
	o = o.withDefaults()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return layerTar(s, o, binary)
	}, tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("layer of %s: %w", s.Name, err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:     layer,
		MediaType: types.DockerLayer,
		History:   v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: "hack/images: " + s.Path, Comment: "static binary"},
	})
	if err != nil {
		return nil, fmt.Errorf("appending the layer of %s: %w", s.Name, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = o.Arch
	cf.Created = v1.Time{Time: Epoch}
	cf.Config = v1.Config{
		User:       User,
		Entrypoint: []string{s.Path},
		WorkingDir: "/",
		Env:        []string{"SSL_CERT_FILE=" + CABundlePath},
		Labels: map[string]string{
			"org.opencontainers.image.title":       s.Title,
			"org.opencontainers.image.description": s.Description,
			"org.opencontainers.image.version":     o.Version,
			"org.opencontainers.image.source":      Source,
			"org.opencontainers.image.licenses":    "Apache-2.0",
		},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("config of %s: %w", s.Name, err)
	}
	return img, nil
}

// Write builds the image around binary and writes it to out as a tarball tagged
// Repository:Version.
func Write(s Spec, o Options, binary, out string) error {
	o = o.withDefaults()
	tag, err := s.Tag(o.Version)
	if err != nil {
		return err
	}
	img, err := Image(s, o, binary)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o750); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

// BuildAll compiles every spec into workDir and writes <outDir>/<Name>.tar for each.
func BuildAll(ctx context.Context, specs []Spec, o Options, workDir, outDir string) ([]string, error) {
	var outs []string
	for _, s := range specs {
		bin := filepath.Join(workDir, s.Name)
		if err := BuildBinary(ctx, s, o, bin); err != nil {
			return nil, err
		}
		out := filepath.Join(outDir, s.Name+".tar")
		if err := Write(s, o, bin, out); err != nil {
			return nil, err
		}
		outs = append(outs, out)
	}
	return outs, nil
}

// layerTar streams the layer: parent directories, the CA bundle and the binary, all
// owned by root and not writable, so UID 65532 cannot alter them.
func layerTar(s Spec, o Options, binary string) (io.ReadCloser, error) {
	if !path.IsAbs(s.Path) || path.Clean(s.Path) != s.Path {
		return nil, fmt.Errorf("binary path %q must be absolute and clean", s.Path)
	}
	for _, f := range []string{binary, o.CABundle} {
		if st, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("image %s: %w", s.Name, err)
		} else if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("image %s: %s is not a regular file", s.Name, f)
		}
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := errors.Join(
			writeDirs(tw, path.Dir(CABundlePath)),
			writeFile(tw, CABundlePath, o.CABundle, 0o444),
			writeDirs(tw, path.Dir(s.Path)),
			writeFile(tw, s.Path, binary, 0o555),
			tw.Close(),
		)
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// writeDirs writes the entries of dir and its parents ("/" excluded), outermost first.
func writeDirs(tw *tar.Writer, dir string) error {
	if dir == "/" {
		return nil
	}
	if err := writeDirs(tw, path.Dir(dir)); err != nil {
		return err
	}
	return tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeDir, Name: strings.TrimPrefix(dir, "/") + "/", Mode: 0o755,
		ModTime: Epoch, Format: tar.FormatPAX,
	})
}

func writeFile(tw *tar.Writer, dst, src string, mode int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: mode, Size: st.Size(),
		ModTime: Epoch, Format: tar.FormatPAX,
	}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return nil
}
