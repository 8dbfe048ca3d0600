package main

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/store/redistest"
)

func TestParseRedisURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		raw         string
		want        string
		wantCluster bool
		wantErr     string
	}{
		{name: "one server", raw: "redis://h1:6379/2", want: "redis://h1:6379/2"},
		{name: "one server over TLS", raw: "rediss://u:pw@h1:6380", want: "rediss://u:pw@h1:6380"},
		{name: "unix socket", raw: "unix:///run/redis.sock", want: "unix:///run/redis.sock"},
		{name: "cluster scheme, one seed", raw: "redis+cluster://h1:7000", want: "redis://h1:7000", wantCluster: true},
		{name: "cluster scheme over TLS, more seeds", raw: "rediss+cluster://u:pw@h1:7000?addr=h2:7000", want: "rediss://u:pw@h1:7000?addr=h2:7000", wantCluster: true},
		{name: "several addresses", raw: "redis://h1:7000?addr=h2:7000&addr=h3:7000", want: "redis://h1:7000?addr=h2:7000&addr=h3:7000", wantCluster: true},
		{name: "cluster without a host", raw: "redis+cluster:///?addr=h2:7000", wantErr: "needs at least one host:port"},
		{name: "other scheme", raw: "http://u:hunter2@h1", wantErr: "must start with redis://"},
		{name: "unparsable", raw: "redis://u:hunter2@h1:%zz", wantErr: "not a valid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, cluster, err := parseRedisURL(tt.raw)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseRedisURL(%q) = %v, want an error containing %q", tt.raw, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q reveals the password", err)
				}
				return
			}
			if err != nil || got != tt.want || cluster != tt.wantCluster {
				t.Errorf("parseRedisURL(%q) = %q, %v, %v; want %q, %v", tt.raw, got, cluster, err, tt.want, tt.wantCluster)
			}
		})
	}
}

// TestRedisClusterNodeDownAndBack runs the server on a three-master Redis Cluster named by
// one seed node, kills the master holding the admin's tenant and starts it again: requests
// answer 503 while its slots are down and 200 again once it is back, without a restart.
func TestRedisClusterNodeDownAndBack(t *testing.T) {
	t.Parallel()
	c := redistest.NewCluster(t, 3)
	dataDir := newDataDir(t)
	srv := startServer(t, "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--redis-url", "redis+cluster://"+c.Addrs()[0])
	hc := &http.Client{Timeout: 10 * time.Second}
	admin := readAdmin(t, dataDir)
	tok := issueToken(t, hc, srv.Base, admin.ClientID, admin.ClientSecret)
	call(t, hc, http.MethodGet, srv.Base+"/credentials", tok, nil, http.StatusOK, nil)

	node := c.NodeOf("{t:" + url.PathEscape(admin.OrgID) + "/" + url.PathEscape(admin.EnvID) + "}")
	c.Save(node) // the node comes back with its data, as one with persistence would
	c.Kill(node)
	status, body := waitStatus(t, hc, srv.Base+"/credentials", tok, http.StatusServiceUnavailable)
	if !strings.Contains(body, `"code":"unavailable"`) {
		t.Errorf("GET /credentials while the node is down = %d %s, want the JSON error contract", status, body)
	}
	for _, addr := range c.Addrs() {
		if strings.Contains(body, addr) {
			t.Errorf("the 503 reply %s names the Redis address %s", body, addr)
		}
	}

	waitStatus(t, hc, srv.Base+"/readyz", "", http.StatusServiceUnavailable)

	c.Restart(node)
	waitStatus(t, hc, srv.Base+"/readyz", "", http.StatusOK)
	waitStatus(t, hc, srv.Base+"/credentials", tok, http.StatusOK)
	call(t, hc, http.MethodPost, srv.Base+"/credentials", tok, map[string]any{"name": "after-restart"}, http.StatusCreated, nil)
}

// waitStatus polls GET url until it answers want, failing after 20 seconds.
func waitStatus(t *testing.T, c *http.Client, url, token string, want int) (int, string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		var status int
		var body string
		if resp, err := c.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			status, body = resp.StatusCode, string(b)
			if status == want {
				return status, body
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s never answered %d; last: %d %s", url, want, status, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
