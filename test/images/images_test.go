// Package images tests the container images `make images` ships: it builds them with the
// same code (hack/images/imagebuild) into a temporary directory, opens the tarballs with
// go-containerregistry and checks what a cluster would run.
package images

import (
	"archive/tar"
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	. "github.com/onsi/gomega"

	"github.com/mcpfleet/mcp-fleet-operator/hack/images/imagebuild"
)

const testVersion = "v9.8.7-imagetest"

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// file is one entry of an image's flattened filesystem.
type file struct {
	hdr  *tar.Header
	data []byte
}

func flatten(t *testing.T, r io.Reader) map[string]file {
	t.Helper()
	files := map[string]file{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("reading the image filesystem: %v", err)
		}
		data, err := io.ReadAll(io.LimitReader(tr, 512<<20))
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(strings.TrimPrefix(hdr.Name, "./"), "/")] = file{hdr: hdr, data: data}
	}
}

func TestShippedImages(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the images hold linux binaries; this test runs them")
	}
	g := NewWithT(t)
	tmp := t.TempDir()
	ca := filepath.Join(tmp, "ca.pem")
	caPEM := []byte("-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n")
	g.Expect(os.WriteFile(ca, caPEM, 0o600)).To(Succeed())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	specs := imagebuild.Shipped("")
	// KeepPaths: reuse the build cache of `go test`; the release flags are checked below.
	opts := imagebuild.Options{Version: testVersion, CABundle: ca, ModuleDir: moduleRoot(t), KeepPaths: true}
	outs, err := imagebuild.BuildAll(ctx, specs, opts, tmp, filepath.Join(tmp, "images"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(outs).To(HaveLen(2))
	g.Expect(filepath.Base(outs[0])).To(Equal("manager.tar"))
	g.Expect(filepath.Base(outs[1])).To(Equal("mcp-runtime.tar"))

	for i, s := range specs {
		t.Run(s.Name, func(t *testing.T) {
			g := NewWithT(t)
			tag, err := s.Tag(testVersion)
			g.Expect(err).NotTo(HaveOccurred())

			m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(outs[i]) })
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(m).To(HaveLen(1))
			g.Expect(m[0].RepoTags).To(ConsistOf(tag.String()))

			img, err := tarball.ImageFromPath(outs[i], &tag)
			g.Expect(err).NotTo(HaveOccurred())
			cf, err := img.ConfigFile()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cf.OS).To(Equal("linux"))
			g.Expect(cf.Architecture).To(Equal(runtime.GOARCH))
			g.Expect(cf.Config.User).To(Equal("65532:65532"))
			g.Expect(cf.Config.Entrypoint).To(Equal([]string{s.Path}))
			g.Expect(cf.Config.Cmd).To(BeEmpty())
			g.Expect(cf.Config.WorkingDir).To(Equal("/"))
			g.Expect(cf.Config.Labels).To(HaveKeyWithValue("org.opencontainers.image.version", testVersion))
			g.Expect(cf.Config.Labels).To(HaveKeyWithValue("org.opencontainers.image.source", imagebuild.Source))
			layers, err := img.Layers()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(layers).To(HaveLen(1))

			rc := mutate.Extract(img)
			files := flatten(t, rc)
			g.Expect(rc.Close()).To(Succeed())

			// Nothing but the binary and the CA bundle: no shell, no package manager, no passwd.
			var regular []string
			for name, f := range files {
				switch f.hdr.Typeflag {
				case tar.TypeReg:
					regular = append(regular, name)
				case tar.TypeDir:
				default:
					t.Errorf("%s: unexpected entry type %q (links and devices have no place here)", name, f.hdr.Typeflag)
				}
			}
			bin := strings.TrimPrefix(s.Path, "/")
			g.Expect(regular).To(ConsistOf(bin, strings.TrimPrefix(imagebuild.CABundlePath, "/")))
			for _, sh := range []string{"bin/sh", "bin/bash", "bin/busybox", "usr/bin/env", "etc/passwd"} {
				g.Expect(files).NotTo(HaveKey(sh))
			}
			g.Expect(files[strings.TrimPrefix(imagebuild.CABundlePath, "/")].data).To(Equal(caPEM))
			for name, f := range files {
				g.Expect(f.hdr.Uid).To(BeZero(), "%s must be owned by root so UID 65532 cannot change it", name)
				g.Expect(f.hdr.Mode&0o022).To(BeZero(), "%s must not be group or world writable", name)
			}
			g.Expect(files[bin].hdr.Mode & 0o777).To(Equal(int64(0o555)))

			// The binary is static: no program interpreter, no shared libraries.
			exe := filepath.Join(t.TempDir(), s.Name)
			g.Expect(os.WriteFile(exe, files[bin].data, 0o755)).To(Succeed())
			ef, err := elf.Open(exe)
			g.Expect(err).NotTo(HaveOccurred())
			for _, p := range ef.Progs {
				g.Expect(p.Type).NotTo(Equal(elf.PT_INTERP), "dynamically linked: built with cgo?")
			}
			libs, err := ef.ImportedLibraries()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(libs).To(BeEmpty())
			g.Expect(ef.Close()).To(Succeed())

			// It runs and reports the version it was built with.
			runCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(runCtx, exe, s.VersionArgs...).Output()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(strings.TrimSpace(string(out))).To(Equal(testVersion))

			// The same binary gives the same image, byte for byte.
			again := filepath.Join(t.TempDir(), "again.tar")
			g.Expect(imagebuild.Write(s, opts, filepath.Join(tmp, s.Name), again)).To(Succeed())
			img2, err := tarball.ImageFromPath(again, &tag)
			g.Expect(err).NotTo(HaveOccurred())
			d1, err := img.Digest()
			g.Expect(err).NotTo(HaveOccurred())
			d2, err := img2.Digest()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(d2).To(Equal(d1))
		})
	}
}

// The runtime image is what the operator's init container runs as
// `/mcp-runtime install /opt/mcp-runtime`, and the manager defaults to it by that name.
func TestRuntimeImageMatchesTheOperator(t *testing.T) {
	g := NewWithT(t)
	var rt imagebuild.Spec
	for _, s := range imagebuild.Shipped("") {
		if s.Name == "mcp-runtime" {
			rt = s
		}
	}
	g.Expect(rt.Path).To(Equal("/mcp-runtime"))
	g.Expect(rt.Repository).To(Equal("ghcr.io/mcpfleet/mcp-runtime"))
	main, err := os.ReadFile(filepath.Join(moduleRoot(t), "cmd", "manager", "main.go"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(main)).To(ContainSubstring(`"` + rt.Repository + `:"+version.Version`))
}

// make images builds release binaries: static, trimmed paths, stripped, version stamped.
func TestReleaseBuildFlags(t *testing.T) {
	g := NewWithT(t)
	s := imagebuild.Shipped("")[0]
	cmd := imagebuild.BuildCommand(context.Background(), s, imagebuild.Options{Version: "v1.2.3", Arch: "arm64"}, "/out/manager")
	g.Expect(cmd.Args).To(Equal([]string{"go", "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/mcpfleet/mcp-fleet-operator/internal/version.Version=v1.2.3",
		"-o", "/out/manager", "./cmd/manager"}))
	g.Expect(cmd.Env).To(ContainElements("CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64"))
	// The last assignment wins in exec: whatever the inherited environment says, the last
	// CGO_ENABLED entry must be 0.
	last := ""
	for _, e := range cmd.Env {
		if strings.HasPrefix(e, "CGO_ENABLED=") {
			last = e
		}
	}
	g.Expect(last).To(Equal("CGO_ENABLED=0"))
}

func TestTagRejectsInvalidVersions(t *testing.T) {
	g := NewWithT(t)
	s := imagebuild.Shipped("registry.example.com/team/")[1]
	tag, err := s.Tag("v1.0.0-3-gabcdef0-dirty")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tag.String()).To(Equal("registry.example.com/team/mcp-runtime:v1.0.0-3-gabcdef0-dirty"))
	_, err = s.Tag("v1/evil")
	g.Expect(err).To(HaveOccurred())
	g.Expect(imagebuild.Write(s, imagebuild.Options{Version: "bad tag"}, "/nonexistent", filepath.Join(t.TempDir(), "x.tar"))).NotTo(Succeed())
}

// The Dockerfile builds the same two images as hack/images: targets, binary paths,
// user, and base images pinned by digest.
func TestDockerfile(t *testing.T) {
	g := NewWithT(t)
	f, err := os.Open(filepath.Join(moduleRoot(t), "Dockerfile"))
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = f.Close() }()

	args := map[string]string{}
	stages := map[string][]string{} // target → its instructions
	var current string
	argRe := regexp.MustCompile(`^ARG (\w+)=(\S+)$`)
	fromRe := regexp.MustCompile(`^FROM (?:--platform=\S+ )?(\S+) AS (\w+)$`)
	froms := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if m := argRe.FindStringSubmatch(line); m != nil && current == "" {
			args[m[1]] = m[2]
		}
		if m := fromRe.FindStringSubmatch(line); m != nil {
			current = m[2]
			froms[current] = m[1]
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			t.Fatalf("unparsed FROM line %q", line)
		}
		if current != "" {
			stages[current] = append(stages[current], line)
		}
	}
	g.Expect(sc.Err()).NotTo(HaveOccurred())

	pinned := regexp.MustCompile(`^[a-z0-9.\-/]+:[\w.\-]+@sha256:[0-9a-f]{64}$`)
	g.Expect(args["GO_IMAGE"]).To(MatchRegexp(pinned.String()))
	g.Expect(args["GO_IMAGE"]).To(ContainSubstring("golang:1.26"))
	g.Expect(args["BASE_IMAGE"]).To(MatchRegexp(pinned.String()))
	g.Expect(args["BASE_IMAGE"]).To(HavePrefix("gcr.io/distroless/static:nonroot@"))
	g.Expect(froms).To(HaveKeyWithValue("builder", "${GO_IMAGE}"))

	for target, spec := range map[string]imagebuild.Spec{"manager": imagebuild.Shipped("")[0], "runtime": imagebuild.Shipped("")[1]} {
		g.Expect(froms).To(HaveKeyWithValue(target, "${BASE_IMAGE}"), "target %s", target)
		g.Expect(stages[target]).To(ContainElement(MatchRegexp(`^COPY --from=builder (--chmod=0555 )?/out/\S+ ` + regexp.QuoteMeta(spec.Path) + `$`)))
		g.Expect(stages[target]).To(ContainElement("USER " + imagebuild.User))
		g.Expect(stages[target]).To(ContainElement(`ENTRYPOINT ["` + spec.Path + `"]`))
	}
	build := strings.Join(stages["builder"], "\n")
	g.Expect(build).To(ContainSubstring("ENV CGO_ENABLED=0"))
	g.Expect(strings.Count(build, "-trimpath")).To(Equal(2))
	g.Expect(strings.Count(build, imagebuild.VersionPackage+"=${VERSION}")).To(Equal(2))
}
