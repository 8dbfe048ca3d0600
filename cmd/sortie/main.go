// Command sortie is the Sortie command line: log in, start deployments from a deploy.yml and
// follow them live, approve and abort them, list agents and manage machine credentials. Its
// logic lives in package cli; see 'sortie --help'.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sortie-dev/sortie/cli"
	"github.com/sortie-dev/sortie/cmd/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := cli.Run(ctx, os.Args[1:], cli.Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Getenv: os.Getenv, ConfigDir: cli.DefaultConfigDir(), Version: version.String(),
	})
	stop()
	os.Exit(code)
}
