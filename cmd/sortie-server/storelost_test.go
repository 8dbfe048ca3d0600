package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/store/redistest"
)

// TestRedisCameBackEmpty restarts the server's Redis without its data, as a Redis without
// persistence comes back from a crash: /readyz must fail with a reason that says the data is
// gone, and the log must say so, rather than the replica looking healthy.
func TestRedisCameBackEmpty(t *testing.T) {
	t.Parallel()
	rs := redistest.New(t)
	dataDir := newDataDir(t)
	srv := startServer(t, "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--redis-url", rs.URL())
	hc := &http.Client{Timeout: 10 * time.Second}
	waitStatus(t, hc, srv.Base+"/readyz", "", http.StatusOK)

	rs.Stop()
	rs.Start()
	_, body := waitStatus(t, hc, srv.Base+"/readyz", "", http.StatusServiceUnavailable)
	if !strings.Contains(body, `"reason":"store lost its data`) {
		t.Errorf("/readyz after Redis came back empty = %s, want a reason saying the store lost its data", body)
	}
	// The reply stays 503 while Redis answers: it is not an outage that heals by itself.
	if _, body := waitStatus(t, hc, srv.Base+"/readyz", "", http.StatusServiceUnavailable); !strings.Contains(body, "lost its data") {
		t.Errorf("second /readyz = %s, want it still to report the lost data", body)
	}
	if log := grepLines(srv.stderr.String(), "lost its data"); !strings.Contains(log, "restore the store from a backup") {
		t.Errorf("the log does not say the store lost its data and what to do; matching lines:\n%s", log)
	}
}
