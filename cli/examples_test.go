package cli_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestCanaryExampleWalkthrough is the README's walk-through on examples/canary, as is: the
// first deployment goes straight to SUCCEEDED; a second version pauses at 25%, waits 30
// seconds (the simulated cluster's clock is moved on), goes to 50% and waits for an
// approval given from "a second terminal", then SUCCEEDED.
func TestCanaryExampleWalkthrough(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	u := s.user(t)
	u.login(t)

	first := u.mustRun(t, "deploy", "start", "-f", "../examples/canary/deploy.yml", "--watch", "--poll-interval", "50ms")
	if !strings.Contains(first.stdout, "pipeline "+startedID(t, first.stdout)+" SUCCEEDED") {
		t.Fatalf("first deployment did not print SUCCEEDED:\n%s", first.stdout)
	}

	dir := copyDir(t, "../examples/canary")
	replaceIn(t, filepath.Join(dir, "manifests", "20-deployment.yaml"), "nginx:1.27-alpine", "nginx:1.28-alpine")
	out, wait := u.start(t, "deploy", "start", "-f", filepath.Join(dir, "deploy.yml"), "--watch", "--poll-interval", "50ms")

	waitUntil(t, 10*time.Second, "the timed pause at 25%", func() bool {
		return strings.Contains(out.String(), "PAUSED, step 1/4, weight 25%, timed pause until")
	})
	s.simClock.Advance(31 * time.Second)
	waitUntil(t, 10*time.Second, "the approval at 50%", func() bool {
		return strings.Contains(out.String(), "AWAITING_APPROVAL, step 3/4, weight 50%, awaiting approval of step")
	})
	id := startedID(t, out.String())
	other := s.user(t) // the second terminal: its own login
	other.login(t)
	ap := other.mustRun(t, "deploy", "approve", id)
	if !strings.Contains(ap.stdout, "Approved 1 step of pipeline "+id) {
		t.Errorf("approve printed %q", ap.stdout)
	}
	res := wait()
	if res.code != 0 {
		t.Fatalf("watch: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`approved \S+ by admin \(machine ` + s.ClientID + `\) at \d\d:\d\d:\d\dZ`),
		regexp.MustCompile(`target dev: SUCCEEDED, step 4/4, weight 100%`),
		regexp.MustCompile(`pipeline ` + id + ` SUCCEEDED`),
	} {
		if !want.MatchString(res.stdout) {
			t.Errorf("watch output lacks %s:\n%s", want, res.stdout)
		}
	}
}

// TestBlueGreenExample deploys examples/blue-green twice: the second version waits for the
// approval of its traffic switch, then SUCCEEDED (the old version's 30 seconds are a
// scale-down delay of the Rollout, not a step of the pipeline).
func TestBlueGreenExample(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	u := s.user(t)
	u.login(t)
	u.mustRun(t, "deploy", "start", "-f", "../examples/blue-green/deploy.yml", "--watch", "--poll-interval", "50ms")

	dir := copyDir(t, "../examples/blue-green")
	replaceIn(t, filepath.Join(dir, "manifests", "deployment.yaml"), "nginx:1.27-alpine", "nginx:1.28-alpine")
	out, wait := u.start(t, "deploy", "start", "-f", filepath.Join(dir, "deploy.yml"), "--watch", "--poll-interval", "50ms")
	waitUntil(t, 10*time.Second, "the approval of the traffic switch", func() bool {
		return strings.Contains(out.String(), "AWAITING_APPROVAL") && strings.Contains(out.String(), "awaiting approval of step dev/redirect/0")
	})
	id := startedID(t, out.String())
	u.mustRun(t, "deploy", "approve", id, "--step", "dev/redirect/0")
	res := wait()
	if res.code != 0 || !strings.Contains(res.stdout, "pipeline "+id+" SUCCEEDED") ||
		!strings.Contains(res.stdout, "approved dev/redirect/0 by admin") {
		t.Fatalf("watch: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
}
