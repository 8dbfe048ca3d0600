package kube

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long a process gets to exit after SIGTERM before its group is killed.
const stopGrace = 5 * time.Second

// proc is one running binary of the cluster, in its own process group, logging to a file.
type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and err is set
	err  error
}

// startProc starts binary name from bin with args, its output in dir/<logName>.log.
func startProc(bin, dir, name, logName string, args, env []string) (*proc, error) {
	logPath := filepath.Join(dir, logName+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	defer f.Close() // the child has its own copy
	fmt.Fprintf(f, "+ %s %s\n", name, strings.Join(args, " "))

	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	// Its own process group, so Stop reaches anything it forks; and killed with the test
	// binary even when cleanups never run (a -timeout panic, a SIGKILL).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		if p.err == nil {
			return true, fmt.Errorf("%s exited", p.name)
		}
		return true, fmt.Errorf("%s exited: %w", p.name, p.err)
	default:
		return false, nil
	}
}

// stop ends the process group: SIGTERM, then SIGKILL after stopGrace. It waits for the exit.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Children that outlived the leader would keep ports and files: no survivors.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// tail returns the last n lines of the process log.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", p.log, err)
	}
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// portInUse reports whether the process failed because a port it was given got taken
// between freePorts and its bind.
func (p *proc) portInUse() bool {
	b, _ := os.ReadFile(p.log)
	return bytes.Contains(b, []byte("address already in use"))
}

// freePorts returns n distinct loopback TCP ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// errStartTimeout is returned when a component did not become ready in time.
var errStartTimeout = errors.New("not ready in time")

// waitFor polls ready every 100ms until it returns true, the processes exit or timeout
// passes. The last error of ready is reported on timeout.
func waitFor(what string, timeout time.Duration, procs []*proc, ready func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		for _, p := range procs {
			if done, err := p.exited(); done {
				return fmt.Errorf("wait for %s: %w\n--- %s log (tail) ---\n%s", what, err, p.name, p.tail(40))
			}
		}
		ok, err := ready()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			var tails strings.Builder
			for _, p := range procs {
				fmt.Fprintf(&tails, "\n--- %s log (tail) ---\n%s", p.name, p.tail(40))
			}
			return fmt.Errorf("wait for %s: %w after %s (last error: %v)%s", what, errStartTimeout, timeout, last, tails.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
