package cli_test

import (
	"context"
	"fmt"
	"os"

	"github.com/sortie-dev/sortie/cli"
)

// ExampleRun runs the command line as cmd/sortie does; a wrong command line is exit 2 with
// one message and a pointer to the help.
func ExampleRun() {
	code := cli.Run(context.Background(), []string{"deploy", "start", "--watch"}, cli.Env{
		Stdout: os.Stdout, Stderr: os.Stdout, Getenv: os.Getenv, ConfigDir: os.TempDir(),
	})
	fmt.Println("exit code", code)
	// Output:
	// sortie: -f is required: the deploy.yml to start
	// Run 'sortie deploy start --help' for usage.
	// exit code 2
}
