package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"

	identityv1 "github.com/sortie-dev/sortie/gen/sortie/identity/v1"
	"github.com/sortie-dev/sortie/gen/sortie/identity/v1/identityv1connect"
)

// h2cClient speaks HTTP/2 with prior knowledge over cleartext TCP, as agents do.
func h2cClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// http1Client speaks HTTP/1.1 only.
func http1Client(tlsConfig *tls.Config) *http.Client {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Protocols:       &protocols,
		TLSClientConfig: tlsConfig,
	}}
}

// getProto fetches url with c and returns the response's protocol.
func getProto(t *testing.T, c *http.Client, url string) *http.Response {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d, want 200: %s", url, resp.StatusCode, body)
	}
	return resp
}

func TestH2C(t *testing.T) {
	t.Parallel()
	dataDir := newDataDir(t)
	s := startServer(t, "--addr", "127.0.0.1:0", "--data-dir", dataDir)
	admin := readAdmin(t, dataDir)

	tests := []struct {
		name      string
		client    *http.Client
		wantProto string
	}{
		{name: "HTTP/2 prior knowledge", client: h2cClient(), wantProto: "HTTP/2.0"},
		{name: "HTTP/1.1", client: http1Client(nil), wantProto: "HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer tt.client.CloseIdleConnections()
			resp := getProto(t, tt.client, s.URL+"/healthz")
			if resp.Proto != tt.wantProto {
				t.Errorf("GET /healthz over %s answered with %s", tt.name, resp.Proto)
			}
			// The REST and Connect surfaces work over the same protocol.
			token := issueToken(t, tt.client, s.URL, admin.ClientID, admin.ClientSecret)
			if got := whoAmI(t, tt.client, s.URL, token); got.OrgName != "default" {
				t.Errorf("WhoAmI org = %q, want default", got.OrgName)
			}
		})
	}

	// The generated client, with the Connect and the gRPC protocol (which needs HTTP/2).
	c := h2cClient()
	defer c.CloseIdleConnections()
	token := issueToken(t, c, s.URL, admin.ClientID, admin.ClientSecret)
	for _, proto := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"connect", nil},
		{"grpc", []connect.ClientOption{connect.WithGRPC()}},
	} {
		t.Run("generated client "+proto.name, func(t *testing.T) {
			client := identityv1connect.NewIdentityServiceClient(c, s.URL, proto.opts...)
			req := connect.NewRequest(&identityv1.WhoAmIRequest{})
			req.Header().Set("Authorization", "Bearer "+token)
			resp, err := client.WhoAmI(context.Background(), req)
			if err != nil {
				t.Fatalf("WhoAmI: %v", err)
			}
			if got := resp.Msg.GetPrincipal().GetOrgName(); got != "default" {
				t.Errorf("WhoAmI org = %q, want default", got)
			}

			unauth, err := client.WhoAmI(context.Background(), connect.NewRequest(&identityv1.WhoAmIRequest{}))
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Errorf("WhoAmI without a token = %v, %v; want CodeUnauthenticated", unauth, err)
			}
		})
	}
}

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and its key as PEM files
// and returns their paths and a pool trusting the certificate.
func writeSelfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sortie test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := writeSelfSigned(t)
	dataDir := newDataDir(t)
	s := startServer(t, "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(s.URL, "https://127.0.0.1:") {
		t.Fatalf("announced URL %q, want https://127.0.0.1:<port>", s.URL)
	}
	addr := strings.TrimPrefix(s.URL, "https://")

	t.Run("HTTP/2 by ALPN", func(t *testing.T) {
		t.Parallel()
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			ForceAttemptHTTP2: true,
		}}
		defer c.CloseIdleConnections()
		resp := getProto(t, c, s.URL+"/healthz")
		if resp.Proto != "HTTP/2.0" || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
			t.Errorf("GET /healthz over TLS: proto %s, ALPN %q; want HTTP/2.0 by h2", resp.Proto, alpn(resp))
		}
		if resp.TLS != nil && resp.TLS.Version < tls.VersionTLS12 {
			t.Errorf("negotiated %s, want TLS 1.2 or newer", tls.VersionName(resp.TLS.Version))
		}

		// The issuer and the token endpoint are https, and tokens work over TLS.
		var disc struct {
			Issuer        string `json:"issuer"`
			TokenEndpoint string `json:"token_endpoint"`
		}
		call(t, c, http.MethodGet, s.URL+"/.well-known/openid-configuration", "", nil, http.StatusOK, &disc)
		if disc.Issuer != s.URL || disc.TokenEndpoint != s.URL+"/oauth/token" {
			t.Errorf("discovery issuer %q, token endpoint %q; want them under %s", disc.Issuer, disc.TokenEndpoint, s.URL)
		}
		admin := readAdmin(t, dataDir)
		if admin.TokenEndpoint != s.URL+"/oauth/token" {
			t.Errorf("admin-credentials.json token endpoint %q, want %s/oauth/token", admin.TokenEndpoint, s.URL)
		}
		token := issueToken(t, c, s.URL, admin.ClientID, admin.ClientSecret)
		if got := whoAmI(t, c, s.URL, token); got.OrgName != "default" {
			t.Errorf("WhoAmI over TLS: org %q, want default", got.OrgName)
		}
	})

	t.Run("HTTP/1.1 over TLS", func(t *testing.T) {
		t.Parallel()
		c := http1Client(&tls.Config{RootCAs: pool})
		defer c.CloseIdleConnections()
		if resp := getProto(t, c, s.URL+"/healthz"); resp.Proto != "HTTP/1.1" {
			t.Errorf("GET /healthz with an HTTP/1.1 client answered with %s", resp.Proto)
		}
	})

	tests := []struct {
		name    string
		config  *tls.Config
		wantErr string // empty: the handshake must succeed
	}{
		{name: "TLS 1.2", config: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}},
		{name: "TLS 1.3", config: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}},
		{name: "TLS 1.1 is refused", config: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
			wantErr: "remote error: tls: protocol version not supported"},
		{name: "untrusted certificate is refused", config: &tls.Config{MinVersion: tls.VersionTLS12},
			wantErr: "x509: certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run("handshake "+tt.name, func(t *testing.T) {
			t.Parallel()
			d := &net.Dialer{Timeout: 5 * time.Second}
			conn, err := tls.DialWithDialer(d, "tcp", addr, tt.config)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				defer conn.Close()
				if v := conn.ConnectionState().Version; v != tt.config.MinVersion {
					t.Errorf("negotiated %s, want %s", tls.VersionName(v), tls.VersionName(tt.config.MinVersion))
				}
				return
			}
			if err == nil {
				conn.Close()
				t.Fatalf("handshake succeeded, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("handshake error %q, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func alpn(resp *http.Response) string {
	if resp.TLS == nil {
		return "(no TLS)"
	}
	return resp.TLS.NegotiatedProtocol
}

var (
	buildOnce sync.Once
	binDir    string // guarded by buildOnce
	binPath   string // guarded by buildOnce
	buildErr  error  // guarded by buildOnce
)

// serverBinary builds sortie-server once per test binary and returns its path.
func serverBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "sortie-server-test")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "sortie-server")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// cleanupBinary removes the binary serverBinary built, if any.
func cleanupBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

var listeningLine = regexp.MustCompile(`Sortie is listening on (\S+) `)

func TestSIGTERM(t *testing.T) {
	t.Parallel()
	bin := serverBinary(t)
	var stdout, stderr syncBuffer
	cmd := exec.Command(bin, "--addr", "127.0.0.1:0", "--data-dir", newDataDir(t))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	reaped := false // set once exited has been received from
	t.Cleanup(func() {
		if !reaped {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	var base string
	deadline := time.Now().Add(startTimeout)
	for {
		if m := listeningLine.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-exited:
			reaped = true
			t.Fatalf("sortie-server exited before listening: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("sortie-server did not print its URL within %v\nstdout:\n%s", startTimeout, &stdout)
		}
	}
	c := http1Client(nil)
	getProto(t, c, base+"/healthz")
	c.CloseIdleConnections()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		reaped = true
		if err != nil {
			t.Fatalf("sortie-server exited with %v after SIGTERM, want status 0\nstderr:\n%s", err, &stderr)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("sortie-server still running 5s after SIGTERM\nstderr:\n%s", &stderr)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if !strings.Contains(stderr.String(), `"msg":"shutting down"`) {
		t.Errorf("no shutdown log after SIGTERM:\n%s", &stderr)
	}
	if resp, err := c.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("the server still answers after exiting")
	}
}
