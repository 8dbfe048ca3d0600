package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"

	"github.com/sortie-dev/sortie/gen/sortie/hub/v1/hubv1connect"
)

// HTTP/2 liveness of the hub connection: a PING after pingAfter without any frame, and the
// connection is closed when its answer takes longer than pingTimeout. This finds a dead TCP
// connection (a cut network, a vanished load balancer) sooner than three missed heartbeats.
const (
	pingAfter   = 15 * time.Second
	pingTimeout = 10 * time.Second
	// writeTimeout closes a connection whose writes make no progress (a full send buffer
	// towards a vanished peer), which would otherwise block the stream's writer.
	writeTimeout = 30 * time.Second
	// maxReadBytes bounds one message from the hub (a command with its manifests).
	maxReadBytes = 64 << 20
	dialTimeout  = 10 * time.Second
)

// newHubClient returns the generated client speaking the gRPC protocol, as the hub and any
// gRPC-aware load balancer in front of it expect.
func newHubClient(httpClient *http.Client, hubURL string) hubv1connect.AgentHubServiceClient {
	return hubv1connect.NewAgentHubServiceClient(httpClient, hubURL, connect.WithGRPC(), connect.WithReadMaxBytes(maxReadBytes))
}

// newHubHTTPClient returns an HTTP/2-only client: TLS with ALPN h2 verified against roots for
// https, HTTP/2 with prior knowledge over cleartext TCP (h2c) for http.
func newHubHTTPClient(scheme string, roots *x509.CertPool) *http.Client {
	t := &http2.Transport{
		ReadIdleTimeout:  pingAfter,
		PingTimeout:      pingTimeout,
		WriteByteTimeout: writeTimeout,
	}
	if scheme == "https" {
		t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
		t.DialTLSContext = func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}, Config: cfg}
			return d.DialContext(ctx, network, addr)
		}
	} else {
		t.AllowHTTP = true
		t.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			d := net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
			return d.DialContext(ctx, network, addr)
		}
	}
	// No client timeout: the stream lives for hours; heartbeats and PINGs keep it honest.
	return &http.Client{Transport: t}
}

// newTokenHTTPClient returns the client of the token endpoint (any HTTP version).
func newTokenHTTPClient(roots *x509.CertPool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}
