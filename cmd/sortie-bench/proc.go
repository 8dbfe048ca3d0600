package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process the benchmark started. Its stderr (and stdout, unless a line handler
// takes it) goes to a log file in the run's temporary directory, quoted when it fails.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	stdin   io.WriteCloser // closing it asks a simulate child to stop; nil for servers
	done    chan struct{}  // closed once the process has exited
	err     error          // how it exited; set before done is closed
}

// childSpec describes a process to start.
type childSpec struct {
	name    string
	bin     string
	args    []string
	env     []string // added to the environment
	logPath string
	// onLine, if set, receives each line of stdout; stdout then goes to the log only with
	// logStdout.
	onLine    func(line []byte)
	logStdout bool
	// withStdin keeps a pipe to the child's stdin open until stop.
	withStdin bool
	// dropEnvPrefix removes variables with this prefix, so that the caller's environment
	// cannot reconfigure a server behind the benchmark's back.
	dropEnvPrefix string
}

func startChild(spec childSpec) (*child, error) {
	logFile, err := os.Create(spec.logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(spec.bin, spec.args...)
	for _, kv := range os.Environ() {
		if spec.dropEnvPrefix == "" || !strings.HasPrefix(kv, spec.dropEnvPrefix) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, spec.env...)
	cmd.Stderr = logFile
	cmd.Stdout = logFile
	if spec.onLine != nil {
		cmd.Stdout = &lineWriter{fn: spec.onLine}
		if spec.logStdout {
			cmd.Stdout = io.MultiWriter(logFile, cmd.Stdout)
		}
	}
	cmd.SysProcAttr = childSysProcAttr()
	c := &child{name: spec.name, cmd: cmd, logPath: spec.logPath, done: make(chan struct{})}
	if spec.withStdin {
		if c.stdin, err = cmd.StdinPipe(); err != nil {
			logFile.Close()
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	go func() {
		c.err = cmd.Wait()
		logFile.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop asks the process to end (SIGTERM, and EOF on stdin) and kills it after grace. It
// returns how long it took to exit.
func (c *child) stop(grace time.Duration) time.Duration {
	start := time.Now()
	if c.exited() {
		return 0
	}
	if c.stdin != nil {
		_ = c.stdin.Close()
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	return time.Since(start)
}

// failure describes an unexpected exit with the tail of the child's log.
func (c *child) failure() error {
	return fmt.Errorf("%s exited: %v\n%s", c.name, c.err, tail(c.logPath, 20))
}

// tail returns the last n lines of a file, indented.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	lines = lines[max(len(lines)-n, 0):]
	return "    " + strings.Join(lines, "\n    ")
}

// lineWriter hands each complete line written to it to fn.
type lineWriter struct {
	mu  sync.Mutex // guards buf
	buf []byte
	fn  func([]byte)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.fn(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

// freePort returns a loopback address that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitOK polls baseURL+path (/healthz, /readyz) until it answers 200, c exits, or timeout
// passes.
func waitOK(ctx context.Context, c *child, baseURL, path string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(baseURL + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if c.exited() {
			return c.failure()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s is not 200 after %s\n%s", c.name, path, timeout, tail(c.logPath, 20))
		}
		select {
		case <-ctx.Done():
			return errStopped
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// errStopped is returned when the run is interrupted.
var errStopped = errors.New("interrupted")
