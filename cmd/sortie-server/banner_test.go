package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sortie-dev/sortie/store/redistest"
)

// TestSecondReplicaBanner: a second replica on the same Redis and public URL announces its
// own listener and the admin credential the first one wrote, not a file of its own.
func TestSecondReplicaBanner(t *testing.T) {
	t.Parallel()
	const publicURL = "http://sortie.test:8080"
	redisURL := redistest.New(t).URL()
	dirA, dirB := newDataDir(t), newDataDir(t)
	a := startServer(t, "--addr", "127.0.0.1:0", "--data-dir", dirA, "--public-url", publicURL, "--redis-url", redisURL)
	b := startServer(t, "--addr", "127.0.0.1:0", "--data-dir", dirB, "--public-url", publicURL, "--redis-url", redisURL,
		"--master-key-file", filepath.Join(dirA, "master.key"))
	stdout := b.stdout.String()
	for _, want := range []string{
		"Sortie is listening on " + b.Base + " (public URL " + publicURL,
		"Admin credential: see " + filepath.Join(dirA, "admin-credentials.json") + " (written by the first start).",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("second replica's banner lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, dirB) {
		t.Errorf("second replica points into its own data directory:\n%s", stdout)
	}
	if a.Base == b.Base {
		t.Fatal("both replicas on one listener")
	}
}
