package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestBinary builds sortie and runs it as a user would: the arguments, the environment and
// the exit code go through main unchanged.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sortie")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin,
		"-ldflags", "-X github.com/sortie-dev/sortie/cmd/internal/version.stamped=v9.8.7-test", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	home := t.TempDir()
	for _, tc := range []struct {
		name   string
		args   []string
		env    []string
		code   int
		stdout string
		stderr string
	}{
		{"help", []string{"--help"}, nil, 0, "Usage:\n  sortie [flags]", ""},
		{"version", []string{"--version"}, []string{"SORTIE_VERSION=x"}, 0, "sortie version v9.8.7-test\n", ""},
		{"usage error", []string{"deploy", "start"}, nil, 2, "", "sortie: -f is required"},
		{"environment", []string{"agents", "list"}, []string{"SORTIE_ADDR=127.0.0.1:1", "SORTIE_CLIENT_ID=x", "SORTIE_CLIENT_SECRET=y"}, 1, "",
			"sortie: cannot reach the Sortie server at http://127.0.0.1:1 (connection refused)"},
		{"default config directory", []string{"deploy", "list"}, nil, 1, "", "sortie: not logged in to http://127.0.0.1:8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append([]string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"), "PATH=" + os.Getenv("PATH")}, tc.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout.String(), stderr.String())
			}
		})
	}
}
