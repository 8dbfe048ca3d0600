package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// Cluster is a private Redis Cluster of masters without replicas, each its own redis-server
// listening on 127.0.0.1 (a cluster's nodes must reach each other over TCP).
type Cluster struct {
	addrs []string
}

// NewCluster starts a Redis Cluster of n masters for the test, with the hash slots split
// evenly between them, and stops it when the test ends.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	binary, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found (%v); run ./test.sh, which installs it", err)
	}
	c := &Cluster{}
	var firstPort, firstBus int
	for i := range n {
		port, bus := startNode(t, binary)
		if i == 0 {
			firstPort, firstBus = port, bus
		}
		c.addrs = append(c.addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	for i, addr := range c.addrs {
		first, last := i*clusterSlots/n, (i+1)*clusterSlots/n-1
		if _, err := command(addr, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(first), strconv.Itoa(last)); err != nil {
			t.Fatalf("redistest: assign slots to %s: %v", addr, err)
		}
		if i > 0 {
			if _, err := command(addr, "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(firstPort), strconv.Itoa(firstBus)); err != nil {
				t.Fatalf("redistest: join %s to the cluster: %v", addr, err)
			}
		}
	}
	for _, addr := range c.addrs {
		waitFor(t, func() error {
			info, err := command(addr, "CLUSTER", "INFO")
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", n)) {
				return fmt.Errorf("cluster not ready: %s", strings.Fields(info)[0])
			}
			return nil
		})
	}
	return c
}

// startAttempts bounds the retries of a node whose free port was taken before it bound it.
const startAttempts = 5

// startNode starts one cluster node, stopped when the test ends, and returns its client and
// cluster bus ports. A node that finds its port taken exits, and another is started on new
// ports; the node answering is known to be ours by its process id.
func startNode(t testing.TB, binary string) (port, bus int) {
	t.Helper()
	for range startAttempts {
		port, bus = freePort(t), freePort(t)
		dir := t.TempDir()
		logFile := filepath.Join(dir, "redis.log")
		cmd := exec.Command(binary,
			"--bind", "127.0.0.1",
			"--port", strconv.Itoa(port),
			"--cluster-enabled", "yes",
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "1000",
			"--save", "",
			"--appendonly", "no",
			"--dir", dir,
			"--logfile", logFile,
		)
		if err := cmd.Start(); err != nil {
			t.Fatalf("redistest: start redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(exited)
		}()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ours := fmt.Sprintf("process_id:%d\r\n", cmd.Process.Pid)
		deadline := time.Now().Add(readyTimeout)
		for {
			info, err := command(addr, "INFO", "server")
			if err == nil && strings.Contains(info, ours) {
				return port, bus
			}
			select {
			case <-exited:
			case <-time.After(20 * time.Millisecond):
				if time.Now().After(deadline) {
					t.Fatalf("redistest: cluster node not ready after %v: %v\n%s", readyTimeout, err, readLog(logFile))
				}
				continue
			}
			break // exited: its port was taken; try new ones
		}
	}
	t.Fatalf("redistest: no cluster node started in %d attempts", startAttempts)
	return 0, 0
}

// Addrs returns the masters' addresses.
func (c *Cluster) Addrs() []string { return c.addrs }

// URL returns a redis:// URL naming every master, in the form the Redis client's cluster
// URL parser takes: the first address as the host, the others as addr parameters.
func (c *Cluster) URL() string {
	u := "redis://" + c.addrs[0]
	for i, a := range c.addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + a
	}
	return u
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls check until it succeeds, failing the test after readyTimeout.
func waitFor(t testing.TB, check func() error) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		err := check()
		if err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
		if time.Now().After(deadline) {
			t.Fatalf("redistest: not ready after %v: %v", readyTimeout, err)
		}
	}
}

// command sends one command to addr and returns its simple, integer or bulk string reply.
func command(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	req := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		req += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, req); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"), strings.HasPrefix(line, ":"):
		return line[1:], nil
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("%s", line[1:])
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("unexpected reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}
