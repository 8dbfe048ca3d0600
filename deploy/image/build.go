package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// User is the numeric user and group the images run as (distroless's "nonroot"): numeric,
// so Kubernetes' runAsNonRoot can check it without an /etc/passwd.
const User = "65532:65532"

// caBundle is where Go's crypto/x509 looks first on Linux; the agent needs it to verify an
// https hub, the server to reach rediss:// and OIDC peers.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// Spec is what an image holds besides its binary; the Dockerfiles say the same.
type Spec struct {
	Description string
	Env         []string
	Ports       []string // "8080/tcp"
	WorkingDir  string
	// DataDir, if set, is a directory owned by User (the server's embedded store).
	DataDir string
}

// Specs are the images this command can build, by binary name.
var Specs = map[string]Spec{
	"sortie-server": {
		Description: "Sortie control plane: REST, Connect, OIDC and the Agent Hub on one HTTP/2 port",
		Env:         []string{"PATH=/usr/local/bin", "SORTIE_ADDR=0.0.0.0:8080", "SORTIE_DATA_DIR=/var/lib/sortie"},
		Ports:       []string{"8080/tcp"},
		WorkingDir:  "/var/lib/sortie",
		DataDir:     "var/lib/sortie",
	},
	"sortie-agent": {
		Description: "Sortie edge agent: connects a Kubernetes cluster to a Sortie server",
		Env:         []string{"PATH=/usr/local/bin", "SORTIE_AGENT_HEALTH_ADDR=0.0.0.0:8081"},
		Ports:       []string{"8081/tcp"},
		WorkingDir:  "/",
	},
}

// Platform is one os/arch an image is built for.
type Platform struct{ OS, Arch string }

// Options says what Build builds.
type Options struct {
	Source    string // repository root
	Out       string // receives <Out>/<binary>, an OCI image layout each
	Version   string
	Revision  string // git commit, for the labels; may be empty
	Binaries  []string
	Platforms []Platform
}

// Built is one image index written by Build.
type Built struct {
	Binary string
	Layout string // its OCI image layout directory
	Digest v1.Hash
}

// epoch is every file's and image's time: images built from the same sources are the same.
var epoch = time.Unix(0, 0).UTC()

// Build builds each binary for each platform and writes its image index to an OCI layout.
func Build(ctx context.Context, o Options) ([]Built, error) {
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		return nil, fmt.Errorf("CA certificates for the images: %w (install the ca-certificates package)", err)
	}
	work, err := os.MkdirTemp("", "sortie-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	var built []Built
	for _, bin := range o.Binaries {
		spec, ok := Specs[bin]
		if !ok {
			return nil, fmt.Errorf("no image is defined for %q", bin)
		}
		idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
		for _, p := range o.Platforms {
			exe := filepath.Join(work, p.OS+"-"+p.Arch, bin)
			if err := goBuild(ctx, o, bin, p, exe); err != nil {
				return nil, err
			}
			img, err := image(bin, spec, p, o, exe, ca)
			if err != nil {
				return nil, err
			}
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
				Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch},
			}})
		}
		dir := filepath.Join(o.Out, bin)
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		lp, err := layout.Write(dir, empty.Index)
		if err != nil {
			return nil, err
		}
		if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": o.Version,
		})); err != nil {
			return nil, fmt.Errorf("write %s: %w", dir, err)
		}
		digest, err := idx.Digest()
		if err != nil {
			return nil, err
		}
		built = append(built, Built{Binary: bin, Layout: dir, Digest: digest})
	}
	return built, nil
}

// goBuild builds cmd/<bin> static, stripped and stamped, as the Dockerfiles do.
func goBuild(ctx context.Context, o Options, bin string, p Platform, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X github.com/sortie-dev/sortie/cmd/internal/version.stamped="+o.Version,
		"-o", out, "./cmd/"+bin)
	cmd.Dir = o.Source
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch, "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %w\n%s", bin, p.OS, p.Arch, err, b)
	}
	return nil
}

// image returns the image of one binary on one platform: one layer on an empty base.
func image(bin string, spec Spec, p Platform, o Options, exe string, ca []byte) (v1.Image, error) {
	exeData, err := os.ReadFile(exe)
	if err != nil {
		return nil, err
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	dir := func(name string, uid int, mode int64) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: epoch, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX})
		tw.Write(data)
	}
	for _, d := range []string{"etc", "etc/ssl", "etc/ssl/certs", "usr", "usr/local", "usr/local/bin", "tmp"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		dir(d, 0, mode)
	}
	file(caBundle[1:], 0o644, ca)
	file("usr/local/bin/"+bin, 0o755, exeData)
	if spec.DataDir != "" {
		dir("var", 0, 0o755)
		dir("var/lib", 0, 0o755)
		dir(spec.DataDir, 65532, 0o700)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := tb.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		CreatedBy: "deploy/image: " + bin + " " + o.Version, Created: v1.Time{Time: epoch},
	}})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = p.OS, p.Arch
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.Entrypoint = []string{"/usr/local/bin/" + bin}
	cfg.Config.User = User
	cfg.Config.Env = spec.Env
	cfg.Config.WorkingDir = spec.WorkingDir
	cfg.Config.ExposedPorts = map[string]struct{}{}
	for _, port := range spec.Ports {
		cfg.Config.ExposedPorts[port] = struct{}{}
	}
	cfg.Config.Labels = Labels(bin, spec, o)
	return mutate.ConfigFile(img, cfg)
}

// Labels are the OCI annotations of an image's config.
func Labels(bin string, spec Spec, o Options) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       bin,
		"org.opencontainers.image.description": spec.Description,
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.source":      "https://github.com/sortie-dev/sortie",
		"org.opencontainers.image.url":         "https://github.com/sortie-dev/sortie",
	}
	if o.Revision != "" {
		l["org.opencontainers.image.revision"] = o.Revision
	}
	return l
}

// Push pushes the image index of an OCI layout to ref, with the credentials of docker login.
func Push(ctx context.Context, layoutDir, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("-push: %w", err)
	}
	lp, err := layout.FromPath(layoutDir)
	if err != nil {
		return err
	}
	root, err := lp.ImageIndex()
	if err != nil {
		return err
	}
	m, err := root.IndexManifest()
	if err != nil {
		return err
	}
	if len(m.Manifests) != 1 {
		return fmt.Errorf("%s holds %d entries, want the one index this command writes", layoutDir, len(m.Manifests))
	}
	idx, err := root.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		return err
	}
	if err := remote.WriteIndex(tag, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}
