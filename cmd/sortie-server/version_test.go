package main

import (
	"context"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/sortie-dev/sortie/cmd/internal/version"
)

func TestVersionFlag(t *testing.T) {
	// SORTIE_VERSION is no request for the version: the server would otherwise stop at once
	// wherever a deployment tool exports a variable of that name.
	t.Setenv("SORTIE_VERSION", "v9.9.9")
	var stdout, stderr syncBuffer
	err := run(context.Background(), []string{"--version"}, &stdout, &stderr, nil)
	if !errors.Is(err, version.ErrShown) || !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run(--version) = %v, want version.ErrShown (a flag.ErrHelp: exit 0)", err)
	}
	if got, want := strings.TrimSpace(stdout.String()), "sortie-server "+version.String(); got != want {
		t.Errorf("--version printed %q, want %q", got, want)
	}
	if _, err := parseConfig(nil, &stdout, &stderr); err != nil {
		t.Errorf("parseConfig with SORTIE_VERSION set = %v, want the variable ignored", err)
	}
}
