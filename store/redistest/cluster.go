package redistest

import (
	"bufio"
	"errors"
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
	t     testing.TB
	addrs []string
	nodes []*node
}

// node is one cluster node's redis-server; it keeps its ports and directory (and so its
// nodes.conf, its identity and its slots) across Kill and Restart.
type node struct {
	binary    string
	port, bus int
	dir       string
	cmd       *exec.Cmd
	exited    chan struct{} // closed when cmd has exited; nil while stopped
}

// NewCluster starts a Redis Cluster of n masters for the test, with the hash slots split
// evenly between them, and stops it when the test ends.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	binary, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found (%v); run ./test.sh, which installs it", err)
	}
	c := &Cluster{t: t}
	for range n {
		nd := startNode(t, binary)
		c.nodes = append(c.nodes, nd)
		c.addrs = append(c.addrs, nd.addr())
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.kill()
		}
	})
	first := c.nodes[0]
	for i, addr := range c.addrs {
		lo, hi := i*clusterSlots/n, (i+1)*clusterSlots/n-1
		if _, err := command(addr, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			t.Fatalf("redistest: assign slots to %s: %v", addr, err)
		}
		if i > 0 {
			if _, err := command(addr, "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(first.port), strconv.Itoa(first.bus)); err != nil {
				t.Fatalf("redistest: join %s to the cluster: %v", addr, err)
			}
		}
	}
	c.waitHealthy()
	return c
}

// waitHealthy waits until every node sees all n nodes and every slot served.
func (c *Cluster) waitHealthy() {
	c.t.Helper()
	for _, addr := range c.addrs {
		waitFor(c.t, func() error {
			info, err := command(addr, "CLUSTER", "INFO")
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", len(c.addrs))) {
				return fmt.Errorf("cluster not ready: %s", strings.Fields(info)[0])
			}
			return nil
		})
	}
}

// NodeOf returns the index (in Addrs) of the master serving key's hash slot.
func (c *Cluster) NodeOf(key string) int {
	c.t.Helper()
	slot, err := command(c.addrs[0], "CLUSTER", "KEYSLOT", key)
	if err != nil {
		c.t.Fatalf("redistest: CLUSTER KEYSLOT: %v", err)
	}
	n, err := strconv.Atoi(slot)
	if err != nil {
		c.t.Fatalf("redistest: CLUSTER KEYSLOT = %q", slot)
	}
	for i := range c.addrs {
		if n <= (i+1)*clusterSlots/len(c.addrs)-1 {
			return i
		}
	}
	c.t.Fatalf("redistest: slot %d out of range", n)
	return 0
}

// Save makes master i write its data to disk (SAVE), so that Restart brings it back, as a
// node with persistence would come back from a crash.
func (c *Cluster) Save(i int) {
	c.t.Helper()
	if _, err := command(c.addrs[i], "SAVE"); err != nil {
		c.t.Fatalf("redistest: SAVE on %s: %v", c.addrs[i], err)
	}
}

// Kill kills master i (SIGKILL, as a crash would): its slots are down, and, once the other
// masters notice (about a second), so is the whole cluster, as Redis Cluster requires full
// slot coverage by default. Killing a stopped node does nothing.
func (c *Cluster) Kill(i int) { c.nodes[i].kill() }

// Restart starts master i again on its address with its cluster configuration (its data is
// gone unless Save ran before Kill) and waits until the cluster is healthy again.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	nd.kill()
	if err := nd.start(); err != nil {
		c.t.Fatalf("redistest: restart cluster node %s: %v", nd.addr(), err)
	}
	c.waitHealthy()
}

// startAttempts bounds the retries of a node whose free port was taken before it bound it.
const startAttempts = 5

// startNode starts one cluster node on free ports. A node that finds its port taken exits,
// and another is started on new ports; the node answering is known to be ours by its
// process id.
func startNode(t testing.TB, binary string) *node {
	t.Helper()
	var err error
	for range startAttempts {
		nd := &node{binary: binary, port: freePort(t), bus: freePort(t), dir: t.TempDir()}
		if err = nd.start(); err == nil {
			return nd
		}
		if !errors.Is(err, errExited) {
			t.Fatalf("redistest: %v", err)
		}
	}
	t.Fatalf("redistest: no cluster node started in %d attempts: %v", startAttempts, err)
	return nil
}

// errExited reports a node that exited while starting, most likely because its port was taken.
var errExited = errors.New("redis-server exited while starting")

func (nd *node) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(nd.port)) }

// start runs the node's redis-server and waits until it answers.
func (nd *node) start() error {
	logFile := filepath.Join(nd.dir, "redis.log")
	cmd := exec.Command(nd.binary,
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(nd.port),
		"--cluster-enabled", "yes",
		"--cluster-port", strconv.Itoa(nd.bus),
		"--cluster-config-file", filepath.Join(nd.dir, "nodes.conf"),
		"--cluster-node-timeout", "1000",
		"--save", "",
		"--appendonly", "no",
		"--dir", nd.dir,
		"--logfile", logFile,
	)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	nd.cmd, nd.exited = cmd, exited
	ours := fmt.Sprintf("process_id:%d\r\n", cmd.Process.Pid)
	deadline := time.Now().Add(readyTimeout)
	for {
		info, err := command(nd.addr(), "INFO", "server")
		if err == nil && strings.Contains(info, ours) {
			return nil
		}
		select {
		case <-exited:
			nd.exited = nil
			return fmt.Errorf("%w: %s", errExited, readLog(logFile))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			nd.kill()
			return fmt.Errorf("cluster node not ready after %v: %v\n%s", readyTimeout, err, readLog(logFile))
		}
	}
}

// kill stops the node's process, if it runs, and waits for it to exit.
func (nd *node) kill() {
	if nd.exited == nil {
		return
	}
	_ = nd.cmd.Process.Kill()
	<-nd.exited
	nd.exited = nil
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
