package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clienttesting "k8s.io/client-go/testing"

	"github.com/sortie-dev/sortie/agent/agenttest"
	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

const (
	testClientID     = "agent-client"
	testClientSecret = "s3cret-that-must-never-be-logged"
	testIdentifier   = "test-cluster"
	waitLong         = 10 * time.Second
)

// setup configures startAgent.
type setup struct {
	hubOpts []agenttest.HubOption
	objects []runtime.Object
	// tune changes the agent before it runs.
	tune func(*Agent)
	// prepare changes the fake cluster (adds reactors) before the agent runs.
	prepare func(*fakeCluster)
	// configure changes the agent's configuration.
	configure func(*Config, *agenttest.Hub)
	// rejectTokens makes the token endpoint answer invalid_client.
	rejectTokens bool
}

// harness is an agent running against a test hub, a test token endpoint and a fake cluster.
type harness struct {
	hub     *agenttest.Hub
	tokens  *agenttest.TokenServer
	agent   *Agent
	cluster *fakeCluster
	logs    *syncBuffer
	cancel  context.CancelFunc
	runErr  chan error
}

func startAgent(t *testing.T, s setup) *harness {
	t.Helper()
	tokens := agenttest.NewTokenServer(t, testClientID, testClientSecret)
	tokens.RejectAll(s.rejectTokens)
	hub := agenttest.NewHub(t, append([]agenttest.HubOption{agenttest.WithTokens(tokens)}, s.hubOpts...)...)
	cluster := newFakeCluster(s.objects...)
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := Config{
		HubURL:          hub.URL(),
		TokenURL:        tokens.URL(),
		ClientID:        testClientID,
		ClientSecret:    testClientSecret,
		AgentIdentifier: testIdentifier,
		Version:         "v0.1.0-test",
		NodeIP:          "10.0.0.7",
		Registerer:      prometheus.NewRegistry(),
	}
	if s.configure != nil {
		s.configure(&cfg, hub)
	}
	a, err := newAgent(log, cfg, cluster.disco, cluster.dyn)
	if err != nil {
		t.Fatalf("newAgent: %v", err)
	}
	if s.tune != nil {
		s.tune(a)
	}
	if s.prepare != nil {
		s.prepare(cluster)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{hub: hub, tokens: tokens, agent: a, cluster: cluster, logs: logs, cancel: cancel, runErr: make(chan error, 1)}
	go func() { h.runErr <- a.Run(ctx) }()
	t.Cleanup(func() {
		h.stop(t)
		for _, secret := range append(tokens.Issued(), testClientSecret) {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("the logs contain a secret or a token (%.10s...)", secret)
			}
		}
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs.String())
		}
	})
	return h
}

// stop cancels the agent and waits for Run to return nil.
func (h *harness) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	select {
	case err, ok := <-h.runErr:
		if ok && err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
		if ok {
			close(h.runErr)
		}
	case <-time.After(waitLong):
		t.Errorf("Run did not return within %s of the cancellation", waitLong)
	}
}

func TestHello(t *testing.T) {
	t.Parallel()
	h := startAgent(t, setup{objects: []runtime.Object{
		obj("v1", "Namespace", "", "apps", nil),
		obj("apps/v1", "Deployment", "apps", "web", map[string]any{"spec": map[string]any{"replicas": int64(2)}}),
		obj("v1", "Service", "apps", "web", nil),
		obj("apps/v1", "ReplicaSet", "apps", "web-1", nil),
		obj("v1", "ConfigMap", "apps", "not-inventory", nil),
		obj("v1", "Secret", "apps", "not-inventory-either", map[string]any{"data": map[string]any{"k": "c2VjcmV0"}}),
	}})
	s := h.hub.WaitStream(1, waitLong)

	want := &hubv1.Hello{
		AgentIdentifier:    testIdentifier,
		AgentInstanceUuid:  h.agent.InstanceID(),
		AgentVersion:       "v0.1.0-test",
		KubernetesVersion:  fakeKubeVersion,
		ClusterRoleSupport: true,
		NodeIp:             "10.0.0.7",
	}
	if diff := cmp.Diff(want, s.Hello, protocmp.Transform()); diff != "" {
		t.Errorf("Hello (-want +got):\n%s", diff)
	}
	if h.agent.InstanceID() == "" {
		t.Error("the instance uuid is empty")
	}
	if issued := h.tokens.Issued(); len(issued) != 1 || s.Authorization != "Bearer "+issued[0] {
		t.Errorf("Authorization = %q, want Bearer and the one issued token (%d issued)", s.Authorization, len(issued))
	}
	if got := h.tokens.Scopes(); len(got) != 1 || got[0] != "connect:agentHub" {
		t.Errorf("token scopes requested = %q, want [connect:agentHub]", got)
	}

	// The snapshot holds the inventory kinds, and nothing else.
	s.WaitFor(t, agenttest.IsLastSnapshotChunk, waitLong)
	res, _ := s.Snapshot()
	var got []string
	for _, r := range res {
		got = append(got, r.GetRef().GetKind()+" "+r.GetRef().GetNamespace()+"/"+r.GetRef().GetName())
		if !json.Valid(r.GetObject()) || r.GetRef().GetApiVersion() == "" {
			t.Errorf("resource %v: invalid object JSON or no apiVersion", r.GetRef())
		}
	}
	wantRefs := []string{"Deployment apps/web", "ReplicaSet apps/web-1", "Namespace /apps", "Service apps/web"}
	if diff := cmp.Diff(wantRefs, got); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}

	// Health and metrics say connected.
	srv := httptest.NewServer(h.agent.Handler())
	defer srv.Close()
	if code, body := httpGet(t, srv.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %q, want 200", code, body)
	}
	if _, body := httpGet(t, srv.URL+"/metrics"); !strings.Contains(body, "sortie_agent_connected 1") {
		t.Errorf("/metrics does not report sortie_agent_connected 1:\n%s", body)
	}
}

func TestHeartbeatsAndDeadStream(t *testing.T) {
	t.Parallel()
	const interval = 300 * time.Millisecond
	h := startAgent(t, setup{hubOpts: []agenttest.HubOption{agenttest.WithHeartbeat(interval)}})
	s := h.hub.WaitStream(1, waitLong)

	// The agent beats at the Welcome's interval (not its 20 s default).
	beats := s.WaitForCount(t, 4, agenttest.IsHeartbeat, 20*interval)
	for _, b := range beats {
		if b.GetHeartbeat().GetSendTime() == nil {
			t.Fatalf("heartbeat without send_time")
		}
	}
	// While the hub beats too, the stream stays: six more beats on it span twice the three
	// silent intervals after which the agent would give it up.
	s.WaitForCount(t, len(beats)+6, agenttest.IsHeartbeat, 20*interval)
	if n := len(h.hub.Streams()); n != 1 {
		t.Fatalf("%d streams while both sides beat, want 1", n)
	}

	// A hub gone silent is dead after three intervals: the agent reconnects.
	s.StopHeartbeats()
	s2 := h.hub.WaitStream(2, waitLong)
	if s2.Hello.GetAgentInstanceUuid() != s.Hello.GetAgentInstanceUuid() {
		t.Errorf("instance uuid changed across reconnects")
	}
}

func TestTLSHub(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		trustCA bool
	}{
		{name: "certificate trusted through the CA file", trustCA: true},
		{name: "certificate not trusted", trustCA: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := startAgent(t, setup{
				hubOpts: []agenttest.HubOption{agenttest.WithTLS()},
				configure: func(c *Config, hub *agenttest.Hub) {
					if tt.trustCA {
						c.CAFile = filepath.Join(t.TempDir(), "ca.pem")
						if err := os.WriteFile(c.CAFile, hub.CACertPEM(), 0o600); err != nil {
							t.Fatal(err)
						}
					}
				},
			})
			if !strings.HasPrefix(h.hub.URL(), "https://") {
				t.Fatalf("hub URL %s is not https", h.hub.URL())
			}
			if tt.trustCA {
				if s := h.hub.WaitStream(1, waitLong); s.Hello.GetAgentIdentifier() != testIdentifier {
					t.Errorf("Hello over TLS = %v", s.Hello)
				}
				return
			}
			waitFor(t, waitLong, "the failed certificate check to be logged", func() bool {
				return strings.Contains(h.logs.String(), "certificate signed by unknown authority")
			})
			if n := len(h.hub.Streams()); n != 0 {
				t.Errorf("the agent opened %d streams to a hub whose certificate it does not trust", n)
			}
		})
	}
}

func TestReconnectAfterHubRestart(t *testing.T) {
	t.Parallel()
	h := startAgent(t, setup{objects: []runtime.Object{obj("v1", "Namespace", "", "apps", nil)}})
	s1 := h.hub.WaitStream(1, waitLong)
	s1.WaitFor(t, agenttest.IsLastSnapshotChunk, waitLong)

	h.hub.Restart()
	waitFor(t, waitLong, "the agent to notice the lost stream", func() bool { return !h.agent.Healthy() })
	s2 := h.hub.WaitStream(2, waitLong)

	if diff := cmp.Diff(s1.Hello, s2.Hello, protocmp.Transform()); diff != "" {
		t.Errorf("the Hello after reconnecting differs (-first +second):\n%s", diff)
	}
	// A fresh snapshot follows every Hello.
	s2.WaitFor(t, agenttest.IsLastSnapshotChunk, waitLong)
	if res, _ := s2.Snapshot(); len(res) != 1 || res[0].GetRef().GetName() != "apps" {
		t.Errorf("snapshot after reconnect = %v, want namespace apps", res)
	}
	waitFor(t, waitLong, "the agent to be healthy again", h.agent.Healthy)
}

func TestGoodbyeTokenExpiredReconnectsAtOnceWithNewToken(t *testing.T) {
	t.Parallel()
	h := startAgent(t, setup{tune: func(a *Agent) {
		// A long backoff: reconnecting within it proves the token-expired path skips it.
		a.newBackoff = func() *Backoff {
			b := NewBackoff(func() float64 { return 0.5 })
			b.initial = 30 * time.Second
			return b
		}
	}})
	s1 := h.hub.WaitStream(1, waitLong)
	if err := s1.Goodbye(hubv1.Goodbye_REASON_TOKEN_EXPIRED, "token expired"); err != nil {
		t.Fatalf("send Goodbye: %v", err)
	}
	s2 := h.hub.WaitStream(2, waitLong)
	issued := h.tokens.Issued()
	if len(issued) != 2 {
		t.Fatalf("%d tokens issued, want 2 (one per stream)", len(issued))
	}
	if s1.Authorization != "Bearer "+issued[0] || s2.Authorization != "Bearer "+issued[1] {
		t.Errorf("the second stream does not use the new token")
	}
	// Other goodbyes wait for the backoff: the agent decides to wait it out, and has not
	// reconnected when it decides.
	if err := s2.Goodbye(hubv1.Goodbye_REASON_SERVER_SHUTTING_DOWN, "bye"); err != nil {
		t.Fatalf("send Goodbye: %v", err)
	}
	if d := h.waitReconnectDelay(t, 1); d < 24*time.Second {
		t.Errorf("reconnecting in %v after SERVER_SHUTTING_DOWN with a 30 s backoff, want about 30 s", d)
	}
	if n := len(h.hub.Streams()); n != 2 {
		t.Errorf("%d streams when the agent chose to wait out its backoff, want 2", n)
	}
}

func TestTokenReusedWithinItsLifetime(t *testing.T) {
	t.Parallel()
	h := startAgent(t, setup{})
	h.tokens.SetTTL(time.Hour)
	s1 := h.hub.WaitStream(1, waitLong)
	s1.Close()
	s2 := h.hub.WaitStream(2, waitLong)
	if s1.Authorization != s2.Authorization || h.tokens.Requests() != 1 {
		t.Errorf("a reconnect within the token's lifetime fetched a new token (%d requests)", h.tokens.Requests())
	}
}

func TestInvalidClientBacksOff(t *testing.T) {
	t.Parallel()
	h := startAgent(t, setup{rejectTokens: true})
	// The agent decides to wait at least minRejectedDelay before asking again.
	if d := h.waitReconnectDelay(t, 1); d < minRejectedDelay {
		t.Errorf("reconnecting in %v after invalid_client, want at least %v (back off, don't hammer)", d, minRejectedDelay)
	}
	if n := h.tokens.Requests(); n != 1 {
		t.Errorf("%d token requests when the agent chose to back off, want 1", n)
	}
	if !strings.Contains(h.logs.String(), "invalid_client") {
		t.Errorf("the logs do not say invalid_client:\n%s", h.logs.String())
	}
	srv := httptest.NewServer(h.agent.Handler())
	defer srv.Close()
	if code, body := httpGet(t, srv.URL+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "invalid_client") {
		t.Errorf("/healthz = %d %q, want 503 naming invalid_client", code, body)
	}
	if len(h.hub.Streams()) != 0 {
		t.Errorf("a stream was opened without a token")
	}
}

func TestResentCommandAnsweredWithoutActingTwice(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var deletes atomic.Int32
	h := startAgent(t, setup{
		objects: []runtime.Object{obj("v1", "ConfigMap", "apps", "settings", nil)},
		prepare: func(c *fakeCluster) {
			c.dyn.PrependReactor("delete", "configmaps", func(clienttesting.Action) (bool, runtime.Object, error) {
				if deletes.Add(1) == 1 {
					<-release
				}
				return false, nil, nil // on to the object tracker
			})
		},
	})
	s := h.hub.WaitStream(1, waitLong)
	cmd := &hubv1.Command{Id: "cmd-1", Action: &hubv1.Command_Delete{Delete: &hubv1.DeleteAction{
		Ref: &hubv1.ObjectReference{ApiVersion: "v1", Kind: "ConfigMap", Namespace: "apps", Name: "settings"}}}}
	// Sent twice while the first is running, once after it finished.
	for range 2 {
		if err := s.SendCommand(cmd); err != nil {
			t.Fatal(err)
		}
	}
	// The second copy arrives while the first runs: the delete is under way, and the agent
	// has taken the copy for a re-send.
	waitFor(t, waitLong, "the delete to start and the re-sent copy to be recognized", func() bool {
		return deletes.Load() == 1 && strings.Contains(h.logs.String(), `"msg":"command re-sent; answering with its result"`)
	})
	close(release)
	s.WaitForCount(t, 2, agenttest.ResultFor("cmd-1"), waitLong)
	if err := s.SendCommand(cmd); err != nil {
		t.Fatal(err)
	}
	results := s.WaitForCount(t, 3, agenttest.ResultFor("cmd-1"), waitLong)

	if n := deletes.Load(); n != 1 {
		t.Errorf("the delete ran %d times, want once", n)
	}
	for i, r := range results {
		if got := r.GetCommandResult(); got.GetOutcome() != hubv1.CommandResult_OUTCOME_SUCCEEDED || !proto.Equal(got, results[0].GetCommandResult()) {
			t.Errorf("result %d = %v, want the first result %v", i, got, results[0].GetCommandResult())
		}
	}
}

func TestGoodbyeOnShutdown(t *testing.T) {
	t.Parallel()
	h := startAgent(t, setup{})
	s := h.hub.WaitStream(1, waitLong)
	waitFor(t, waitLong, "the agent to be healthy", h.agent.Healthy)
	h.stop(t)
	bye := s.WaitFor(t, agenttest.IsGoodbye, time.Second).GetGoodbye()
	if bye.GetReason() != hubv1.Goodbye_REASON_AGENT_SHUTTING_DOWN {
		t.Errorf("Goodbye reason = %v, want AGENT_SHUTTING_DOWN", bye.GetReason())
	}
	select {
	case <-s.Done():
	case <-time.After(waitLong):
		t.Fatal("the stream did not end after the Goodbye")
	}
	if err := s.Err(); !errors.Is(err, io.EOF) {
		t.Errorf("the hub's side ended with %v, want a clean close (EOF)", err)
	}
	if h.agent.Healthy() {
		t.Error("Healthy after Run returned")
	}
}

// unknownField returns the encoding of a field number no version of the protocol uses, as
// a newer peer would send.
func unknownField() []byte {
	b := protowire.AppendTag(nil, 999, protowire.BytesType)
	return protowire.AppendBytes(b, []byte("from the future"))
}

func TestUnknownMessagesIgnored(t *testing.T) {
	t.Parallel()
	future := func() *hubv1.ConnectResponse {
		m := &hubv1.ConnectResponse{}
		m.ProtoReflect().SetUnknown(unknownField())
		return m
	}
	h := startAgent(t, setup{
		hubOpts: []agenttest.HubOption{agenttest.WithBeforeWelcome(func(*agenttest.Stream) *hubv1.ConnectResponse { return future() })},
		objects: []runtime.Object{obj("v1", "Namespace", "", "b", nil), obj("v1", "Namespace", "", "a", nil)},
	})
	s := h.hub.WaitStream(1, waitLong)
	if err := s.Send(future()); err != nil {
		t.Fatal(err)
	}
	// A command with an action this agent does not know.
	newAction := &hubv1.Command{Id: "cmd-new"}
	newAction.ProtoReflect().SetUnknown(unknownField())
	res := s.Do(t, newAction, waitLong)
	if res.GetOutcome() != hubv1.CommandResult_OUTCOME_FAILED || res.GetError().GetCode() != hubv1.CommandError_CODE_UNIMPLEMENTED {
		t.Errorf("result of an unknown action = %v, want FAILED UNIMPLEMENTED", res)
	}
	// The stream still works.
	res = s.Do(t, &hubv1.Command{Id: "cmd-ns", Action: &hubv1.Command_ListNamespaces{ListNamespaces: &hubv1.ListNamespacesAction{}}}, waitLong)
	if diff := cmp.Diff([]string{"a", "b"}, res.GetNamespaces().GetNames()); diff != "" {
		t.Errorf("namespaces (-want +got):\n%s", diff)
	}
	if n := len(h.hub.Streams()); n != 1 {
		t.Errorf("%d streams, want 1: unknown messages must not break the stream", n)
	}
}

func TestCommandErrors(t *testing.T) {
	t.Parallel()
	h := startAgent(t, setup{objects: []runtime.Object{obj("v1", "ConfigMap", "apps", "c", nil)}})
	s := h.hub.WaitStream(1, waitLong)
	ref := func(apiVersion, kind, ns, name string) *hubv1.ObjectReference {
		return &hubv1.ObjectReference{ApiVersion: apiVersion, Kind: kind, Namespace: ns, Name: name}
	}
	tests := []struct {
		name string
		cmd  *hubv1.Command
		want hubv1.CommandError_Code
	}{
		{"missing object", &hubv1.Command{Action: &hubv1.Command_Get{Get: &hubv1.GetAction{Ref: ref("v1", "ConfigMap", "apps", "nope")}}}, hubv1.CommandError_CODE_NOT_FOUND},
		{"unknown kind", &hubv1.Command{Action: &hubv1.Command_Get{Get: &hubv1.GetAction{Ref: ref("example.com/v1", "Widget", "apps", "w")}}}, hubv1.CommandError_CODE_NOT_FOUND},
		{"no namespace", &hubv1.Command{Action: &hubv1.Command_Get{Get: &hubv1.GetAction{Ref: ref("v1", "ConfigMap", "", "c")}}}, hubv1.CommandError_CODE_INVALID},
		{"no ref", &hubv1.Command{Action: &hubv1.Command_Delete{Delete: &hubv1.DeleteAction{}}}, hubv1.CommandError_CODE_INVALID},
		{"patch type unspecified", &hubv1.Command{Action: &hubv1.Command_Patch{Patch: &hubv1.PatchAction{Ref: ref("v1", "ConfigMap", "apps", "c"), Patch: []byte(`{}`)}}}, hubv1.CommandError_CODE_INVALID},
		{"bad label selector", &hubv1.Command{Action: &hubv1.Command_List{List: &hubv1.ListAction{Selector: &hubv1.ResourceSelector{ApiVersion: "v1", Kind: "ConfigMap", LabelSelector: "a in (("}}}}, hubv1.CommandError_CODE_INVALID},
		{"bad manifests", &hubv1.Command{Action: &hubv1.Command_Apply{Apply: &hubv1.ApplyAction{Manifests: []byte("kind: [")}}}, hubv1.CommandError_CODE_INVALID},
		{"watch without id", &hubv1.Command{Action: &hubv1.Command_Watch{Watch: &hubv1.WatchAction{}}}, hubv1.CommandError_CODE_INVALID},
	}
	for i, tt := range tests {
		tt.cmd.Id = "err-" + string(rune('a'+i))
		res := s.Do(t, tt.cmd, waitLong)
		if res.GetOutcome() != hubv1.CommandResult_OUTCOME_FAILED || res.GetError().GetCode() != tt.want || res.GetError().GetMessage() == "" {
			t.Errorf("%s: result %v, want FAILED %v with a message", tt.name, res, tt.want)
		}
	}
	// A deadline already passed.
	res := s.Do(t, &hubv1.Command{Id: "late", Deadline: timestamppbNow(-time.Second),
		Action: &hubv1.Command_ListNamespaces{ListNamespaces: &hubv1.ListNamespacesAction{}}}, waitLong)
	if res.GetError().GetCode() != hubv1.CommandError_CODE_DEADLINE_EXCEEDED {
		t.Errorf("late command: %v, want DEADLINE_EXCEEDED", res)
	}
}

func TestCommandsGetListPatchDelete(t *testing.T) {
	t.Parallel()
	h := startAgent(t, setup{objects: []runtime.Object{
		obj("v1", "ConfigMap", "apps", "one", map[string]any{"metadata": map[string]any{"labels": map[string]any{"tier": "web"}}}),
		obj("v1", "ConfigMap", "apps", "two", nil),
		obj("v1", "Secret", "apps", "creds", map[string]any{"data": map[string]any{"password": "aHVudGVyMg=="}}),
	}})
	s := h.hub.WaitStream(1, waitLong)
	cm := &hubv1.ObjectReference{ApiVersion: "v1", Kind: "ConfigMap", Namespace: "apps", Name: "one"}

	res := s.Do(t, &hubv1.Command{Id: "get", Action: &hubv1.Command_Get{Get: &hubv1.GetAction{Ref: cm}}}, waitLong)
	if rs := res.GetResources().GetResources(); len(rs) != 1 || rs[0].GetRef().GetName() != "one" {
		t.Errorf("get: %v", res)
	}
	res = s.Do(t, &hubv1.Command{Id: "list", Action: &hubv1.Command_List{List: &hubv1.ListAction{Selector: &hubv1.ResourceSelector{
		ApiVersion: "v1", Kind: "ConfigMap", Namespace: "apps", LabelSelector: "tier=web"}}}}, waitLong)
	if rs := res.GetResources().GetResources(); len(rs) != 1 || rs[0].GetRef().GetName() != "one" || rs[0].GetRef().GetKind() != "ConfigMap" {
		t.Errorf("list tier=web: %v", res)
	}
	res = s.Do(t, &hubv1.Command{Id: "patch", Action: &hubv1.Command_Patch{Patch: &hubv1.PatchAction{
		Ref: cm, Type: hubv1.PatchAction_TYPE_MERGE, Patch: []byte(`{"data":{"k":"v"}}`)}}}, waitLong)
	if rs := res.GetResources().GetResources(); len(rs) != 1 || !bytes.Contains(rs[0].GetObject(), []byte(`"k":"v"`)) {
		t.Errorf("patch: %v", res)
	}
	for _, id := range []string{"delete-1", "delete-2"} { // the second finds nothing: still a success
		res = s.Do(t, &hubv1.Command{Id: id, Action: &hubv1.Command_Delete{Delete: &hubv1.DeleteAction{Ref: cm}}}, waitLong)
		if res.GetOutcome() != hubv1.CommandResult_OUTCOME_SUCCEEDED {
			t.Errorf("%s: %v", id, res)
		}
	}
	// A Secret read through a command comes without its data.
	res = s.Do(t, &hubv1.Command{Id: "secret", Action: &hubv1.Command_Get{Get: &hubv1.GetAction{
		Ref: &hubv1.ObjectReference{ApiVersion: "v1", Kind: "Secret", Namespace: "apps", Name: "creds"}}}}, waitLong)
	if rs := res.GetResources().GetResources(); len(rs) != 1 || bytes.Contains(rs[0].GetObject(), []byte("aHVudGVyMg")) || bytes.Contains(rs[0].GetObject(), []byte(`"data"`)) {
		t.Errorf("secret get leaks data: %v", res)
	}
}

func TestResultLargerThanTheHubAccepts(t *testing.T) {
	t.Parallel()
	var objs []runtime.Object
	for i := range 50 {
		objs = append(objs, obj("v1", "ConfigMap", "apps", "cm-"+strings.Repeat("x", 40)+string(rune('A'+i)), nil))
	}
	h := startAgent(t, setup{hubOpts: []agenttest.HubOption{agenttest.WithMaxMessageBytes(4096)}, objects: objs})
	s := h.hub.WaitStream(1, waitLong)
	res := s.Do(t, &hubv1.Command{Id: "big", Action: &hubv1.Command_List{List: &hubv1.ListAction{
		Selector: &hubv1.ResourceSelector{ApiVersion: "v1", Kind: "ConfigMap"}}}}, waitLong)
	if res.GetError().GetCode() != hubv1.CommandError_CODE_INVALID || !strings.Contains(res.GetError().GetMessage(), "more than the hub accepts") {
		t.Errorf("oversized result: %v, want FAILED INVALID saying it is too large", res)
	}
}

func TestInventoryDeltasAndRolloutsCRD(t *testing.T) {
	t.Parallel()
	h := startAgent(t, setup{
		objects: []runtime.Object{obj("v1", "Namespace", "", "apps", nil)},
		tune:    func(a *Agent) { a.inv.crdCheckEvery = 50 * time.Millisecond },
	})
	s := h.hub.WaitStream(1, waitLong)
	s.WaitFor(t, agenttest.IsLastSnapshotChunk, waitLong)
	ctx := context.Background()
	deployments := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}

	d := obj("apps/v1", "Deployment", "apps", "web", map[string]any{"metadata": map[string]any{
		"managedFields": []any{map[string]any{"manager": "kubectl"}}}})
	if _, err := h.cluster.dyn.Resource(deployments).Namespace("apps").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	up := s.WaitFor(t, upsertOf("Deployment", "web"), 2*time.Second)
	for _, r := range up.GetInventoryDelta().GetUpserts() {
		if bytes.Contains(r.GetObject(), []byte("managedFields")) {
			t.Errorf("an upsert carries managedFields: %s", r.GetObject())
		}
	}
	if err := h.cluster.dyn.Resource(deployments).Namespace("apps").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.WaitFor(t, func(m *hubv1.ConnectRequest) bool {
		for _, ref := range m.GetInventoryDelta().GetDeletions() {
			if ref.GetKind() == "Deployment" && ref.GetName() == "web" && ref.GetNamespace() == "apps" {
				return true
			}
		}
		return false
	}, 2*time.Second)

	// The Rollouts CRD appears: Rollouts join the inventory.
	rollouts := schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}
	if _, err := h.cluster.dyn.Resource(rollouts).Namespace("apps").Create(ctx, obj("argoproj.io/v1alpha1", "Rollout", "apps", "canary", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.cluster.disco.addResources(rolloutResources)
	s.WaitFor(t, upsertOf("Rollout", "canary"), waitLong)
}

func upsertOf(kind, name string) func(*hubv1.ConnectRequest) bool {
	return func(m *hubv1.ConnectRequest) bool {
		for _, r := range m.GetInventoryDelta().GetUpserts() {
			if r.GetRef().GetKind() == kind && r.GetRef().GetName() == name {
				return true
			}
		}
		return false
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	h := startAgent(t, setup{objects: []runtime.Object{
		obj("v1", "ConfigMap", "apps", "a", map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "x"}}}),
		obj("v1", "ConfigMap", "apps", "other", nil),
	}})
	s := h.hub.WaitStream(1, waitLong)
	res := s.Do(t, &hubv1.Command{Id: "w", Action: &hubv1.Command_Watch{Watch: &hubv1.WatchAction{WatchId: "w1",
		Selectors: []*hubv1.ResourceSelector{{ApiVersion: "v1", Kind: "ConfigMap", Namespace: "apps", LabelSelector: "app=x"}}}}}, waitLong)
	if res.GetOutcome() != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		t.Fatalf("watch: %v", res)
	}
	event := func(typ hubv1.ResourceEvent_Type, name string) func(*hubv1.ConnectRequest) bool {
		return func(m *hubv1.ConnectRequest) bool {
			e := m.GetResourceEvent()
			return e.GetWatchId() == "w1" && e.GetType() == typ && e.GetResource().GetRef().GetName() == name
		}
	}
	// The existing object is ADDED before the watch's result.
	var sawAdded bool
	for _, m := range s.Messages() {
		if event(hubv1.ResourceEvent_TYPE_ADDED, "a")(m) {
			sawAdded = true
		}
		if agenttest.ResultFor("w")(m) {
			break
		}
	}
	if !sawAdded {
		t.Error("no ADDED event for the existing object before the watch's result")
	}
	ctx := context.Background()
	cms := h.cluster.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace("apps")
	if _, err := cms.Create(ctx, obj("v1", "ConfigMap", "apps", "b", map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "x"}}}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.WaitFor(t, event(hubv1.ResourceEvent_TYPE_ADDED, "b"), waitLong)
	if err := cms.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.WaitFor(t, event(hubv1.ResourceEvent_TYPE_DELETED, "a"), waitLong)
	if n := s.Count(event(hubv1.ResourceEvent_TYPE_ADDED, "other")); n != 0 {
		t.Errorf("an object outside the selector was reported")
	}

	res = s.Do(t, &hubv1.Command{Id: "uw", Action: &hubv1.Command_Unwatch{Unwatch: &hubv1.UnwatchAction{WatchId: "w1"}}}, waitLong)
	if res.GetOutcome() != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		t.Fatalf("unwatch: %v", res)
	}
	if _, err := cms.Create(ctx, obj("v1", "ConfigMap", "apps", "c", map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "x"}}}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A second watch, started once "c" exists, reports it: by then a w1 still running would
	// have had c's event for a whole command round trip, as Kubernetes hands an event to
	// every open watch when the object is created.
	res = s.Do(t, &hubv1.Command{Id: "w-2", Action: &hubv1.Command_Watch{Watch: &hubv1.WatchAction{WatchId: "w2",
		Selectors: []*hubv1.ResourceSelector{{ApiVersion: "v1", Kind: "ConfigMap", Namespace: "apps", LabelSelector: "app=x"}}}}}, waitLong)
	if res.GetOutcome() != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		t.Fatalf("second watch: %v", res)
	}
	s.WaitFor(t, func(m *hubv1.ConnectRequest) bool {
		e := m.GetResourceEvent()
		return e.GetWatchId() == "w2" && e.GetType() == hubv1.ResourceEvent_TYPE_ADDED && e.GetResource().GetRef().GetName() == "c"
	}, waitLong)
	if n := s.Count(event(hubv1.ResourceEvent_TYPE_ADDED, "c")); n != 0 {
		t.Errorf("an event of w1 arrived after unwatch")
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use (the agent's log).
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func timestamppbNow(offset time.Duration) *timestamppb.Timestamp {
	return timestamppb.New(time.Now().Add(offset))
}

// waitReconnectDelay waits for the agent's n-th decision to wait before reconnecting (its
// "reconnecting" log record) and returns the delay it chose.
func (h *harness) waitReconnectDelay(t *testing.T, n int) time.Duration {
	t.Helper()
	var delays []time.Duration
	waitFor(t, waitLong, fmt.Sprintf("reconnect decision %d", n), func() bool {
		delays = delays[:0]
		for line := range strings.SplitSeq(h.logs.String(), "\n") {
			var rec struct {
				Msg string        `json:"msg"`
				In  time.Duration `json:"in"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "reconnecting" {
				delays = append(delays, rec.In)
			}
		}
		return len(delays) >= n
	})
	return delays[n-1]
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchResentAfterReconnect: a Watch the hub sends again on a new stream starts the
// watch there, though its result is remembered; sent again while it runs, it is answered
// without starting it twice.
func TestWatchResentAfterReconnect(t *testing.T) {
	t.Parallel()
	labels := map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "x"}}}
	h := startAgent(t, setup{objects: []runtime.Object{obj("v1", "ConfigMap", "apps", "a", labels)}})
	watch := &hubv1.Command{Id: "w", Action: &hubv1.Command_Watch{Watch: &hubv1.WatchAction{WatchId: "w1",
		Selectors: []*hubv1.ResourceSelector{{ApiVersion: "v1", Kind: "ConfigMap", Namespace: "apps", LabelSelector: "app=x"}}}}}
	event := func(typ hubv1.ResourceEvent_Type, name string) func(*hubv1.ConnectRequest) bool {
		return func(m *hubv1.ConnectRequest) bool {
			e := m.GetResourceEvent()
			return e.GetWatchId() == "w1" && e.GetType() == typ && e.GetResource().GetRef().GetName() == name
		}
	}
	s1 := h.hub.WaitStream(1, waitLong)
	if res := s1.Do(t, watch, waitLong); res.GetOutcome() != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		t.Fatalf("watch: %v", res)
	}
	s1.WaitFor(t, event(hubv1.ResourceEvent_TYPE_ADDED, "a"), waitLong)

	h.hub.Restart()
	s2 := h.hub.WaitStream(2, waitLong)
	if res := s2.Do(t, watch, waitLong); res.GetOutcome() != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		t.Fatalf("watch re-sent on the new stream: %v", res)
	}
	// The watch runs on the new stream: it lists again, then reports changes.
	s2.WaitFor(t, event(hubv1.ResourceEvent_TYPE_ADDED, "a"), waitLong)
	cms := h.cluster.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace("apps")
	if _, err := cms.Create(context.Background(), obj("v1", "ConfigMap", "apps", "b", labels), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s2.WaitFor(t, event(hubv1.ResourceEvent_TYPE_ADDED, "b"), waitLong)

	// Sent once more while it runs: the remembered result, no second listing.
	if err := s2.SendCommand(watch); err != nil {
		t.Fatal(err)
	}
	results := s2.WaitForCount(t, 2, agenttest.ResultFor("w"), waitLong)
	if !proto.Equal(results[0].GetCommandResult(), results[1].GetCommandResult()) {
		t.Errorf("second result %v, want the first %v", results[1].GetCommandResult(), results[0].GetCommandResult())
	}
	if n := s2.Count(event(hubv1.ResourceEvent_TYPE_ADDED, "a")); n != 1 {
		t.Errorf("object a was ADDED %d times on the new stream, want once (the watch started twice)", n)
	}
}

// TestGoodbyeCredentialRevokedBacksOff: a hub saying the credential was revoked is not
// pressed with reconnects: the agent drops its token and waits at least minRejectedDelay.
func TestGoodbyeCredentialRevokedBacksOff(t *testing.T) {
	t.Parallel()
	h := startAgent(t, setup{})
	h.tokens.SetTTL(time.Hour)
	s := h.hub.WaitStream(1, waitLong)
	if err := s.Goodbye(hubv1.Goodbye_REASON_CREDENTIAL_REVOKED, "the stream's credential was deleted"); err != nil {
		t.Fatalf("send Goodbye: %v", err)
	}
	if d := h.waitReconnectDelay(t, 1); d < minRejectedDelay {
		t.Errorf("reconnecting in %v after CREDENTIAL_REVOKED, want at least %v", d, minRejectedDelay)
	}
	if n := len(h.hub.Streams()); n != 1 {
		t.Errorf("%d streams when the agent chose to back off, want 1", n)
	}
	if !strings.Contains(h.logs.String(), "the hub revoked the agent's credential") {
		t.Errorf("the logs do not say the credential was revoked:\n%s", h.logs.String())
	}
}
