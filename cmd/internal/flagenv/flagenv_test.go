package flagenv_test

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sortie-dev/sortie/cmd/internal/flagenv"
)

// prefix is unusual enough that no real environment variable collides with the tests.
const prefix = "FLAGENVTEST_"

// values is what the test flag set parses into.
type values struct {
	Addr     string
	RedisURL string
	TTL      time.Duration
	Verbose  bool
	Args     []string
}

// newFlagSet returns a flag set shaped like sortie-server's, writing usage to out.
func newFlagSet(t *testing.T, out *bytes.Buffer) (*flag.FlagSet, *values) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(out)
	v := &values{}
	fs.StringVar(&v.Addr, "addr", "127.0.0.1:8080", "listen address")
	fs.StringVar(&v.RedisURL, "redis-url", "", "Redis URL")
	fs.DurationVar(&v.TTL, "token-ttl", time.Hour, "token lifetime")
	fs.BoolVar(&v.Verbose, "verbose", false, "log more")
	return fs, v
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix, flag, want string
	}{
		{"SORTIE_", "addr", "SORTIE_ADDR"},
		{"SORTIE_", "redis-url", "SORTIE_REDIS_URL"},
		{"SORTIE_", "master-key-file", "SORTIE_MASTER_KEY_FILE"},
		{"SORTIE_AGENT_", "hub-url", "SORTIE_AGENT_HUB_URL"},
		{"SORTIE_AGENT_", "client-secret-file", "SORTIE_AGENT_CLIENT_SECRET_FILE"},
	}
	for _, tt := range tests {
		if got := flagenv.EnvName(tt.prefix, tt.flag); got != tt.want {
			t.Errorf("EnvName(%q, %q) = %q, want %q", tt.prefix, tt.flag, got, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	defaults := values{Addr: "127.0.0.1:8080", TTL: time.Hour}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    values
		wantErr string // substring of the error; empty means no error
	}{
		{
			name: "defaults without env or flags",
			want: defaults,
		},
		{
			name: "env fills unset flags",
			env: map[string]string{
				prefix + "ADDR":      "0.0.0.0:9000",
				prefix + "REDIS_URL": "redis://cache:6379/0",
				prefix + "TOKEN_TTL": "15m",
				prefix + "VERBOSE":   "true",
			},
			want: values{Addr: "0.0.0.0:9000", RedisURL: "redis://cache:6379/0", TTL: 15 * time.Minute, Verbose: true},
		},
		{
			name: "command line wins over env",
			env: map[string]string{
				prefix + "ADDR":      "0.0.0.0:9000",
				prefix + "TOKEN_TTL": "15m",
			},
			args: []string{"--addr", "127.0.0.1:7000"},
			want: values{Addr: "127.0.0.1:7000", TTL: 15 * time.Minute},
		},
		{
			name: "command line wins even when set to the default",
			env:  map[string]string{prefix + "ADDR": "0.0.0.0:9000"},
			args: []string{"--addr=127.0.0.1:8080"},
			want: defaults,
		},
		{
			name: "bad env value is ignored when the flag is on the command line",
			env:  map[string]string{prefix + "TOKEN_TTL": "soon"},
			args: []string{"--token-ttl", "2h"},
			want: values{Addr: "127.0.0.1:8080", TTL: 2 * time.Hour},
		},
		{
			name: "empty env value sets a string flag to empty",
			env:  map[string]string{prefix + "ADDR": ""},
			want: values{TTL: time.Hour},
		},
		{
			name: "variables of other prefixes are ignored",
			env:  map[string]string{"OTHER_ADDR": "0.0.0.0:1"},
			want: defaults,
		},
		{
			name: "positional arguments are kept",
			args: []string{"--verbose", "extra"},
			want: values{Addr: "127.0.0.1:8080", TTL: time.Hour, Verbose: true, Args: []string{"extra"}},
		},
		{
			name:    "bad duration in env names the variable",
			env:     map[string]string{prefix + "TOKEN_TTL": "soon"},
			wantErr: "environment variable " + prefix + "TOKEN_TTL",
		},
		{
			name:    "bad bool in env names the variable",
			env:     map[string]string{prefix + "VERBOSE": "maybe"},
			wantErr: "environment variable " + prefix + "VERBOSE",
		},
		{
			name:    "unknown flag",
			args:    []string{"--nope"},
			wantErr: "flag provided but not defined: -nope",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			fs, got := newFlagSet(t, &out)
			err := flagenv.Parse(fs, prefix, tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			got.Args = fs.Args()
			if diff := cmp.Diff(tt.want, *got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("parsed values mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseBadEnvWrapsSetError(t *testing.T) {
	t.Setenv(prefix+"TOKEN_TTL", "soon")
	var out bytes.Buffer
	fs, _ := newFlagSet(t, &out)
	err := flagenv.Parse(fs, prefix, nil)
	if err == nil {
		t.Fatal("Parse() succeeded with an invalid duration in the environment")
	}
	// The message must tell the user both which variable and what is wrong with its value.
	for _, want := range []string{prefix + "TOKEN_TTL", `"soon"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Parse() error = %q, want it to mention %s", err, want)
		}
	}
}

func TestUsageMentionsVariables(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		show func(fs *flag.FlagSet) error
	}{
		{"PrintDefaults after Parse", func(fs *flag.FlagSet) error {
			if err := flagenv.Parse(fs, prefix, nil); err != nil {
				return err
			}
			fs.PrintDefaults()
			return nil
		}},
		{"--help", func(fs *flag.FlagSet) error {
			err := flagenv.Parse(fs, prefix, []string{"--help"})
			if !errors.Is(err, flag.ErrHelp) {
				return err
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			fs, _ := newFlagSet(t, &out)
			if err := tt.show(fs); err != nil {
				t.Fatal(err)
			}
			usage := out.String()
			for _, want := range []string{
				"listen address (env " + prefix + "ADDR)",
				"Redis URL (env " + prefix + "REDIS_URL)",
				"token lifetime (env " + prefix + "TOKEN_TTL)",
				"log more (env " + prefix + "VERBOSE)",
			} {
				if !strings.Contains(usage, want) {
					t.Errorf("usage lacks %q:\n%s", want, usage)
				}
			}
		})
	}
}

func TestParseCommandLineOnly(t *testing.T) {
	// A variable that happens to share a command-line-only flag's name changes nothing and
	// is not validated; the same flag on the command line still works.
	t.Setenv(prefix+"VERBOSE", "v1.2.3")
	var out bytes.Buffer
	fs, got := newFlagSet(t, &out)
	if err := flagenv.Parse(fs, prefix, nil, "verbose"); err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	if got.Verbose {
		t.Error("verbose was set from the environment, want command line only")
	}
	fs.PrintDefaults()
	if strings.Contains(out.String(), prefix+"VERBOSE") {
		t.Errorf("usage names %sVERBOSE for a command-line-only flag:\n%s", prefix, out.String())
	}
	fs, got = newFlagSet(t, &out)
	if err := flagenv.Parse(fs, prefix, []string{"--verbose"}, "verbose"); err != nil || !got.Verbose {
		t.Errorf("Parse(--verbose) = %v, verbose %v; want no error and verbose set", err, got.Verbose)
	}
}
