// Command sortie-bench runs Sortie's process-level benchmarks (quality.md, Benchmarks):
//
//	sortie-bench agents [flags]
//	sortie-bench pipelines [flags]
//	sortie-bench commands [flags]
//
// agents starts a real sortie-server and holds simulated agents against it, each on its own
// HTTP/2 connection, split over child processes: it measures the server's memory per idle
// agent against bare connect-go streams held by a trivial server in the same run, then
// restarts the server and measures the reconnect storm. Results are printed as a table and,
// with -json, written as JSON.
//
// pipelines runs many concurrent canary pipelines through real sortie-server processes (one,
// and two replicas on a private Redis) against simulated agents, and reports reconcile
// latency, wall time and memory per active pipeline at a few sizes.
//
// commands measures a command's round trip in tenants of a few sizes, sent to the replica
// holding the agent and to another replica that forwards it through Redis.
//
// Everything stays on loopback, and every child process and temporary file is gone when it
// ends.
//
// The subcommands simulate and bare-server are the child processes it starts.
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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "sortie-bench:", err)
		os.Exit(1)
	}
}

const usage = `Usage: sortie-bench agents|pipelines [flags]

agents     the idle-agents memory benchmark and the reconnect storm against a real sortie-server
pipelines  many concurrent pipelines on simulated agents, one server and two replicas on Redis
commands   command round trip by tenant size, on the agent's replica and across two on Redis
'sortie-bench <command> -h' lists the flags.`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "agents":
		return runAgents(ctx, args[1:], stdout, stderr)
	case "pipelines":
		return runPipelines(ctx, args[1:], stdout, stderr)
	case "commands":
		return runCommands(ctx, args[1:], stdout, stderr)
	case "simulate": // a child of agents
		return runSimulate(ctx, args[1:], stdin, stdout, stderr)
	case "bare-server": // a child of agents
		return runBareServer(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}
