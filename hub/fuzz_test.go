package hub

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/hub/internal/inventory"
)

// offlineStream registers a stream that has no connection, for feeding messages straight to
// the hub's handling.
func offlineStream(h *Hub, agent string) *stream {
	s := &stream{
		id: uuid.NewString(), key: agentKey{tenant: tenantA, agent: agent},
		writer: make(chan struct{}, 1), stop: make(chan struct{}),
		inflight: map[*pending]struct{}{}, log: h.log, slot: -1,
	}
	s.agent = Agent{AgentIdentifier: agent, StreamID: s.id, OrgID: tenantA.OrgID, EnvID: tenantA.EnvID}
	h.register(s)
	return s
}

// FuzzAgentMessage feeds arbitrary agent messages to a registered stream: the hub must not
// panic, must keep the stream's agent, and must never cache a Secret.
func FuzzAgentMessage(f *testing.F) {
	secret := res("v1", "Secret", "ns", "s")
	hidden := res("v1", "ConfigMap", "ns", "c")
	hidden.Object = []byte(`{"kind":"Secret","data":{}}`)
	for _, m := range []*hubv1.ConnectRequest{
		helloMsg("fuzz", uuid.NewString()),
		helloMsg("other", "nope"),
		{Message: &hubv1.ConnectRequest_Heartbeat{Heartbeat: &hubv1.Heartbeat{}}},
		{Message: &hubv1.ConnectRequest_CommandResult{CommandResult: &hubv1.CommandResult{CommandId: "c1"}}},
		snapshot("s", true, res("v1", "Namespace", "", "default"), secret, hidden),
		snapshot("s", false, res("apps/v1", "Deployment", "ns", "d")),
		delta([]*hubv1.Resource{secret, res("apps/v1", "Deployment", "ns", "d")}, &hubv1.ObjectReference{Kind: "Deployment"}),
		{Message: &hubv1.ConnectRequest_ResourceEvent{ResourceEvent: &hubv1.ResourceEvent{WatchId: "w"}}},
		{Message: &hubv1.ConnectRequest_Goodbye{Goodbye: &hubv1.Goodbye{}}},
		unknownKind(),
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg := &hubv1.ConnectRequest{}
		if proto.Unmarshal(data, msg) != nil {
			return
		}
		h := New(testLogger(), Config{MaxMessageBytes: 1 << 20})
		if hello := msg.GetHello(); hello != nil && checkHello(hello) == "" {
			if !ValidIdentifier(hello.AgentIdentifier) {
				t.Fatalf("accepted Hello with identifier %q", hello.AgentIdentifier)
			}
		}
		s := offlineStream(h, "fuzz")
		done, err := h.handle(s, msg)
		if done != s.closing {
			t.Fatalf("handle returned done=%v but the stream closing=%v", done, s.closing)
		}
		if err != nil && !done {
			t.Fatalf("handle returned an error without closing: %v", err)
		}
		if s.key.agent != "fuzz" {
			t.Fatalf("the stream's agent changed to %q", s.key.agent)
		}
		cached, _ := h.shared.List(context.Background(), s.key.inventoryKey(), inventory.Filter{})
		for _, r := range cached {
			if isSecret(r) {
				t.Fatalf("a Secret was cached: %v", r.Ref)
			}
		}
	})
}
