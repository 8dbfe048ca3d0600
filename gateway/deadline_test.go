package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sortie-dev/sortie/gateway"
	infrav1 "github.com/sortie-dev/sortie/gen/sortie/infra/v1"
	"github.com/sortie-dev/sortie/gen/sortie/infra/v1/infrav1connect"
	"github.com/sortie-dev/sortie/identity"
)

const testBodyTimeout = 500 * time.Millisecond

// trickle sends a request whose body arrives one byte every interval, and returns the
// status line the server answered with ("" if it closed the connection without one) and
// how many body bytes it had sent by then.
func trickle(t *testing.T, ts *testServer, path, token string, interval time.Duration) (string, int) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const length = 64
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: sortie\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", path, token, length)
	answered := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(conn).ReadString('\n')
		answered <- strings.TrimSpace(line)
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for sent := 0; sent < length; sent++ {
		select {
		case line := <-answered:
			return line, sent
		case <-tick.C:
			if _, err := conn.Write([]byte(" ")); err != nil {
				return <-answered, sent
			}
		}
	}
	return <-answered, length
}

// TestSlowBodiesCutOff: a client trickling its body is cut off after the body read timeout on
// REST, the token endpoint and Connect alike, long before its body would be complete.
func TestSlowBodiesCutOff(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{gateway: []gateway.Option{gateway.WithBodyReadTimeout(testBodyTimeout)}})
	admin := ts.adminToken(t)
	for _, tt := range []struct {
		name, path, wantStatus string
	}{
		{"REST", "/credentials", "408"},
		{"token endpoint", "/oauth/token", "408"},
		{"Connect", "/sortie.identity.v1.IdentityService/CreateCredential", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			line, sent := trickle(t, ts, tt.path, admin, 100*time.Millisecond)
			if sent >= 64 {
				t.Fatalf("the server waited for the whole trickled body (%q)", line)
			}
			if tt.wantStatus != "" && !strings.Contains(line, " "+tt.wantStatus+" ") {
				t.Errorf("answer %q, want %s", line, tt.wantStatus)
			}
		})
	}
	if r := ts.do(t, "GET", "/credentials", admin, nil); r.Status != http.StatusOK {
		t.Errorf("after the slow clients: %d", r.Status)
	}
}

// TestServerStreamOutlivesBodyTimeout: the body deadline ends with the request message; a
// server stream over HTTP/1.1 lives on after it, until its credential is deleted.
func TestServerStreamOutlivesBodyTimeout(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{gateway: []gateway.Option{gateway.WithBodyReadTimeout(testBodyTimeout)}})
	fakeAgent(t, ts, ts.token(t, ts.admin.Admin.ClientID, ts.admin.Secret, identity.ScopeConnectAgentHub), "prod-west", "default")
	id, tok := ts.credentialToken(t, "watcher", identity.RoleDeploymentsFullAccess)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := infrav1connect.NewInfrastructureServiceClient(http.DefaultClient, ts.URL, connect.WithInterceptors(bearerAll(tok)))
	stream, err := client.WatchAgents(ctx, connect.NewRequest(&infrav1.WatchAgentsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() {
		t.Fatalf("no first event: %v", stream.Err())
	}
	// Well after the body deadline, end the stream the way only a live stream can end.
	admin := ts.adminToken(t)
	deleted := make(chan error, 1)
	time.AfterFunc(4*testBodyTimeout, func() {
		req, _ := http.NewRequest("DELETE", ts.URL+"/credentials/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		deleted <- err
	})
	for stream.Receive() {
	}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	var cerr *connect.Error
	if !errors.As(stream.Err(), &cerr) || cerr.Code() != connect.CodeUnauthenticated || !strings.Contains(cerr.Message(), "deleted") {
		t.Fatalf("the stream ended with %v, not because its credential was deleted", stream.Err())
	}
}
