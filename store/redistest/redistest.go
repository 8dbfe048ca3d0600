// Package redistest runs a private redis-server for tests.
//
// Each Server is its own process listening only on a unix socket in a temporary directory,
// without persistence, so tests never share data or ports and leave nothing behind. Stop and
// Start simulate a Redis outage and its recovery.
package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// maxSocketPath keeps socket paths below the kernel's sun_path limit (108 bytes on Linux,
// 104 on the BSDs, including the terminating NUL).
const maxSocketPath = 100

// readyTimeout bounds how long a starting redis-server may take to answer PING.
const readyTimeout = 10 * time.Second

// Server is a private redis-server process. It is not safe for concurrent use.
type Server struct {
	t      testing.TB
	binary string
	dir    string
	socket string
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// New starts a redis-server for the test and stops it when the test ends. It fails the test
// if redis-server is not installed; ./test.sh installs it.
func New(t testing.TB) *Server {
	t.Helper()
	binary, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found (%v); run ./test.sh, which installs it", err)
	}
	dir := t.TempDir()
	if len(filepath.Join(dir, "redis.sock")) > maxSocketPath {
		// Long test names make long temporary directories; fall back to a short one.
		dir, err = os.MkdirTemp("", "rds")
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	s := &Server{t: t, binary: binary, dir: dir, socket: filepath.Join(dir, "redis.sock")}
	if len(s.socket) > maxSocketPath {
		t.Fatalf("redistest: socket path %s is too long for a unix socket; set a shorter TMPDIR", s.socket)
	}
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

// URL returns the unix:// URL of the server, valid across Stop and Start.
func (s *Server) URL() string { return "unix://" + s.socket }

// Start starts the server again after Stop, on the same socket, and waits until it answers
// PING. The data held before Stop is gone.
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("redistest: Start: server is already running")
	}
	logFile := filepath.Join(s.dir, "redis.log")
	cmd := exec.Command(s.binary,
		"--port", "0",
		"--unixsocket", s.socket,
		"--unixsocketperm", "700",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", logFile,
	)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("redistest: start redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited

	deadline := time.Now().Add(readyTimeout)
	for {
		err := ping(s.socket)
		if err == nil {
			return
		}
		select {
		case <-exited:
			s.cmd = nil
			s.t.Fatalf("redistest: redis-server exited: %v\n%s", cmd.ProcessState, readLog(logFile))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.t.Fatalf("redistest: redis-server not ready after %v: %v\n%s", readyTimeout, err, readLog(logFile))
		}
	}
}

// Stop kills the server, as a crash would, and waits for it to exit. Stopping a stopped
// server does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// ping sends one PING over the socket and expects PONG.
func ping(socket string) error {
	conn, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if reply != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", reply)
	}
	return nil
}

// readLog returns the server's log for a failure message.
func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}
