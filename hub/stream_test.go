package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
	"k8s.io/client-go/rest"

	"github.com/sortie-dev/sortie/agent"
	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/identity"
)

func TestHelloWelcome(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 300 * time.Millisecond, MaxMessageBytes: 1 << 20}, serverOptions{})

	before := time.Now()
	a := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
	w := a.hello("prod-cluster")
	if w.HubInstanceUuid != hs.hub.InstanceID() {
		t.Errorf("Welcome.hub_instance_uuid = %q, want %q", w.HubInstanceUuid, hs.hub.InstanceID())
	}
	if _, err := uuid.Parse(w.StreamId); err != nil {
		t.Errorf("Welcome.stream_id %q is not a UUID", w.StreamId)
	}
	if got := w.HeartbeatInterval.AsDuration(); got != 300*time.Millisecond {
		t.Errorf("Welcome.heartbeat_interval = %v, want 300ms", got)
	}
	if w.MaxMessageBytes != 1<<20 {
		t.Errorf("Welcome.max_message_bytes = %d, want %d", w.MaxMessageBytes, 1<<20)
	}

	agents := agentsOf(t, hs.hub, tenantA, "")
	want := []Agent{{
		AgentIdentifier: "prod-cluster", AgentInstanceUUID: a.instance, AgentVersion: "1.2.3",
		ClientID: "client-" + tenantA.EnvID, OrgID: tenantA.OrgID, EnvID: tenantA.EnvID,
		HubInstanceUUID: hs.hub.InstanceID(), StreamID: w.StreamId, IPAddress: "127.0.0.1",
		NodeIP: "10.0.0.7", K8sClusterRoleSupport: true, KubernetesVersion: "v1.37.2",
	}}
	if diff := cmp.Diff(want, agents, cmpopts.IgnoreFields(Agent{}, "ConnectedAt", "LastHeartbeatAt")); diff != "" {
		t.Fatalf("Agents (-want +got):\n%s", diff)
	}
	if at := agents[0].ConnectedAt; at.Before(before) || at.After(time.Now()) {
		t.Errorf("ConnectedAt %v is not the time of the Hello", at)
	}

	// The hub sends heartbeats; the agent's heartbeats update LastHeartbeatAt.
	select {
	case m := <-a.in:
		if m.GetHeartbeat() == nil || m.GetHeartbeat().SendTime == nil {
			t.Fatalf("got %v, want a Heartbeat with send_time", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no Heartbeat from the hub")
	}
	first := agents[0].LastHeartbeatAt
	a.mustSend(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Heartbeat{Heartbeat: &hubv1.Heartbeat{}}})
	eventually(t, 5*time.Second, "LastHeartbeatAt to advance", func() bool {
		got := agentsOf(t, hs.hub, tenantA, "prod-cluster")
		return len(got) == 1 && got[0].LastHeartbeatAt.After(first)
	})
	if n := hs.metric(t, "sortie_hub_streams"); n != 1 {
		t.Errorf("sortie_hub_streams = %v, want 1", n)
	}
}

// unknownKind is an agent message of a kind this hub does not know (field 99 of the oneof),
// as a newer agent would send.
func unknownKind() *hubv1.ConnectRequest {
	m := &hubv1.ConnectRequest{}
	raw := protowire.AppendTag(nil, 99, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte("from the future"))
	m.ProtoReflect().SetUnknown(raw)
	return m
}

func TestProtocolViolations(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second, MaxMessageBytes: 64 << 10},
		serverOptions{opts: []Option{withHelloTimeout(300 * time.Millisecond)}})
	big := &hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_InventorySnapshot{InventorySnapshot: &hubv1.InventorySnapshot{
		SnapshotId: "s", Last: true,
		Resources: []*hubv1.Resource{{Ref: &hubv1.ObjectReference{ApiVersion: "v1", Kind: "ConfigMap", Name: "big"}, Object: make([]byte, 100<<10)}},
	}}}
	tests := []struct {
		name    string
		hello   bool // say a valid Hello first
		send    []*hubv1.ConnectRequest
		message string
	}{
		{name: "no Hello in time", message: "no Hello within 300ms of opening the stream"},
		{name: "heartbeat before Hello", send: []*hubv1.ConnectRequest{{Message: &hubv1.ConnectRequest_Heartbeat{Heartbeat: &hubv1.Heartbeat{}}}},
			message: "the first message must be a Hello, not heartbeat"},
		{name: "result before Hello", send: []*hubv1.ConnectRequest{{Message: &hubv1.ConnectRequest_CommandResult{CommandResult: &hubv1.CommandResult{CommandId: "x"}}}},
			message: "the first message must be a Hello, not command_result"},
		{name: "identifier with a space", send: []*hubv1.ConnectRequest{helloMsg("bad id", uuid.NewString())},
			message: "hello.agent_identifier: does not match regex pattern `^[a-zA-Z0-9_-]+$`"},
		{name: "identifier too long", send: []*hubv1.ConnectRequest{helloMsg(strings.Repeat("a", 64), uuid.NewString())},
			message: "hello.agent_identifier: must be at most 63 characters"},
		{name: "identifier missing", send: []*hubv1.ConnectRequest{helloMsg("", uuid.NewString())},
			message: "hello.agent_identifier: value is required"},
		{name: "instance not a UUID", send: []*hubv1.ConnectRequest{helloMsg("ok", "not-a-uuid")},
			message: "hello.agent_instance_uuid: must be a valid UUID"},
		{name: "node IP not an IP", send: []*hubv1.ConnectRequest{func() *hubv1.ConnectRequest {
			m := helloMsg("ok", uuid.NewString())
			m.GetHello().NodeIp = "node-1"
			return m
		}()}, message: "hello.node_ip: must be a valid IP address"},
		{name: "oversized message", hello: true, send: []*hubv1.ConnectRequest{big},
			message: "message exceeds max_message_bytes (65536 bytes)"},
		{name: "Hello for another identifier", hello: true, send: []*hubv1.ConnectRequest{helloMsg("other", uuid.NewString())},
			message: `a stream carries one agent: got a Hello for "other" on the stream of "victim"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A bystander of the same tenant holds a command from before the bad client dials
			// until after its Goodbye, and answers it then: the refusal touched nothing else.
			name := "bystander-" + strings.ReplaceAll(tc.name, " ", "-")
			got, gate := make(chan struct{}, 1), make(chan struct{})
			var once sync.Once
			release := func() { once.Do(func() { close(gate) }) }
			t.Cleanup(release)
			connectAgent(t, hs, iss, tenantA, name, func(cmd *hubv1.Command) *hubv1.CommandResult {
				got <- struct{}{}
				<-gate
				return succeed(cmd)
			})
			sent := make(chan error, 1)
			go func() {
				res, err := hs.hub.Send(context.Background(), tenantA, name, listNamespaces())
				if err == nil && res.Outcome != hubv1.CommandResult_OUTCOME_SUCCEEDED {
					err = fmt.Errorf("outcome %v", res.Outcome)
				}
				sent <- err
			}()
			select {
			case <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("the bystander never received its command")
			}

			a := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
			if tc.hello {
				a.hello("victim")
			}
			for _, m := range tc.send {
				a.mustSend(m)
			}
			if len(tc.send) == 0 && !tc.hello {
				// Open the stream without sending anything: send headers only.
				if err := a.stream.Send(nil); err != nil {
					t.Fatal(err)
				}
			}
			a.startReading()
			a.expectGoodbye(hubv1.Goodbye_REASON_PROTOCOL_ERROR, tc.message, connect.CodeInvalidArgument)

			if got := agentsOf(t, hs.hub, tenantA, name); len(got) != 1 {
				t.Fatalf("Agents(%s) = %+v after a bad client's refusal, want its one stream", name, got)
			}
			release()
			if err := <-sent; err != nil {
				t.Fatalf("the bystander's command, in flight while a bad client was refused: %v", err)
			}
		})
	}
}

// TestToleratedMessages: unknown kinds, a repeated Hello and results nobody waits for are
// ignored; the stream keeps working.
func TestToleratedMessages(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second}, serverOptions{})
	a := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
	a.mustSend(unknownKind()) // before the Hello, too
	a.hello("tolerant")
	for _, m := range []*hubv1.ConnectRequest{
		unknownKind(),
		helloMsg("tolerant", a.instance),
		{Message: &hubv1.ConnectRequest_CommandResult{CommandResult: &hubv1.CommandResult{CommandId: "never-sent"}}},
		{Message: &hubv1.ConnectRequest_ResourceEvent{ResourceEvent: &hubv1.ResourceEvent{WatchId: "w"}}},
	} {
		a.mustSend(m)
	}
	a.serve(succeed, 0, nil)
	res, err := hs.hub.Send(context.Background(), tenantA, "tolerant", listNamespaces())
	if err != nil || res.Outcome != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		t.Fatalf("Send = %v, %v", res, err)
	}
}

// TestRawHandler: Connect also works mounted without Hub.Handler, and enforces
// MaxMessageBytes itself when the transport has no read limit.
func TestRawHandler(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second, MaxMessageBytes: 64 << 10}, serverOptions{raw: true})
	connectAgent(t, hs, iss, tenantA, "raw", succeed)
	res, err := hs.hub.Send(context.Background(), tenantA, "raw", listNamespaces())
	if err != nil || res.Outcome != hubv1.CommandResult_OUTCOME_SUCCEEDED {
		t.Fatalf("Send = %v, %v", res, err)
	}
	big := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
	big.hello("big")
	big.mustSend(snapshot("s", true, &hubv1.Resource{Ref: &hubv1.ObjectReference{ApiVersion: "v1", Kind: "ConfigMap", Name: "big"},
		Object: make([]byte, 100<<10)}))
	big.expectGoodbye(hubv1.Goodbye_REASON_PROTOCOL_ERROR, "bytes exceeds max_message_bytes (65536 bytes)", connect.CodeInvalidArgument)
}

// TestAuthRequired: without a verified principal the hub refuses the stream, and the auth
// layer refuses a token without scope connect:agentHub.
func TestAuthRequired(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	tests := []struct {
		name   string
		noAuth bool
		scope  string
		want   connect.Code
	}{
		{name: "no principal", noAuth: true, scope: identity.ScopeConnectAgentHub, want: connect.CodeUnauthenticated},
		{name: "wrong scope", scope: identity.ScopeReadInfrastructure, want: connect.CodePermissionDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hs := startHub(t, iss, Config{}, serverOptions{noAuth: tc.noAuth})
			a := dial(t, hs.URL, iss.token(t, tenantA, tc.scope), agentOptions{})
			// The hub may refuse the stream before the Hello is written: the write then fails
			// with EOF, and the refusal is what the read reports.
			_ = a.send(helloMsg("x", a.instance))
			a.startReading()
			if _, err := a.nextOrEnd(5 * time.Second); connect.CodeOf(err) != tc.want {
				t.Fatalf("stream ended with %v, want %v", err, tc.want)
			}
			if got := agentsOf(t, hs.hub, tenantA, ""); len(got) != 0 {
				t.Fatalf("Agents = %+v, want none", got)
			}
		})
	}
}

// TestIdentifierRuleSharedWithAgent: an identifier the hub refuses in a Hello is refused by
// the agent at its start, before it dials, with the hub's very message; and the manifest
// route's check (CheckIdentifier) says the same.
func TestIdentifierRuleSharedWithAgent(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second, MaxMessageBytes: 1 << 20}, serverOptions{})
	for _, id := range []string{strings.Repeat("a", 64), "prod/eu", ""} {
		t.Run(fmt.Sprintf("%.10q", id), func(t *testing.T) {
			t.Parallel()
			a := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
			a.mustSend(helloMsg(id, uuid.NewString()))
			a.startReading()
			var refusal string
			for refusal == "" {
				m, err := a.nextOrEnd(10 * time.Second)
				if err != nil {
					t.Fatalf("stream ended without a Goodbye: %v", err)
				}
				if gb := m.GetGoodbye(); gb != nil {
					if gb.Reason != hubv1.Goodbye_REASON_PROTOCOL_ERROR || gb.Message == "" {
						t.Fatalf("Goodbye %s %q, want a protocol error with a message", gb.Reason, gb.Message)
					}
					refusal = gb.Message
				}
			}

			_, err := agent.New(slog.New(slog.DiscardHandler), agent.Config{
				HubURL: hs.URL, ClientID: "id", ClientSecret: "secret", AgentIdentifier: id,
				RESTConfig: &rest.Config{Host: "https://127.0.0.1:6443"},
			})
			if !errors.Is(err, agent.ErrInvalidIdentifier) || !strings.HasSuffix(err.Error(), ": "+refusal) {
				t.Errorf("agent.New with identifier %.10q = %v, want ErrInvalidIdentifier ending in the hub's %q", id, err, refusal)
			}
			if err := CheckIdentifier(id); err == nil || err.Error() != refusal {
				t.Errorf("CheckIdentifier(%.10q) = %v, want %q", id, err, refusal)
			}
		})
	}
}

// One address holds at most MaxStreamsPerIP streams; the next is refused before its Hello,
// and a closed stream gives its slot back.
func TestMaxStreamsPerIP(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{MaxStreamsPerIP: 2}, serverOptions{})
	tok := iss.token(t, tenantA, identity.ScopeConnectAgentHub)
	first := dial(t, hs.URL, tok, agentOptions{})
	first.hello("capped")
	second := dial(t, hs.URL, tok, agentOptions{})
	second.hello("capped")

	third := dial(t, hs.URL, tok, agentOptions{})
	_ = third.send(helloMsg("capped", third.instance))
	third.startReading()
	_, err := third.nextOrEnd(5 * time.Second)
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "at most 2 per address") {
		t.Fatalf("third stream from one address ended with %v, want ResourceExhausted naming the cap", err)
	}
	if got := len(agentsOf(t, hs.hub, tenantA, "capped")); got != 2 {
		t.Fatalf("%d streams registered, want the 2 the cap allows", got)
	}
	if got := hs.metric(t, "sortie_hub_refused_streams_total"); got != 1 {
		t.Errorf("sortie_hub_refused_streams_total = %v, want 1", got)
	}

	first.close()
	eventually(t, 5*time.Second, "the closed stream's slot to come back", func() bool {
		return len(agentsOf(t, hs.hub, tenantA, "capped")) == 1
	})
	fourth := dial(t, hs.URL, tok, agentOptions{})
	fourth.hello("capped")
}

// TestHeartbeatTimeout: the hub keeps sending Heartbeats to an agent that reads but sends
// nothing, and after three silent intervals ends its stream with Goodbye HEARTBEAT_TIMEOUT,
// while an agent that keeps sending heartbeats on the same hub stays.
func TestHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	const interval = 300 * time.Millisecond
	hs := startHub(t, iss, Config{HeartbeatInterval: interval}, serverOptions{})
	alive := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
	alive.hello("alive")
	alive.startReading()
	stopBeating := make(chan struct{})
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		tick := time.NewTicker(interval / 2)
		defer tick.Stop()
		for {
			select {
			case <-stopBeating:
				return
			case <-tick.C:
				_ = alive.send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Heartbeat{Heartbeat: &hubv1.Heartbeat{}}})
			}
		}
	}()
	defer func() { close(stopBeating); <-beating }()

	silent := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
	silent.hello("silent")
	silent.startReading()
	heartbeats := 0
	for heartbeats < 2 {
		select {
		case m := <-silent.in:
			if m.GetHeartbeat() == nil {
				t.Fatalf("got %v before two Heartbeats, want Heartbeats", m)
			}
			heartbeats++
		case <-time.After(10 * time.Second):
			t.Fatalf("%d Heartbeats from the hub in 10s, want 2", heartbeats)
		}
	}
	silent.expectGoodbye(hubv1.Goodbye_REASON_HEARTBEAT_TIMEOUT, "(3 heartbeat intervals)", connect.CodeDeadlineExceeded)
	if got := agentsOf(t, hs.hub, tenantA, "silent"); len(got) != 0 {
		t.Errorf("the silent agent is still listed: %+v", got)
	}
	if got := agentsOf(t, hs.hub, tenantA, "alive"); len(got) != 1 {
		t.Errorf("the agent sending heartbeats is listed %d times, want once", len(got))
	}
	if n := hs.metric(t, "sortie_hub_streams_closed_total", "reason", "heartbeat_timeout"); n != 1 {
		t.Errorf("streams closed for heartbeat_timeout = %v, want 1", n)
	}
}

// TestStuckWrite: a write the agent does not read for three heartbeat intervals is cut, and
// the stream ends as too slow, although the agent keeps sending heartbeats; the command on
// the wire fails with ErrStreamLost, marked as of unknown outcome.
func TestStuckWrite(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	const interval = 200 * time.Millisecond
	hs := startHub(t, iss, Config{HeartbeatInterval: interval}, serverOptions{})
	a := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{smallWindow: true})
	a.helloWithoutReading("stuck")
	stopBeating := make(chan struct{})
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		tick := time.NewTicker(interval / 2)
		defer tick.Stop()
		for {
			select {
			case <-stopBeating:
				return
			case <-tick.C:
				if a.send(&hubv1.ConnectRequest{Message: &hubv1.ConnectRequest_Heartbeat{Heartbeat: &hubv1.Heartbeat{}}}) != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stopBeating); <-beating }()

	_, err := hs.hub.Send(context.Background(), tenantA, "stuck", &hubv1.Command{Id: "big",
		Action: &hubv1.Command_Apply{Apply: &hubv1.ApplyAction{Manifests: randomBytes(256 << 10)}}})
	if !errors.Is(err, ErrStreamLost) || !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Send of a command the agent never reads: %v, want ErrStreamLost and ErrOutcomeUnknown", err)
	}
	eventually(t, 5*time.Second, "the stuck agent to be unlisted", func() bool { return len(agentsOf(t, hs.hub, tenantA, "stuck")) == 0 })
	if n := hs.metric(t, "sortie_hub_dropped_streams_total"); n != 1 {
		t.Errorf("sortie_hub_dropped_streams_total = %v, want 1", n)
	}
	if n := hs.metric(t, "sortie_hub_streams_closed_total", "reason", "too_slow"); n != 1 {
		t.Errorf("streams closed as too_slow = %v, want 1", n)
	}
}
