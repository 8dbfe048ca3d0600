// Package version tells which version a Sortie binary is. Release and image builds stamp it
// at link time:
//
//	go build -ldflags "-X github.com/sortie-dev/sortie/cmd/internal/version.stamped=v1.2.3" ./cmd/sortie-server
//
// (the Dockerfiles, the daemonless image build in deploy/image and .goreleaser.yaml all do).
// Unstamped, a binary installed with `go install ...@v1.2.3` reports its module version and
// anything else reports "dev".
package version

import (
	"flag"
	"fmt"
	"runtime/debug"
)

// stamped is set with -ldflags -X; empty in a plain go build.
var stamped string

// String returns the binary's version: the stamped one, else the module version, else "dev".
func String() string {
	if stamped != "" {
		return stamped
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// ErrShown ends a command once its --version flag printed the version. It wraps
// flag.ErrHelp, so a main that exits 0 after --help does the same after --version.
var ErrShown = fmt.Errorf("version shown: %w", flag.ErrHelp)
