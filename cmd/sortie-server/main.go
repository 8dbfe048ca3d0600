// Command sortie-server runs the Sortie control plane: REST, Connect, OIDC, health and
// metrics on one port, on the embedded store or on Redis. It parses its flags and hands
// them to package controlplane, which wires the components.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sortie-dev/sortie/cmd/internal/controlplane"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "sortie-server:", err)
		os.Exit(1)
	}
}

// run parses args and serves until ctx ends (controlplane.Run). listening, if not nil, receives the
// base URL once serving.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, listening chan<- string) error {
	cfg, err := parseConfig(args, stdout, stderr)
	if err != nil {
		return err
	}
	return controlplane.Run(ctx, cfg, stdout, stderr, listening)
}
