// Command image builds Sortie's container images without a Docker daemon, the way ko does:
// each binary, static (CGO_ENABLED=0) and stamped with its version, is the one layer of an
// image on an empty base, with the CA certificates of the build machine, a non-root numeric
// user and OCI labels. It writes one OCI image layout directory per binary (an image index
// with an image per platform), and can push them to a registry.
//
// From the repository root:
//
//	go -C deploy/image run . -out "$PWD/oci" -version v0.1.0
//	go -C deploy/image run . -out "$PWD/oci" -version v0.1.0 -push registry.example/sortie
//
// The Dockerfiles next to this file build the same images with Docker; a test keeps their
// entrypoint, user, environment and ports the same as here. This is its own module so that
// go-containerregistry never enters the product's go.mod.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var o Options
	var platforms, binaries, push string
	fs.StringVar(&o.Out, "out", "oci", "directory that receives one OCI image layout per binary (<out>/<binary>)")
	fs.StringVar(&o.Version, "version", "", "version stamped into the binaries and the labels (default: git describe, else dev)")
	fs.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated os/arch list")
	fs.StringVar(&binaries, "binaries", "sortie-server,sortie-agent", "comma-separated binaries of cmd/")
	fs.StringVar(&o.Source, "src", "", "repository root (default: found above the working directory)")
	fs.StringVar(&push, "push", "", "also push each image as <push>/<binary>:<version>, with the credentials of docker login")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if o.Source == "" {
		var err error
		if o.Source, err = findSource("."); err != nil {
			return err
		}
	}
	if o.Version == "" {
		o.Version = gitVersion(o.Source)
	}
	o.Revision = gitRevision(o.Source)
	for _, p := range strings.Split(platforms, ",") {
		goos, arch, ok := strings.Cut(strings.TrimSpace(p), "/")
		if !ok || goos == "" || arch == "" {
			return fmt.Errorf("-platforms: %q is not os/arch", p)
		}
		o.Platforms = append(o.Platforms, Platform{OS: goos, Arch: arch})
	}
	for _, b := range strings.Split(binaries, ",") {
		o.Binaries = append(o.Binaries, strings.TrimSpace(b))
	}
	out, err := filepath.Abs(o.Out)
	if err != nil {
		return err
	}
	o.Out = out
	built, err := Build(ctx, o)
	if err != nil {
		return err
	}
	for _, b := range built {
		fmt.Printf("%s %s %s\n", b.Binary, b.Digest, b.Layout)
		if push != "" {
			ref := strings.TrimSuffix(push, "/") + "/" + b.Binary + ":" + o.Version
			if err := Push(ctx, b.Layout, ref); err != nil {
				return err
			}
			fmt.Printf("pushed %s\n", ref)
		}
	}
	return nil
}

// findSource returns the first directory at or above dir whose go.mod is Sortie's.
func findSource(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.HasPrefix(string(b), "module github.com/sortie-dev/sortie\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no Sortie repository at or above %s: pass -src", dir)
		}
	}
}

func gitVersion(src string) string {
	out, err := exec.Command("git", "-C", src, "describe", "--tags", "--always", "--dirty").Output()
	if v := strings.TrimSpace(string(out)); err == nil && v != "" {
		return v
	}
	return "dev"
}

func gitRevision(src string) string {
	out, err := exec.Command("git", "-C", src, "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
