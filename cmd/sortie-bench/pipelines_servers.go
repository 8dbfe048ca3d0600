package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"
)

// serverSet is the sortie-server processes of one run: one, or two replicas on a Redis.
type serverSet struct {
	servers []*child
	urls    []string // base URL of each server, same order
	redis   *child   // nil for one server
	// adminCreds is the bootstrap credential file of the first server.
	adminCreds string
}

// stop ends every process of the set.
func (s *serverSet) stop() {
	for _, c := range s.servers {
		c.stop(15 * time.Second)
	}
	if s.redis != nil {
		s.redis.stop(5 * time.Second)
	}
}

// alive returns the failure of the first process that exited, or nil.
func (s *serverSet) alive() error {
	for _, c := range append(append([]*child(nil), s.servers...), s.redis) {
		if c != nil && c.exited() {
			return c.failure()
		}
	}
	return nil
}

// startServerSet starts the servers of topology in dir and waits until each answers /readyz.
// Replicas share the Redis, the master key and the public URL (the tokens' issuer), as the
// README says they must.
func startServerSet(ctx context.Context, b *bench, cfg pipelinesConfig, topology, dir string) (*serverSet, error) {
	set := &serverSet{}
	var shared []string
	replicas := 1
	if topology == topologyReplicas {
		replicas = 2
		redis, url, err := startRedis(ctx, cfg.RedisBin, filepath.Join(dir, "redis"))
		if err != nil {
			return nil, err
		}
		set.redis = redis
		shared = []string{"--redis-url", url, "--public-url", "http://sortie-bench.invalid"}
	}
	for i := range replicas {
		args := []string{"--log-level", cfg.ServerLogLevel,
			"--pipeline-resync", cfg.Resync.String(), "--pipeline-lease-ttl", cfg.LeaseTTL.String()}
		if err := set.startServer(ctx, b, dir, i, append(args, shared...)); err != nil {
			set.stop()
			return nil, err
		}
	}
	return set, nil
}

// startServer starts replica i of the set in dir/server-<i> with args (beside its address
// and data directory) and waits until it answers /readyz. Replicas after the first decrypt
// with the first one's master key.
func (s *serverSet) startServer(ctx context.Context, b *bench, dir string, i int, args []string) error {
	addr, err := freePort()
	if err != nil {
		return err
	}
	dataDir := filepath.Join(dir, fmt.Sprintf("server-%d", i))
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	args = append([]string{"--addr", addr, "--data-dir", dataDir}, args...)
	if i > 0 {
		args = append(args, "--master-key-file", filepath.Join(dir, "server-0", "master.key"))
	}
	srv, err := startChild(childSpec{
		name: fmt.Sprintf("sortie-server %d", i), bin: b.serverBin, dropEnvPrefix: "SORTIE_",
		logPath: filepath.Join(dir, fmt.Sprintf("sortie-server-%d.log", i)), args: args,
	})
	if err != nil {
		return err
	}
	s.servers, s.urls = append(s.servers, srv), append(s.urls, "http://"+addr)
	if err := waitOK(ctx, srv, "http://"+addr, "/readyz", time.Minute); err != nil {
		return err
	}
	if i == 0 {
		s.adminCreds = filepath.Join(dataDir, "admin-credentials.json")
	}
	return nil
}

// startRedis starts a private redis-server without persistence, listening only on a unix
// socket in dir, and returns it with its URL once it answers PING.
func startRedis(ctx context.Context, bin, dir string) (*child, string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", err
	}
	sock := filepath.Join(dir, "redis.sock")
	if len(sock) > 100 {
		return nil, "", fmt.Errorf("redis socket path %s is too long for a unix socket; set a shorter TMPDIR", sock)
	}
	c, err := startChild(childSpec{
		name: "redis-server", bin: bin, logPath: filepath.Join(dir, "redis.log"),
		args: []string{"--port", "0", "--unixsocket", sock, "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", dir},
	})
	if err != nil {
		return nil, "", fmt.Errorf("%w (install redis-server, or pass -redis-server, or -topologies single)", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pingRedis(sock) == nil {
			return c, "unix://" + sock, nil
		}
		if c.exited() {
			return nil, "", c.failure()
		}
		if time.Now().After(deadline) {
			c.stop(time.Second)
			return nil, "", fmt.Errorf("redis-server does not answer PING after 10s\n%s", tail(c.logPath, 20))
		}
		select {
		case <-ctx.Done():
			c.stop(time.Second)
			return nil, "", errStopped
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// pingRedis sends one PING over the socket and expects PONG.
func pingRedis(sock string) error {
	conn, err := net.DialTimeout("unix", sock, time.Second)
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
