package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/sortie-dev/sortie/agent/agenttest"
	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

func TestValidateIdentifier(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id      string
		wantErr string // substring; empty means valid
	}{
		{id: "prod-cluster_1"},
		{id: "A"},
		{id: strings.Repeat("a", 63)},
		{id: "", wantErr: `invalid agent identifier "": hello.agent_identifier: value is required`},
		{id: strings.Repeat("a", 64), wantErr: `: hello.agent_identifier: must be at most 63 characters`},
		{id: "prod cluster", wantErr: `invalid agent identifier "prod cluster": hello.agent_identifier: does not match regex pattern ` + "`^[a-zA-Z0-9_-]+$`"},
		{id: "prod.eu", wantErr: "does not match regex pattern"},
		{id: "kube/ns", wantErr: "does not match regex pattern"},
		{id: "clüster", wantErr: "does not match regex pattern"},
		{id: "x\n", wantErr: `"x\n": hello.agent_identifier: does not match regex pattern`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.id), func(t *testing.T) {
			t.Parallel()
			err := ValidateIdentifier(tt.id)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateIdentifier(%q) = %v, want nil", tt.id, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidIdentifier) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateIdentifier(%q) = %v, want ErrInvalidIdentifier containing %q", tt.id, err, tt.wantErr)
			}
		})
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	valid := func() Config {
		return Config{
			HubURL: "https://sortie.example.com", ClientID: "id", ClientSecret: "secret",
			AgentIdentifier: "prod", RESTConfig: &rest.Config{Host: "https://127.0.0.1:6443"},
		}
	}
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{name: "valid", change: func(*Config) {}},
		{name: "h2c hub", change: func(c *Config) { c.HubURL = "http://127.0.0.1:8080/" }},
		{name: "bad identifier", change: func(c *Config) { c.AgentIdentifier = "a b" }, wantErr: "invalid agent identifier"},
		{name: "relative hub URL", change: func(c *Config) { c.HubURL = "sortie:8080" }, wantErr: "hub URL must be an absolute"},
		{name: "grpc scheme", change: func(c *Config) { c.HubURL = "grpc://sortie" }, wantErr: "hub URL must be an absolute"},
		{name: "bad token URL", change: func(c *Config) { c.TokenURL = "/oauth/token" }, wantErr: "token URL must be an absolute"},
		{name: "no secret", change: func(c *Config) { c.ClientSecret = "" }, wantErr: "client secret are required"},
		{name: "no kube", change: func(c *Config) { c.RESTConfig = nil }, wantErr: "REST config is required"},
		{name: "tiny heartbeat", change: func(c *Config) { c.Heartbeat = time.Millisecond }, wantErr: "heartbeat interval must be at least"},
		{name: "missing CA file", change: func(c *Config) { c.CAFile = "/nonexistent/ca.pem" }, wantErr: "read CA file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid()
			tt.change(&cfg)
			a, err := New(slog.New(slog.DiscardHandler), cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if a.cfg.TokenURL != strings.TrimRight(cfg.HubURL, "/")+"/oauth/token" {
					t.Errorf("default token URL = %q", a.cfg.TokenURL)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestTokenRenewal(t *testing.T) {
	t.Parallel()
	ts := agenttest.NewTokenServer(t, "agent-id", "agent-secret")
	ts.SetTTL(100 * time.Second)
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	src := newTokenSource(ts.URL(), "agent-id", "agent-secret", newTokenHTTPClient(nil), clock.Now, m)
	ctx := context.Background()

	first, err := src.Token(ctx)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	steps := []struct {
		advance   time.Duration
		wantFetch bool
	}{
		{advance: 10 * time.Second},
		{advance: 69 * time.Second},                 // 79 s: still within 80% of 100 s
		{advance: 2 * time.Second, wantFetch: true}, // 81 s: renewed before expiry
		{advance: time.Second},
	}
	prev, requests := first, 1
	for i, s := range steps {
		clock.Advance(s.advance)
		tok, err := src.Token(ctx)
		if err != nil {
			t.Fatalf("step %d: Token: %v", i, err)
		}
		if s.wantFetch {
			requests++
		}
		if got := ts.Requests(); got != requests {
			t.Fatalf("step %d: %d token requests, want %d", i, got, requests)
		}
		if (tok != prev) != s.wantFetch {
			t.Fatalf("step %d: token changed = %v, want %v", i, tok != prev, s.wantFetch)
		}
		prev = tok
	}
	if got := ts.Scopes(); !slicesAll(got, Scope) {
		t.Errorf("requested scopes %v, want all %q", got, Scope)
	}

	src.Invalidate()
	if tok, _ := src.Token(ctx); tok == prev || ts.Requests() != requests+1 {
		t.Errorf("after Invalidate the token was not fetched again")
	}
}

func TestTokenErrors(t *testing.T) {
	t.Parallel()
	ts := agenttest.NewTokenServer(t, "agent-id", "agent-secret")
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	src := newTokenSource(ts.URL(), "agent-id", "wrong-secret-value", newTokenHTTPClient(nil), time.Now, m)
	_, err = src.Token(context.Background())
	if !errors.Is(err, errInvalidClient) {
		t.Fatalf("Token with a wrong secret = %v, want errInvalidClient", err)
	}
	if strings.Contains(err.Error(), "wrong-secret-value") {
		t.Errorf("the error leaks the secret: %v", err)
	}

	down := newTokenSource("http://"+closedAddr(t)+"/oauth/token", "agent-id", "agent-secret", newTokenHTTPClient(nil), time.Now, m)
	if _, err := down.Token(context.Background()); err == nil || strings.Contains(err.Error(), "agent-secret") {
		t.Errorf("Token from a closed port = %v, want an error without the secret", err)
	}
}

func TestParseManifests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		manifests string
		want      []string // kind/name, in order
		wantErr   string
	}{
		{
			name: "multi-document YAML with empty documents",
			manifests: "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# comment only\n---\n" +
				"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\nspec:\n  replicas: 3\n",
			want: []string{"ConfigMap/a", "Deployment/b"},
		},
		{
			name:      "JSON",
			manifests: `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n"}}`,
			want:      []string{"Namespace/n"},
		},
		{
			name: "v1 List",
			manifests: "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n" +
				"- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n",
			want: []string{"Service/s", "ConfigMap/c"},
		},
		{name: "no kind", manifests: "apiVersion: v1\nmetadata:\n  name: a\n", wantErr: "manifest document 1: apiVersion and kind are required"},
		{
			name:      "a Secret without kind is not quoted back",
			manifests: "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ns1}\n---\napiVersion: v1\nmetadata: {name: s}\ndata: {password: aHVudGVyMg==}\n",
			wantErr:   "manifest document 2: apiVersion and kind are required",
		},
		{name: "not an object", manifests: "just a string\n", wantErr: "manifest document 1 is not an object"},
		{name: "bad metadata", manifests: "apiVersion: v1\nkind: ConfigMap\nmetadata: 7\n", wantErr: "manifest document 1: ConfigMap has no metadata.name"},
		{name: "no name", manifests: "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: x-\n", wantErr: "manifest document 1: ConfigMap has no metadata.name"},
		{name: "malformed YAML", manifests: "apiVersion: v1\nkind: [unclosed\n", wantErr: "manifest document 1"},
		{name: "empty", manifests: "---\n---\n", wantErr: "manifests hold no object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			objs, err := parseManifests([]byte(tt.manifests))
			if tt.wantErr != "" {
				var inv *invalidError
				if !errors.As(err, &inv) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseManifests error = %v, want an invalid error containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "aHVudGVyMg") {
					t.Errorf("the error quotes the manifest: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseManifests: %v", err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.GetKind()+"/"+o.GetName())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
		})
	}
	// Integers stay integers (not floats) on their way to the apiserver.
	objs, err := parseManifests([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\nspec:\n  replicas: 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r, _, _ := unstructured.NestedInt64(objs[0].Object, "spec", "replicas"); r != 3 {
		t.Errorf("spec.replicas = %v (%T), want int64 3", objs[0].Object["spec"].(map[string]any)["replicas"], objs[0].Object["spec"].(map[string]any)["replicas"])
	}
}

func TestSanitized(t *testing.T) {
	t.Parallel()
	secret := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{
			"name": "s", "namespace": "n",
			"managedFields": []any{map[string]any{"manager": "kubectl"}},
			"annotations": map[string]any{
				lastApplied: `{"data":{"password":"aHVudGVyMg=="}}`,
				"keep":      "me",
			},
		},
		"type":       "Opaque",
		"data":       map[string]any{"password": "aHVudGVyMg=="},
		"stringData": map[string]any{"token": "hunter2"},
	}}
	orig := secret.DeepCopy()
	got := sanitized(secret)
	want := map[string]any{
		"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
		"metadata": map[string]any{"name": "s", "namespace": "n", "annotations": map[string]any{"keep": "me"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sanitized Secret (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(orig.Object, secret.Object); diff != "" {
		t.Errorf("sanitized modified its input (-before +after):\n%s", diff)
	}

	cm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "c", "managedFields": []any{}},
		"data":     map[string]any{"k": "v"},
	}}
	if diff := cmp.Diff(map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "c"}, "data": map[string]any{"k": "v"},
	}, sanitized(cm)); diff != "" {
		t.Errorf("sanitized ConfigMap (-want +got):\n%s", diff)
	}
}

func TestErrorCode(t *testing.T) {
	t.Parallel()
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	tests := []struct {
		name string
		err  error
		want hubv1.CommandError_Code
	}{
		{"not found", fmt.Errorf("get: %w", apierrors.NewNotFound(gr, "x")), hubv1.CommandError_CODE_NOT_FOUND},
		{"no such kind", &meta.NoKindMatchError{GroupKind: schema.GroupKind{Kind: "Rollout"}}, hubv1.CommandError_CODE_NOT_FOUND},
		{"conflict", apierrors.NewConflict(gr, "x", errors.New("changed")), hubv1.CommandError_CODE_CONFLICT},
		{"already exists", apierrors.NewAlreadyExists(gr, "x"), hubv1.CommandError_CODE_CONFLICT},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Kind: "Deployment"}, "x", nil), hubv1.CommandError_CODE_INVALID},
		{"bad request", apierrors.NewBadRequest("nope"), hubv1.CommandError_CODE_INVALID},
		{"unsupported patch", apierrors.NewGenericServerResponse(415, "PATCH", gr, "x", "", 0, false), hubv1.CommandError_CODE_INVALID},
		{"agent refuses", invalidf("patch is empty"), hubv1.CommandError_CODE_INVALID},
		{"forbidden", apierrors.NewForbidden(gr, "x", errors.New("rbac")), hubv1.CommandError_CODE_FORBIDDEN},
		{"unauthorized", apierrors.NewUnauthorized("who"), hubv1.CommandError_CODE_FORBIDDEN},
		{"deadline", fmt.Errorf("apply: %w", context.DeadlineExceeded), hubv1.CommandError_CODE_DEADLINE_EXCEEDED},
		{"server timeout", apierrors.NewTimeoutError("slow", 1), hubv1.CommandError_CODE_DEADLINE_EXCEEDED},
		{"unavailable", apierrors.NewServiceUnavailable("down"), hubv1.CommandError_CODE_UNAVAILABLE},
		{"connection refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, hubv1.CommandError_CODE_UNAVAILABLE},
		{"shutting down", fmt.Errorf("%w: %w", errShuttingDown, context.Canceled), hubv1.CommandError_CODE_UNAVAILABLE},
		{"unknown action", &unimplementedError{msg: "?"}, hubv1.CommandError_CODE_UNIMPLEMENTED},
		{"anything else", errors.New("boom"), hubv1.CommandError_CODE_UNSPECIFIED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := commandError(tt.err); got.GetCode() != tt.want || got.GetMessage() != tt.err.Error() {
				t.Errorf("commandError(%v) = %v %q, want %v", tt.err, got.GetCode(), got.GetMessage(), tt.want)
			}
		})
	}
}

func TestResultCache(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Unix(0, 0)}
	c := newResultCache(3, 10*time.Minute, clock.Now)
	done := func(id string) {
		e, fresh := c.begin(id)
		if !fresh {
			t.Fatalf("begin(%q) is not fresh", id)
		}
		c.finish(e, &hubv1.CommandResult{CommandId: id})
	}
	done("a")
	if e, fresh := c.begin("a"); fresh || e.result.GetCommandId() != "a" {
		t.Fatalf("begin(a) again: fresh=%v result=%v, want the remembered result", fresh, e.result)
	}
	done("b")
	done("c")
	done("d") // evicts a: at most 3 are kept
	if _, fresh := c.begin("b"); fresh {
		t.Errorf("b was evicted although only 3 entries are kept")
	}
	done("a") // a is new again, and evicts b
	for _, id := range []string{"c", "d", "a"} {
		if _, fresh := c.begin(id); fresh {
			t.Errorf("begin(%s) is fresh, want the remembered result", id)
		}
	}
	if _, fresh := c.begin("b"); !fresh {
		t.Errorf("b survived the eviction of the oldest")
	}
	clock.Advance(11 * time.Minute)
	if _, fresh := c.begin("c"); !fresh {
		t.Errorf("c survived its 10 minute lifetime")
	}
}

type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func slicesAll(s []string, v string) bool {
	for _, x := range s {
		if x != v {
			return false
		}
	}
	return len(s) > 0
}
