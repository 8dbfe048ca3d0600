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

func TestCluster(t *testing.T) {
	t.Parallel()
	c := NewCluster(t, 3)
	for _, addr := range c.Addrs() {
		info, err := command(addr, "CLUSTER", "INFO")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_size:3") {
			t.Errorf("%s: CLUSTER INFO = %q, want a healthy cluster of 3 masters", addr, info)
		}
	}
	if got := c.URL(); !strings.HasPrefix(got, "redis://"+c.Addrs()[0]+"?addr="+c.Addrs()[1]+"&addr="+c.Addrs()[2]) {
		t.Errorf("URL = %q", got)
	}
}

func TestClusterKillRestart(t *testing.T) {
	t.Parallel()
	c := NewCluster(t, 3)
	i := c.NodeOf("{t:acme/prod}")
	if _, err := command(c.Addrs()[i], "SET", "{t:acme/prod}:k", "v"); err != nil {
		t.Fatalf("SET on the slot's own master: %v", err)
	}
	c.Kill(i)
	if _, err := command(c.Addrs()[i], "PING"); err == nil {
		t.Fatal("PING of a killed node succeeded")
	}
	c.Restart(i)
	if _, err := command(c.Addrs()[i], "SET", "{t:acme/prod}:k", "v"); err != nil {
		t.Fatalf("SET after Restart: %v", err)
	}
	other := (i + 1) % 3
	if _, err := command(c.Addrs()[other], "SET", "{t:acme/prod}:k", "v"); err == nil || !strings.Contains(err.Error(), "MOVED") {
		t.Errorf("SET on another master = %v, want a MOVED redirection", err)
	}
}
