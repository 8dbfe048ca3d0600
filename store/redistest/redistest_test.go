package redistest

import (
	"strings"
	"testing"
)

func TestLongTestName(t *testing.T) {
	t.Parallel()
	t.Run(strings.Repeat("a_long_subtest_name_", 8), func(t *testing.T) {
		srv := New(t)
		if len(srv.socket) > maxSocketPath {
			t.Errorf("socket path %q is %d bytes, want at most %d", srv.socket, len(srv.socket), maxSocketPath)
		}
		if err := ping(srv.socket); err != nil {
			t.Errorf("PING = %v", err)
		}
	})
}

func TestStopStart(t *testing.T) {
	t.Parallel()
	srv := New(t)
	srv.Stop()
	if err := ping(srv.socket); err == nil {
		t.Fatal("PING after Stop succeeded")
	}
	srv.Stop() // stopping twice is harmless
	srv.Start()
	if err := ping(srv.socket); err != nil {
		t.Fatalf("PING after Start = %v", err)
	}
	if got, want := srv.URL(), "unix://"+srv.socket; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
}
