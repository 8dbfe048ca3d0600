package cli_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/sortie-dev/sortie/cli"
)

// shortCanary pauses 3 seconds at 25%, then waits for an approval at 50%.
const shortCanary = `application: live
targets:
  prod:
    account: dev-cluster
    namespace: live
    strategy: c
    constraints: {}
manifests:
  - path: app.yaml
strategies:
  c:
    canary:
      steps:
        - setWeight: {weight: 25}
        - pause: {duration: 3, unit: seconds}
        - setWeight: {weight: 50}
        - pause:
            untilApproved: true
            requiresRoles: [Organization Admin]
`

// TestWatchLiveView runs deploy start --watch on a pseudo-terminal: the view is redrawn in
// place (cursor movements, not a scrolling log), counts the timed pause down, shows the
// approval it waits for with the roles that may give it, then who approved, and exits 0.
func TestWatchLiveView(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	u := s.user(t)
	u.login(t)
	dir := t.TempDir()
	file := writeFile(t, dir, "deploy.yml", shortCanary)
	writeFile(t, dir, "app.yaml", strings.ReplaceAll(appYAML, "gated", "live"))
	u.mustRun(t, "deploy", "start", "-f", file, "--watch", "--poll-interval", "50ms") // the first version: no steps
	replaceIn(t, filepath.Join(dir, "app.yaml"), "example.com/live:1", "example.com/live:2")

	_, tty, screen, readDone := openTerminal(t)
	var stderr syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exit := make(chan int, 1)
	go func() {
		exit <- cli.Run(ctx, []string{"deploy", "start", "-f", file, "--watch", "--poll-interval", "100ms"}, cli.Env{
			Stdin: tty, Stdout: tty, Stderr: &stderr, ConfigDir: u.configDir,
			Getenv: func(k string) string {
				return map[string]string{"SORTIE_ADDR": s.URL, "TERM": "xterm-256color"}[k]
			},
		})
	}()

	countdown := regexp.MustCompile(`timed pause, (\d+)s left \(until \d\d:\d\d:\d\dZ, step prod/canary/1\)`)
	seen := map[int]bool{}
	waitUntil(t, 10*time.Second, "the countdown of the timed pause to tick", func() bool {
		for _, m := range countdown.FindAllStringSubmatch(screen.String(), -1) {
			n, _ := strconv.Atoi(m[1])
			seen[n] = true
		}
		return len(seen) >= 2
	})
	for n := range seen {
		if n < 1 || n > 3 {
			t.Errorf("the 3-second pause showed %ds left", n)
		}
	}
	waitUntil(t, 10*time.Second, "the approval at 50%", func() bool {
		return strings.Contains(screen.String(), "awaiting approval of step prod/canary/3; may approve: Organization Admin")
	})
	id := startedID(t, screen.String())
	if !regexp.MustCompile(`AWAITING_APPROVAL\S*\s+step 3/4\s+█{10}░{10}\s+50%`).MatchString(stripANSI(screen.String())) {
		t.Errorf("the view does not show step 3/4 at 50%%:\n%s", stripANSI(screen.String()))
	}
	u.mustRun(t, "deploy", "approve", id, "--step", "prod/canary/3")

	var code int
	select {
	case code = <-exit:
	case <-time.After(15 * time.Second):
		t.Fatal("the live view did not end after the approval")
	}
	tty.Close()
	<-readDone
	out := screen.String()
	if code != 0 {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	plain := stripANSI(out)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`Pipeline ` + id + `\s+application live\s+SUCCEEDED`),
		regexp.MustCompile(`✓ approved prod/canary/3 by admin \(machine ` + s.ClientID + `\) at \d\d:\d\d:\d\dZ`),
		regexp.MustCompile(`prod\s+SUCCEEDED\s+step 4/4\s+█{20}\s+100%`),
	} {
		if !want.MatchString(plain) {
			t.Errorf("the final view lacks %s:\n%s", want, plain)
		}
	}
	// Redrawn in place: the renderer moves the cursor up over the previous frame instead of
	// printing a new one below it.
	if n := len(regexp.MustCompile(`\x1b\[\d*A`).FindAllString(out, -1)); n < 3 {
		t.Errorf("%d cursor-up sequences: the view was not redrawn in place", n)
	}
	if n := strings.Count(plain, "step 1/4"); n == 0 {
		t.Error("the view never showed step 1/4")
	}
}

// openTerminal opens a 200x40 pseudo-terminal: tty is the program's side, ptmx the user's;
// screen collects what the program draws until readDone is closed (after tty is closed).
func openTerminal(t *testing.T) (ptmx, tty *os.File, screen *syncBuffer, readDone <-chan struct{}) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		tty.Close()
		ptmx.Close()
		select { // the reader ends on the close; don't let it outlive the test
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 200}); err != nil {
		t.Fatal(err)
	}
	screen = &syncBuffer{}
	go func() {
		defer close(done)
		_, err := io.Copy(screen, ptmx)
		if err != nil && !errors.Is(err, os.ErrClosed) && !strings.Contains(err.Error(), "input/output error") {
			t.Errorf("read the terminal: %v", err)
		}
	}()
	return ptmx, tty, screen, done
}

var ansiSeq = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r`)

func stripANSI(s string) string { return ansiSeq.ReplaceAllString(s, "") }

// TestWatchWithoutTerminalPrintsOneLinePerChange: piped, --watch prints each change once,
// in order, with no terminal control sequences.
func TestWatchWithoutTerminalPrintsOneLinePerChange(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	u := s.user(t)
	u.login(t)
	dir := t.TempDir()
	file := writeFile(t, dir, "deploy.yml", strings.Replace(shortCanary, "requiresRoles: [Organization Admin]", "requiresRoles: [Deployments Full Access, Organization Admin]", 1))
	writeFile(t, dir, "app.yaml", strings.ReplaceAll(appYAML, "gated", "live"))
	u.mustRun(t, "deploy", "start", "-f", file, "--watch", "--poll-interval", "50ms")
	replaceIn(t, filepath.Join(dir, "app.yaml"), "example.com/live:1", "example.com/live:2")

	out, wait := u.start(t, "deploy", "start", "-f", file, "--watch", "--poll-interval", "20ms")
	waitUntil(t, 10*time.Second, "the approval", func() bool { return strings.Contains(out.String(), "awaiting approval") })
	id := startedID(t, out.String())
	u.mustRun(t, "deploy", "approve", id)
	res := wait()
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if strings.Contains(res.stdout, "\x1b") {
		t.Error("terminal control sequences in piped output")
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	var order []string
	for _, l := range lines[1:] {
		if !regexp.MustCompile(`^\d\d:\d\d:\d\dZ (pipeline|target|approved) `).MatchString(l) {
			t.Errorf("unexpected line %q", l)
		}
		if strings.Count(res.stdout, l[10:]) != 1 {
			t.Errorf("line printed more than once: %q", l)
		}
		switch {
		case strings.Contains(l, "timed pause until"):
			order = append(order, "pause")
		case strings.Contains(l, "may approve: Deployments Full Access, Organization Admin"):
			order = append(order, "approval")
		case strings.HasPrefix(l[10:], "approved prod/canary/3 by admin"):
			order = append(order, "approved")
		case strings.Contains(l, "pipeline "+id+" SUCCEEDED"):
			order = append(order, "succeeded")
		}
	}
	if got := strings.Join(order, ","); got != "pause,approval,approved,succeeded" {
		t.Errorf("changes in order %s, want pause,approval,approved,succeeded:\n%s", got, res.stdout)
	}
}

// TestWatchLiveViewQuit: q on the terminal stops watching with exit 1 and a message saying
// the pipeline keeps running, which it does.
func TestWatchLiveViewQuit(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	u := s.user(t)
	u.login(t)
	id := startedID(t, u.mustRun(t, "deploy", "start", "-f", gatedDir(t), "-t", "prod").stdout)

	ptmx, tty, screen, _ := openTerminal(t)
	var stderr syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exit := make(chan int, 1)
	go func() {
		exit <- cli.Run(ctx, []string{"deploy", "status", id, "--watch", "--poll-interval", "50ms"}, cli.Env{
			Stdin: tty, Stdout: tty, Stderr: &stderr, ConfigDir: u.configDir,
			Getenv: func(k string) string { return map[string]string{"SORTIE_ADDR": s.URL}[k] },
		})
	}()
	waitUntil(t, 10*time.Second, "the view of the awaiting approval", func() bool {
		return strings.Contains(stripANSI(screen.String()), "q or Ctrl+C stops watching") &&
			strings.Contains(screen.String(), "awaiting approval of step prod/before/0")
	})
	if _, err := ptmx.Write([]byte("q")); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		if code != 1 || !strings.Contains(stderr.String(), "stopped watching pipeline "+id+"; it keeps running") {
			t.Errorf("exit %d, stderr %q", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("q did not stop the live view")
	}
	tty.Close()
	if st := u.mustRun(t, "deploy", "status", id, "-o", "json").stdout; !strings.Contains(st, `"status": "AWAITING_APPROVAL"`) {
		t.Errorf("the pipeline did not keep running:\n%s", st)
	}
}

// TestWatchLiveViewShowsAbort: an abort from another terminal shows in the live view as who
// aborted, and the watch exits 1 naming the CANCELLED end.
func TestWatchLiveViewShowsAbort(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	u := s.user(t)
	u.login(t)
	id := startedID(t, u.mustRun(t, "deploy", "start", "-f", gatedDir(t), "-t", "prod").stdout)

	_, tty, screen, readDone := openTerminal(t)
	var stderr syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exit := make(chan int, 1)
	go func() {
		exit <- cli.Run(ctx, []string{"deploy", "status", id, "--watch", "--poll-interval", "50ms"}, cli.Env{
			Stdin: tty, Stdout: tty, Stderr: &stderr, ConfigDir: u.configDir,
			Getenv: func(k string) string { return map[string]string{"SORTIE_ADDR": s.URL}[k] },
		})
	}()
	waitUntil(t, 10*time.Second, "the view of the awaiting approval", func() bool {
		return strings.Contains(screen.String(), "awaiting approval of step prod/before/0")
	})
	other := s.user(t)
	other.login(t)
	other.mustRun(t, "deploy", "abort", id)
	select {
	case code := <-exit:
		if code != 1 || !strings.Contains(stderr.String(), "pipeline "+id+" ended CANCELLED") {
			t.Errorf("exit %d, stderr %q", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the live view did not end after the abort")
	}
	tty.Close()
	<-readDone
	plain := stripANSI(screen.String())
	if !regexp.MustCompile(`✗ aborted the pipeline by admin \(machine `+s.ClientID+`\) at \d\d:\d\d:\d\dZ`).MatchString(plain) ||
		!regexp.MustCompile(`Pipeline `+id+`\s+application gated\s+CANCELLED`).MatchString(plain) {
		t.Errorf("the final view lacks the abort:\n%s", plain)
	}
}
