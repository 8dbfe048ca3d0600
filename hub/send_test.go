package hub

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

func TestSendRoundTrip(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second}, serverOptions{})
	seen := make(chan *hubv1.Command, 1)
	a := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
	a.hello("prod")
	a.serve(succeed, 0, seen)

	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
	defer cancel()
	wantDeadline, _ := ctx.Deadline()
	cmd := &hubv1.Command{Action: &hubv1.Command_Get{Get: &hubv1.GetAction{Ref: &hubv1.ObjectReference{
		ApiVersion: "apps/v1", Kind: "Deployment", Namespace: "web", Name: "api"}}}}
	original := proto.CloneOf(cmd)
	res, err := hs.hub.Send(ctx, tenantA, "prod", cmd)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if diff := cmp.Diff(original, cmd, protocmp.Transform()); diff != "" {
		t.Errorf("Send changed its argument (-before +after):\n%s", diff)
	}
	if _, err := uuid.Parse(res.CommandId); err != nil {
		t.Errorf("Send gave the command id %q, want a UUID", res.CommandId)
	}
	got := <-seen
	if diff := cmp.Diff(succeed(got), res, protocmp.Transform()); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	want := proto.CloneOf(cmd)
	want.Id, want.Deadline = res.CommandId, got.Deadline
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("command the agent received (-want +got):\n%s", diff)
	}
	if !got.Deadline.AsTime().Equal(wantDeadline) {
		t.Errorf("deadline %v, want the context's %v", got.Deadline.AsTime(), wantDeadline)
	}

	// Without a deadline in ctx, CommandTimeout applies; a caller's id is kept.
	before := time.Now()
	res, err = hs.hub.Send(context.Background(), tenantA, "prod", &hubv1.Command{Id: "my-id", Action: listNamespaces().Action})
	if err != nil || res.CommandId != "my-id" {
		t.Fatalf("Send = %v, %v", res, err)
	}
	got = <-seen
	if d := got.Deadline.AsTime().Sub(before); d < DefaultCommandTimeout-time.Second || d > DefaultCommandTimeout+time.Second {
		t.Errorf("default deadline is %v away, want about %v", d, DefaultCommandTimeout)
	}

	// A failed command is a result, not an error.
	b := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
	b.hello("failing")
	b.serve(func(c *hubv1.Command) *hubv1.CommandResult {
		return &hubv1.CommandResult{CommandId: c.Id, Outcome: hubv1.CommandResult_OUTCOME_FAILED,
			Error: &hubv1.CommandError{Code: hubv1.CommandError_CODE_FORBIDDEN, Message: "rbac"}}
	}, 0, nil)
	res, err = hs.hub.Send(context.Background(), tenantA, "failing", listNamespaces())
	if err != nil || res.Outcome != hubv1.CommandResult_OUTCOME_FAILED || res.Error.Message != "rbac" {
		t.Fatalf("Send = %v, %v; want the failed result", res, err)
	}
	if n := hs.metric(t, "sortie_hub_commands_total", "outcome", "succeeded"); n != 2 {
		t.Errorf("succeeded commands = %v, want 2", n)
	}
	if n := hs.metric(t, "sortie_hub_commands_total", "outcome", "failed"); n != 1 {
		t.Errorf("failed commands = %v, want 1", n)
	}
}

func TestSendErrors(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second, CommandTimeout: 300 * time.Millisecond}, serverOptions{})

	t.Run("not connected", func(t *testing.T) {
		t.Parallel()
		for _, id := range []string{"ghost", "not valid!"} {
			_, err := hs.hub.Send(context.Background(), tenantA, id, listNamespaces())
			if !errors.Is(err, ErrNotConnected) || err.Error() != "agent '"+id+"' is not connected" {
				t.Errorf("Send to %q: %v, want ErrNotConnected reading \"agent '%s' is not connected\"", id, err, id)
			}
			if errors.Is(err, ErrOutcomeUnknown) {
				t.Errorf("Send to %q: %v is ErrOutcomeUnknown; the command was not sent", id, err)
			}
		}
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		seen := make(chan *hubv1.Command, 2)
		a := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
		a.hello("mute")
		a.serve(nil, 0, seen) // receives, never answers
		_, err := hs.hub.Send(context.Background(), tenantA, "mute", listNamespaces())
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("Send: %v, want ErrTimeout and ErrOutcomeUnknown (the agent has the command)", err)
		}
		// The deadline ran out on a command the agent was given (so its outcome is unknown),
		// and the hub no longer waits for its result.
		receivedBy(t, seen, "mute")
		if n := hs.hub.inflight(tenantA, "mute"); n != 0 {
			t.Errorf("%d commands still in flight after the timeout, want 0", n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := hs.hub.Send(ctx, tenantA, "mute", listNamespaces()); !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("Send with ctx deadline: %v, want ErrTimeout and ErrOutcomeUnknown", err)
		}
		receivedBy(t, seen, "mute")
	})
	t.Run("stream lost", func(t *testing.T) {
		t.Parallel()
		// A hub whose commands never time out within the test: only the break can end Send.
		patient := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second, CommandTimeout: time.Hour}, serverOptions{})
		seen := make(chan *hubv1.Command, 1)
		a := dial(t, patient.URL, iss.token(t, tenantA), agentOptions{})
		a.hello("crashing")
		a.serve(nil, 0, seen)
		go func() {
			<-seen
			a.close() // the agent crashes with the command in hand
		}()
		_, err := patient.hub.Send(context.Background(), tenantA, "crashing", listNamespaces())
		if !errors.Is(err, ErrStreamLost) || !errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrTimeout) {
			t.Fatalf("Send: %v, want ErrStreamLost and ErrOutcomeUnknown", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		a := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
		a.hello("slowpoke")
		seen := make(chan *hubv1.Command, 1)
		a.serve(nil, 0, seen)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-seen
			cancel()
		}()
		if _, err := hs.hub.Send(ctx, tenantA, "slowpoke", listNamespaces()); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("Send: %v, want context.Canceled and ErrOutcomeUnknown", err)
		}
	})
	t.Run("duplicate id", func(t *testing.T) {
		t.Parallel()
		a := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
		a.hello("dup")
		seen := make(chan *hubv1.Command, 1)
		a.serve(nil, 0, seen)
		done := make(chan error, 1)
		go func() {
			_, err := hs.hub.Send(context.Background(), tenantA, "dup", &hubv1.Command{Id: "same", Action: listNamespaces().Action})
			done <- err
		}()
		<-seen
		_, err := hs.hub.Send(context.Background(), tenantA, "dup", &hubv1.Command{Id: "same", Action: listNamespaces().Action})
		if err == nil || err.Error() != `command id "same" is already in flight` || errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("second Send: %v, want the duplicate id refused", err)
		}
		if err := <-done; !errors.Is(err, ErrTimeout) {
			t.Fatalf("first Send: %v, want ErrTimeout", err)
		}
	})
}

// receivedBy waits for the agent to report a command it received.
func receivedBy(t *testing.T, seen <-chan *hubv1.Command, agent string) {
	t.Helper()
	select {
	case <-seen:
	case <-time.After(10 * time.Second):
		t.Fatalf("agent %s never received the command", agent)
	}
}

// TestTwoStreamsOneIdentifier: agent replicas share an identifier; commands go to both, and
// keep flowing when one dies.
func TestTwoStreamsOneIdentifier(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 5 * time.Second}, serverOptions{})
	var mu sync.Mutex
	count := map[string]int{}
	replica := func(name string) *testAgent {
		a := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{})
		a.hello("shared")
		a.serve(func(c *hubv1.Command) *hubv1.CommandResult {
			mu.Lock()
			count[name]++
			mu.Unlock()
			return succeed(c)
		}, 0, nil)
		return a
	}
	r1, _ := replica("r1"), replica("r2")
	if got := agentsOf(t, hs.hub, tenantA, "shared"); len(got) != 2 || got[0].StreamID == got[1].StreamID {
		t.Fatalf("Agents = %+v, want two streams", got)
	}
	for range 10 {
		if _, err := hs.hub.Send(context.Background(), tenantA, "shared", listNamespaces()); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	mu.Lock()
	if count["r1"] == 0 || count["r2"] == 0 || count["r1"]+count["r2"] != 10 {
		t.Errorf("commands per replica = %v, want both used", count)
	}
	mu.Unlock()

	r1.close()
	eventually(t, 5*time.Second, "the dead replica to leave", func() bool { return len(agentsOf(t, hs.hub, tenantA, "shared")) == 1 })
	for range 5 {
		if _, err := hs.hub.Send(context.Background(), tenantA, "shared", listNamespaces()); err != nil {
			t.Fatalf("Send after one replica died: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if count["r2"] < 5 {
		t.Errorf("commands per replica = %v, want the survivor to take the rest", count)
	}
}

// TestSlowAgent: an agent that never reads does not delay commands to the others, and is
// dropped with Goodbye TOO_SLOW when its queue fills.
func TestSlowAgent(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, time.Hour)
	hs := startHub(t, iss, Config{HeartbeatInterval: 2 * time.Second, SendQueueLength: 4}, serverOptions{})
	connectAgent(t, hs, iss, tenantA, "fast", succeed)
	slow := dial(t, hs.URL, iss.token(t, tenantA), agentOptions{smallWindow: true})
	slow.id = "slow"
	slow.mustSend(helloMsg("slow", slow.instance)) // and never reads
	eventually(t, 5*time.Second, "the slow agent to register", func() bool { return len(agentsOf(t, hs.hub, tenantA, "slow")) == 1 })

	// Commands of 32 KiB, one after the other: two fill the 64 KiB the slow agent buffers and
	// block its writer, the next fill its queue of 4, and one more drops it.
	var slowErrs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	// slowEnded counts the Sends to the slow agent that returned; none does before the drop
	// (or their 5 s deadline). Commands to the fast agent that complete while none has are
	// proof that the slow agent delays nobody: a hub waiting on its blocked stream would
	// hold them until the slow commands end.
	var slowEnded atomic.Int32
	fastWhileStuck := 0
	fast := func() {
		if _, err := hs.hub.Send(context.Background(), tenantA, "fast", listNamespaces()); err != nil {
			t.Fatalf("Send to the fast agent: %v", err)
		}
		if slowEnded.Load() == 0 {
			fastWhileStuck++
		}
	}
	for i := 0; hs.metric(t, "sortie_hub_dropped_streams_total") == 0; i++ {
		if i == 20 {
			t.Fatal("the slow agent was never dropped")
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := hs.hub.Send(ctx, tenantA, "slow", &hubv1.Command{Action: &hubv1.Command_Apply{Apply: &hubv1.ApplyAction{
				Manifests: randomBytes(32 << 10)}}})
			slowEnded.Add(1)
			mu.Lock()
			slowErrs = append(slowErrs, err)
			mu.Unlock()
		})
		eventually(t, 5*time.Second, "the command to be taken", func() bool {
			return hs.hub.inflight(tenantA, "slow") == i+1 || hs.metric(t, "sortie_hub_dropped_streams_total") > 0
		})
		// Meanwhile the fast agent answers promptly.
		fast()
	}
	for range 20 {
		fast()
	}
	if fastWhileStuck < 2 {
		t.Errorf("%d commands to the fast agent completed while the slow agent's were stuck, want every one sent before the drop", fastWhileStuck)
	}
	if got := agentsOf(t, hs.hub, tenantA, "slow"); len(got) != 0 {
		t.Errorf("slow agent still listed: %+v", got)
	}
	// The slow agent, reading at last, finds the Goodbye after what was already on its way.
	slow.startReading()
	slow.expectGoodbye(hubv1.Goodbye_REASON_TOO_SLOW, "the agent did not keep up", connect.CodeResourceExhausted)

	wg.Wait()
	var lost int
	for _, err := range slowErrs {
		switch {
		case errors.Is(err, ErrStreamLost):
			lost++
		case errors.Is(err, ErrTimeout):
		default:
			t.Errorf("Send to the slow agent: %v, want ErrStreamLost or ErrTimeout", err)
		}
	}
	if lost == 0 {
		t.Errorf("no command to the slow agent failed with ErrStreamLost: %v", slowErrs)
	}
	if n := hs.metric(t, "sortie_hub_dropped_streams_total"); n != 1 {
		t.Errorf("sortie_hub_dropped_streams_total = %v, want 1", n)
	}
}

// TestTokenExpiry: a stream whose token expires gets Goodbye TOKEN_EXPIRED; commands not yet
// sent on it reach the agent once it reconnects with a new token.
func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	short := newIssuer(t, 2*time.Second)
	long := issuerOn(t, short.st, time.Hour)
	hs := startHub(t, short, Config{HeartbeatInterval: 2 * time.Second}, serverOptions{})

	t.Run("command queued on the expiring stream", func(t *testing.T) {
		t.Parallel()
		a := dial(t, hs.URL, short.token(t, tenantA), agentOptions{smallWindow: true})
		w := a.helloWithoutReading("expiring")
		// The agent stops reading: a big command blocks the stream's writer, the next one
		// waits in its queue.
		big := make(chan error, 1)
		go func() {
			_, err := hs.hub.Send(context.Background(), tenantA, "expiring", &hubv1.Command{Id: "big",
				Action: &hubv1.Command_Apply{Apply: &hubv1.ApplyAction{Manifests: randomBytes(256 << 10)}}})
			big <- err
		}()
		eventually(t, 5*time.Second, "the writer to block", func() bool { return hs.hub.writeBlocked(tenantA, "expiring") })
		queued := make(chan error, 1)
		go func() {
			res, err := hs.hub.Send(context.Background(), tenantA, "expiring", &hubv1.Command{Id: "queued", Action: listNamespaces().Action})
			if err == nil && res.CommandId != "queued" {
				err = errors.New("wrong result")
			}
			queued <- err
		}()
		eventually(t, 5*time.Second, "the second command to queue", func() bool { return hs.hub.queued(tenantA, "expiring") >= 1 })
		eventually(t, 5*time.Second, "the token to expire", func() bool { return len(agentsOf(t, hs.hub, tenantA, "expiring")) == 0 })

		// Reading again, the agent gets the big command, then the Goodbye.
		a.startReading()
		for {
			m := a.next(5 * time.Second)
			if c := m.GetCommand(); c != nil {
				if c.Id != "big" {
					t.Fatalf("got command %q on the expiring stream, want only %q", c.Id, "big")
				}
				continue
			}
			if gb := m.GetGoodbye(); gb == nil || gb.Reason != hubv1.Goodbye_REASON_TOKEN_EXPIRED {
				t.Fatalf("got %v, want Goodbye TOKEN_EXPIRED", m)
			}
			break
		}
		if err := <-big; !errors.Is(err, ErrStreamLost) || !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("big command: %v, want ErrStreamLost (it was on the wire when the stream closed)", err)
		}
		// Reconnecting with a fresh token, the agent receives the queued command.
		b := dial(t, hs.URL, long.token(t, tenantA), agentOptions{instance: a.instance})
		if w2 := b.hello("expiring"); w2.StreamId == w.StreamId {
			t.Fatal("reconnect reused the stream id")
		}
		seen := make(chan *hubv1.Command, 1)
		b.serve(succeed, 0, seen)
		if c := <-seen; c.Id != "queued" {
			t.Fatalf("after reconnecting the agent got %q, want %q", c.Id, "queued")
		}
		if err := <-queued; err != nil {
			t.Fatalf("queued command: %v", err)
		}
	})

	t.Run("command sent while the agent reconnects", func(t *testing.T) {
		t.Parallel()
		a := dial(t, hs.URL, short.token(t, tenantA), agentOptions{})
		a.hello("renewing")
		a.expectGoodbye(hubv1.Goodbye_REASON_TOKEN_EXPIRED, "the stream's token expired", connect.CodeUnauthenticated)
		done := make(chan error, 1)
		go func() {
			_, err := hs.hub.Send(context.Background(), tenantA, "renewing", listNamespaces())
			done <- err
		}()
		eventually(t, 5*time.Second, "the command to wait for the agent", func() bool { return parked(hs.hub, tenantA, "renewing") == 1 })
		b := dial(t, hs.URL, long.token(t, tenantA), agentOptions{instance: a.instance})
		b.hello("renewing")
		b.serve(succeed, 0, nil)
		if err := <-done; err != nil {
			t.Fatalf("Send: %v", err)
		}
	})
}

// TestSendNotSent: errors before the command reached any agent's stream are not
// ErrOutcomeUnknown, so a caller may send again without fearing it ran twice.
func TestSendNotSent(t *testing.T) {
	t.Parallel()
	short := newIssuer(t, 2*time.Second)
	hs := startHub(t, short, Config{HeartbeatInterval: 2 * time.Second}, serverOptions{})
	notSent := func(t *testing.T, what string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) || errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("%s: %v, want %v and not ErrOutcomeUnknown", what, err, want)
		}
	}

	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		a := dial(t, hs.URL, short.token(t, tenantA), agentOptions{})
		a.hello("refusing")
		seen := make(chan *hubv1.Command, 1)
		a.serve(succeed, 0, seen)
		long := &hubv1.Command{Id: strings.Repeat("x", 129), Action: listNamespaces().Action}
		_, err := hs.hub.Send(context.Background(), tenantA, "refusing", long)
		if err == nil || err.Error() != "command id has 129 bytes; at most 128 are allowed" || errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("Send with a long id: %v", err)
		}
		if len(seen) != 0 {
			t.Errorf("the agent received a refused command")
		}
	})
	t.Run("timeout in the queue", func(t *testing.T) {
		t.Parallel()
		a := dial(t, hs.URL, short.token(t, tenantA), agentOptions{smallWindow: true})
		a.helloWithoutReading("stuck")
		big := make(chan error, 1)
		go func() {
			_, err := hs.hub.Send(context.Background(), tenantA, "stuck", &hubv1.Command{Id: "big",
				Action: &hubv1.Command_Apply{Apply: &hubv1.ApplyAction{Manifests: randomBytes(256 << 10)}}})
			big <- err
		}()
		eventually(t, 5*time.Second, "the writer to block", func() bool { return hs.hub.writeBlocked(tenantA, "stuck") })
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := hs.hub.Send(ctx, tenantA, "stuck", listNamespaces())
		notSent(t, "Send queued behind a blocked write", err, ErrTimeout)
		a.close()
		if err := <-big; !errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("the command being written: %v, want ErrOutcomeUnknown", err)
		}
	})
	t.Run("timeout waiting for the agent to come back", func(t *testing.T) {
		t.Parallel()
		a := dial(t, hs.URL, short.token(t, tenantA), agentOptions{})
		a.hello("away")
		a.expectGoodbye(hubv1.Goodbye_REASON_TOKEN_EXPIRED, "the stream's token expired", connect.CodeUnauthenticated)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := hs.hub.Send(ctx, tenantA, "away", listNamespaces())
		notSent(t, "Send to an agent expected back", err, ErrTimeout)
	})
	t.Run("shutting down", func(t *testing.T) {
		t.Parallel()
		other := startHub(t, short, Config{HeartbeatInterval: 2 * time.Second}, serverOptions{})
		other.shutdown(t)
		_, err := other.hub.Send(context.Background(), tenantA, "anyone", listNamespaces())
		notSent(t, "Send after shutdown", err, ErrNotConnected)
	})
}
