// Package cli is the sortie command line: it logs in with a machine credential, starts
// pipelines from a deploy.yml the way the Armory CLI sends them, follows them live, approves
// and aborts them, and manages agents' and machines' credentials, all over Sortie's REST API.
// cmd/sortie only hands it the process's arguments, streams and environment.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes, as commands.md fixes them.
const (
	ExitOK       = 0 // success; for --watch, the pipeline SUCCEEDED
	ExitFailure  = 1 // the command or the pipeline failed
	ExitUsage    = 2 // the command line is wrong
	ExitConflict = 3 // the server answered 409: another pipeline in progress, nothing to approve
)

// EnvPrefix prefixes the environment variable of every flag: --client-id is SORTIE_CLIENT_ID.
const EnvPrefix = "SORTIE_"

// Env is what the CLI takes from its process. Tests give it pipes, a pseudo-terminal, a
// temporary config directory and a clock.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads the environment (os.Getenv); nil reads nothing.
	Getenv func(string) string
	// ConfigDir is the default of --config-dir, where the login is kept (mode 0600).
	ConfigDir string
	// Now is the clock for token expiry and pause countdowns; nil is time.Now.
	Now func() time.Time
	// Sleep waits between the polls of a device login; nil waits on the real clock.
	Sleep func(ctx context.Context, d time.Duration) error
	// HTTPClient sends every request; nil is a client with a 30 s timeout.
	HTTPClient *http.Client
	// Version is what --version prints; empty is "dev".
	Version string
}

// DefaultConfigDir is <the user's config directory>/sortie, or .sortie when the system has
// none.
func DefaultConfigDir() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "sortie")
	}
	return ".sortie"
}

// globals are the flags every command has.
type globals struct {
	addr         string
	clientID     string
	clientSecret string
	output       string
	configDir    string
}

// app is one invocation: the environment and the parsed global flags.
type app struct {
	env Env
	g   globals
}

// usageError is a wrong command line: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError ends the command with a code and an optional message (empty when everything
// the user needs was printed already).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// Run runs the sortie command line with args (without the program name) and returns the
// process's exit code. Errors are printed to env.Stderr as one "sortie: ..." message, never
// as a stack trace.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	if env.HTTPClient == nil {
		env.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if env.Version == "" {
		env.Version = "dev"
	}
	a := &app{env: env}
	root := a.rootCommand()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(env.Stderr, "sortie:", ee.msg)
		}
		return ee.code
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(env.Stderr, "sortie: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
		return ExitUsage
	}
	fmt.Fprintln(env.Stderr, "sortie:", err)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return ExitConflict
	}
	return ExitFailure
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:     "sortie",
		Version: a.env.Version,
		Short:   "Drive Sortie progressive deployments from a terminal or a CI job",
		Long: `sortie starts deployments from a deploy.yml (the Armory CD-as-a-Service format),
follows them live, approves and aborts them, and manages machine credentials, against a
Sortie server (--addr, SORTIE_ADDR).

Every flag can also be set with an environment variable: SORTIE_ plus the flag name
upper-cased with - as _ (--client-id is SORTIE_CLIENT_ID). A flag on the command line wins.

Exit codes: 0 success (with --watch: the pipeline SUCCEEDED), 1 failure, 2 usage error,
3 conflict (the server answered 409, for example another pipeline of the application is
in progress).`,
		Example: `  sortie login --client-id "$CLIENT_ID" --client-secret "$CLIENT_SECRET"
  sortie deploy start -f examples/canary/deploy.yml --watch
  sortie deploy approve 5f0c... --step prod/canary/3
  sortie deploy list --status RUNNING,AWAITING_APPROVAL -o json`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		Args:              usageArgs(cobra.NoArgs),
		RunE:              needSubcommand,
		PersistentPreRunE: a.preRun,
	}
	f := root.PersistentFlags()
	f.StringVar(&a.g.addr, "addr", "http://127.0.0.1:8080", "URL of the Sortie server (a bare host:port means http://)")
	f.StringVar(&a.g.clientID, "client-id", "", "client id of a machine credential; with --client-secret, used instead of the saved login")
	f.StringVar(&a.g.clientSecret, "client-secret", "", "secret of that credential (prefer the environment variable SORTIE_CLIENT_SECRET)")
	f.StringVarP(&a.g.output, "output", "o", "text", "output format: text, json or yaml")
	f.StringVar(&a.g.configDir, "config-dir", a.env.ConfigDir, "directory of the saved login (login.json, mode 0600)")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{plainFlagError(err)} })

	root.AddCommand(a.loginCommand(), a.logoutCommand(), a.deployCommand(), a.agentsCommand(), a.credentialsCommand())
	// The streams are set before the completion command is made: it keeps the output stream
	// it finds then.
	root.SetIn(a.env.Stdin)
	root.SetOut(a.env.Stdout)
	root.SetErr(a.env.Stderr)
	// cobra's completion command only groups the shells: without this, a missing or unknown
	// shell prints the help and exits 0, which a script takes for success.
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		c.Args, c.RunE = usageArgs(cobra.NoArgs), needSubcommand
		c.Example = "  sortie completion bash > /etc/bash_completion.d/sortie\n  source <(sortie completion zsh)"
		for _, sh := range c.Commands() {
			sh.Example = map[string]string{
				"bash":       "  source <(sortie completion bash)",
				"zsh":        "  source <(sortie completion zsh)",
				"fish":       "  sortie completion fish > ~/.config/fish/completions/sortie.fish",
				"powershell": "  sortie completion powershell | Out-String | Invoke-Expression",
			}[sh.Name()]
		}
	}
	return root
}

// preRun fills flags left unset from the environment and checks the global ones.
func (a *app) preRun(cmd *cobra.Command, _ []string) error {
	var errs []error
	apply := func(fl *pflag.Flag) {
		if fl.Changed || fl.Name == "help" || fl.Name == "version" {
			return
		}
		name := EnvPrefix + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		v := a.env.Getenv(name)
		if v == "" {
			return
		}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			if err := sv.Replace(strings.Split(v, ",")); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, plainFlagError(err)))
			}
			return
		}
		if err := fl.Value.Set(v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, plainFlagError(err)))
		}
	}
	cmd.Flags().VisitAll(apply)
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	switch a.g.output {
	case "text", "json", "yaml":
	default:
		return usagef("-o %q: use text, json or yaml", a.g.output)
	}
	if (a.g.clientID == "") != (a.g.clientSecret == "") && cmd.Name() != "login" {
		return usagef("--client-id and --client-secret go together (or set SORTIE_CLIENT_ID and SORTIE_CLIENT_SECRET)")
	}
	if a.g.configDir == "" {
		a.g.configDir = DefaultConfigDir()
	}
	addr, err := normalizeAddr(a.g.addr)
	if err != nil {
		return usageError{err}
	}
	a.g.addr = addr
	return nil
}

// normalizeAddr turns --addr into a base URL without a trailing slash.
func normalizeAddr(addr string) (string, error) {
	addr = strings.TrimRight(strings.TrimSpace(addr), "/")
	if addr == "" {
		return "", errors.New("--addr is empty: give the server's URL, for example http://127.0.0.1:8080")
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	if !strings.HasPrefix(addr, "http://") && !strings.HasPrefix(addr, "https://") {
		return "", fmt.Errorf("--addr %q: use an http:// or https:// URL", addr)
	}
	return addr, nil
}

// goParseError is the wording of strconv and time in pflag's messages
// (invalid argument "x" for "--limit" flag: strconv.ParseInt: parsing "x": invalid syntax).
var goParseError = regexp.MustCompile(`(strconv\.Parse(Int|Uint|Float|Bool): parsing "[^"]*": (invalid syntax|value out of range))|(time: (invalid|unknown unit [^ ]+ in|missing unit in) duration "[^"]*")`)

// plainFlagError says what a flag's value must be instead of how Go failed to parse it.
func plainFlagError(err error) error {
	msg := goParseError.ReplaceAllStringFunc(err.Error(), func(m string) string {
		switch {
		case strings.HasPrefix(m, "time:"):
			return "not a duration (for example 500ms, 5s or 1m)"
		case strings.HasSuffix(m, "value out of range"):
			return "out of range"
		case strings.HasPrefix(m, "strconv.ParseBool"):
			return "use true or false"
		}
		return "not a whole number"
	})
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

// usageArgs makes cobra's positional-argument checks usage errors (exit 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// needSubcommand runs for a command that only groups others.
func needSubcommand(cmd *cobra.Command, _ []string) error {
	names := make([]string, 0, len(cmd.Commands()))
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return usagef("%s needs a command: %s", cmd.CommandPath(), strings.Join(names, ", "))
}
