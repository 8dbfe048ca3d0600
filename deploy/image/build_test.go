package main

import (
	"archive/tar"
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestBuildImages builds both images for this machine's platform, as test.sh and the README
// command do, and inspects what a container runtime would run.
func TestBuildImages(t *testing.T) {
	src, err := findSource(".")
	if err != nil {
		t.Fatal(err)
	}
	const version = "v0.0.0-imagetest"
	o := Options{Source: src, Out: t.TempDir(), Version: version, Revision: "0123456789abcdef",
		Binaries: []string{"sortie-server", "sortie-agent"}, Platforms: []Platform{{OS: "linux", Arch: runtime.GOARCH}}}
	built, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(built) != 2 {
		t.Fatalf("built %d images, want 2", len(built))
	}
	reg := httptest.NewServer(registry.New())
	defer reg.Close()
	for _, b := range built {
		t.Run(b.Binary, func(t *testing.T) {
			img := platformImage(t, b.Layout, runtime.GOARCH)
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			spec := Specs[b.Binary]
			entry := "/usr/local/bin/" + b.Binary
			if diff := cmp.Diff([]string{entry}, cfg.Config.Entrypoint); diff != "" {
				t.Errorf("entrypoint (-want +got):\n%s", diff)
			}
			if cfg.Config.User != "65532:65532" {
				t.Errorf("user %q, want the numeric non-root 65532:65532", cfg.Config.User)
			}
			if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
				t.Errorf("platform %s/%s, want linux/%s", cfg.OS, cfg.Architecture, runtime.GOARCH)
			}
			for k, want := range map[string]string{
				"org.opencontainers.image.title":    b.Binary,
				"org.opencontainers.image.version":  version,
				"org.opencontainers.image.revision": "0123456789abcdef",
				"org.opencontainers.image.source":   "https://github.com/sortie-dev/sortie",
			} {
				if got := cfg.Config.Labels[k]; got != want {
					t.Errorf("label %s = %q, want %q", k, got, want)
				}
			}
			if diff := cmp.Diff(spec.Env, cfg.Config.Env); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
			layers, err := img.Layers()
			if err != nil || len(layers) != 1 {
				t.Fatalf("layers %d (%v), want the one layer on an empty base", len(layers), err)
			}
			files := extract(t, layers[0], t.TempDir())
			exe := files[strings.TrimPrefix(entry, "/")]
			if exe.hdr == nil || exe.hdr.Mode&0o111 == 0 || exe.hdr.Uid != 0 {
				t.Fatalf("the layer's %s: %+v, want an executable owned by root (not writable by the user)", entry, exe.hdr)
			}
			if files["etc/ssl/certs/ca-certificates.crt"].hdr == nil {
				t.Error("the layer has no CA certificates: the agent could not verify an https hub")
			}
			if spec.DataDir != "" {
				if d := files[spec.DataDir+"/"].hdr; d == nil || d.Uid != 65532 {
					t.Errorf("data directory /%s: %+v, want one owned by 65532", spec.DataDir, d)
				}
			}
			// A static binary: no program interpreter (the base has no libc).
			f, err := elf.Open(exe.path)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Error("the binary is dynamically linked: it cannot run on an empty base")
				}
			}
			f.Close()
			out, err := exec.Command(exe.path, "--version").Output()
			if got, want := strings.TrimSpace(string(out)), b.Binary+" "+version; err != nil || got != want {
				t.Errorf("%s --version = %q (%v), want %q", entry, got, err, want)
			}
			checkDockerfile(t, b.Binary, spec, entry)

			// Pushing writes the same index to a registry (go-containerregistry's own, in memory).
			ref := strings.TrimPrefix(reg.URL, "http://") + "/sortie/" + b.Binary + ":" + version
			if err := Push(context.Background(), b.Layout, ref); err != nil {
				t.Fatal(err)
			}
			desc, err := remote.Get(must(name.NewTag(ref, name.Insecure)))
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != b.Digest {
				t.Errorf("the registry holds %s for %s, want the built index %s", desc.Digest, ref, b.Digest)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// platformImage opens the layout's one index and returns its image for linux/arch.
func platformImage(t *testing.T, dir, arch string) v1.Image {
	t.Helper()
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	rm, err := root.IndexManifest()
	if err != nil || len(rm.Manifests) != 1 {
		t.Fatalf("index.json: %v, %v; want one image index", rm, err)
	}
	idx, err := root.ImageIndex(rm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == arch {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no linux/%s image in %s", arch, dir)
	return nil
}

type layerFile struct {
	hdr  *tar.Header
	path string // extracted regular files only
}

// extract writes the layer's regular files under dir and returns every entry by name.
func extract(t *testing.T, l v1.Layer, dir string) map[string]layerFile {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]layerFile{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		f := layerFile{hdr: hdr}
		if hdr.Typeflag == tar.TypeReg {
			f.path = filepath.Join(dir, filepath.FromSlash(hdr.Name))
			if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f.path, data, os.FileMode(hdr.Mode)&0o755); err != nil {
				t.Fatal(err)
			}
		}
		files[hdr.Name] = f
	}
}

// checkDockerfile checks that the Dockerfile of bin makes the image this command makes.
func checkDockerfile(t *testing.T, bin string, spec Spec, entry string) {
	t.Helper()
	f, err := os.Open(bin + ".Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages int
	var final []string // instructions of the last stage
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			stages++
			final = nil
		}
		final = append(final, line)
	}
	if stages < 2 || final[0] != "FROM scratch" {
		t.Errorf("%s.Dockerfile: %d stages, last %q; want a multi-stage build ending FROM scratch", bin, stages, final[0])
	}
	want := []string{
		`ENTRYPOINT ["` + entry + `"]`,
		"USER " + User,
		"WORKDIR " + spec.WorkingDir,
		"EXPOSE " + strings.Join(spec.Ports, " "),
	}
	for _, e := range spec.Env {
		want = append(want, "ENV "+e)
	}
	for _, w := range want {
		if !slices.Contains(final, w) {
			t.Errorf("%s.Dockerfile's last stage lacks %q (the daemonless build has it)", bin, w)
		}
	}
}
