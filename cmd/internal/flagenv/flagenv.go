// Package flagenv gives every flag of a FlagSet an environment-variable fallback: the prefix
// followed by the flag name upper-cased with '-' as '_' (--redis-url -> SORTIE_REDIS_URL). A
// flag given on the command line wins over the environment.
package flagenv

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// EnvName returns the environment variable that backs flag name.
func EnvName(prefix, name string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse parses args, then fills each flag not set on the command line from its environment
// variable. It also appends the variable's name to each flag's usage text. The flags named
// in commandLineOnly (such as --version, which a stray SORTIE_VERSION must not turn on) have
// no environment variable.
func Parse(fs *flag.FlagSet, prefix string, args []string, commandLineOnly ...string) error {
	set := map[string]bool{}
	for _, name := range commandLineOnly {
		set[name] = true // skipped below as if given on the command line
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !set[f.Name] {
			f.Usage = fmt.Sprintf("%s (env %s)", f.Usage, EnvName(prefix, f.Name))
		}
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(EnvName(prefix, f.Name)); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("environment variable %s: invalid value %q: %w", EnvName(prefix, f.Name), v, serr)
			}
		}
	})
	return err
}
