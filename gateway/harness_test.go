package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/net/http2"

	"github.com/sortie-dev/sortie/gateway"
	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/pipeline"
	"github.com/sortie-dev/sortie/seal"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/boltstore"
	"github.com/sortie-dev/sortie/store/redisstore"
)

// fakeClock is a settable clock shared by the server under test.
type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const testTTL = time.Hour

// testServer is a real sortie gateway on a loopback listener, speaking HTTP/1.1 and h2c.
type testServer struct {
	URL       string
	clock     *fakeClock
	st        store.Store
	svc       *identity.Service
	gw        *gateway.Gateway
	hub       *hub.Hub
	engine    *pipeline.Engine
	masterKey []byte
	admin     identity.NewOrganization // the admin of organization "acme"
}

type serverOptions struct {
	redisURL string
	// gateway adds options to the gateway's.
	gateway []gateway.Option
}

func startServer(t testing.TB, opts serverOptions) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var st store.Store
	var err error
	if opts.redisURL != "" {
		st, err = redisstore.Open(ctx, opts.redisURL)
	} else {
		st, err = boltstore.Open(filepath.Join(t.TempDir(), "sortie.db"))
	}
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{URL: "http://" + ln.Addr().String(), clock: newFakeClock(), st: st, masterKey: bytes.Repeat([]byte{7}, identity.MasterKeySize)}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	ts.svc, err = identity.New(ctx, log, st, identity.Config{
		Issuer: ts.URL, Audiences: []string{ts.URL, "https://api.cloud.armory.io"},
		TokenTTL: testTTL, KeyRotation: 24 * time.Hour, MasterKey: ts.masterKey, Now: ts.clock.Now, Registerer: reg,
	})
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	ts.admin, err = ts.svc.CreateOrganization(ctx, "acme")
	if err != nil {
		t.Fatalf("create organization: %v", err)
	}
	ts.hub = hub.New(log, hub.Config{Registerer: reg})
	// The engine runs wherever the store keeps pipelines (a backend without them yet serves
	// the deployment routes as 503).
	// Streams re-check their token often, so tests of revocation wait little.
	gwOpts := append([]gateway.Option{gateway.WithStreamRecheck(50 * time.Millisecond)}, opts.gateway...)
	runners := []func(context.Context) error{ts.hub.Run}
	if ps, ok := st.(pipeline.Store); ok {
		sealer, err := seal.New(ts.masterKey, "pipelines")
		if err != nil {
			t.Fatal(err)
		}
		ts.engine = pipeline.New(log, ps, pipeline.FromHub(ts.hub), sealer, pipeline.Config{
			Holder: ts.hub.InstanceID(), Resync: 200 * time.Millisecond, CommandTimeout: 5 * time.Second, Registerer: reg,
		})
		gwOpts = append(gwOpts, gateway.WithPipelines(ts.engine))
		runners = append(runners, ts.engine.Run)
	}
	ts.gw = gateway.New(log, ts.svc, ts.hub, reg, gwOpts...)
	done := make(chan error, 1+len(runners))
	go func() { done <- gateway.Serve(ctx, log, ln, ts.gw.Handler(), nil) }()
	for _, run := range runners {
		go func() { done <- run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range 1 + len(runners) {
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
		st.Close()
	})
	return ts
}

// h2cClient speaks HTTP/2 with prior knowledge over cleartext, as agents and gRPC clients do.
func h2cClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// token gets an access token for a credential over HTTP; scope may be empty (all granted).
func (ts *testServer) token(t testing.TB, clientID, secret, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}}
	if scope != "" {
		form.Set("scope", scope)
	}
	resp, err := http.PostForm(ts.URL+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out identity.TokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("token: status %d, decode err %v", resp.StatusCode, err)
	}
	return out.AccessToken
}

func (ts *testServer) adminToken(t testing.TB) string {
	t.Helper()
	return ts.token(t, ts.admin.Admin.ClientID, ts.admin.Secret, "")
}

// response is a finished HTTP exchange.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends a request with an optional bearer token; body may be nil, a string or a value to
// encode as JSON.
func (ts *testServer) do(t *testing.T, method, path, token string, body any) response {
	t.Helper()
	var r io.Reader
	contentType := ""
	switch b := body.(type) {
	case nil:
	case string:
		r, contentType = strings.NewReader(b), "application/json"
	case []byte:
		r, contentType = bytes.NewReader(b), "application/json"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r, contentType = bytes.NewReader(data), "application/json"
	}
	req, err := http.NewRequest(method, ts.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// decode unmarshals a JSON body into a new T.
func decode[T any](t *testing.T, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}

// errorContract is the REST error body of api.md section 2.
type errorContract struct {
	ErrorID string `json:"error_id"`
	Errors  []struct {
		Message  string         `json:"message"`
		Code     string         `json:"code"`
		Metadata map[string]any `json:"metadata"`
	} `json:"errors"`
}

// wantError asserts a response is the error contract with the given status.
func wantError(t *testing.T, what string, r response, status int) errorContract {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var e errorContract
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("%s: body is not the error contract: %v: %s", what, err, r.Body)
	}
	if len(e.ErrorID) != 36 || len(e.Errors) == 0 || e.Errors[0].Message == "" || e.Errors[0].Code == "" || e.Errors[0].Metadata == nil {
		t.Fatalf("%s: incomplete error contract: %s", what, r.Body)
	}
	return e
}

// quietRedis drops go-redis's own reconnect logging, which the outage test provokes on purpose.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(quietRedis{})
	os.Exit(m.Run())
}
