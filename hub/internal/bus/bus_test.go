package bus

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/testing/protocmp"

	replicationv1 "github.com/sortie-dev/sortie/gen/sortie/hub/replication/v1"
	"github.com/sortie-dev/sortie/store/redistest"
)

// backend is one implementation under test: buses of replicas sharing it, and a way to
// interrupt delivery as an outage would.
type backend struct {
	bus       func(t *testing.T) Bus // a replica's bus
	interrupt func(t *testing.T)
}

func TestMemory(t *testing.T) {
	t.Parallel()
	runConformance(t, func(t *testing.T) backend {
		m := NewMemory()
		return backend{bus: func(*testing.T) Bus { return m }, interrupt: func(*testing.T) { m.interrupt() }}
	})
}

func TestRedis(t *testing.T) {
	t.Parallel()
	runConformance(t, func(t *testing.T) backend {
		rs := redistest.New(t)
		client := func(t *testing.T) *redis.Client {
			opt, err := redis.ParseURL(rs.URL())
			if err != nil {
				t.Fatal(err)
			}
			c := redis.NewClient(opt)
			t.Cleanup(func() { c.Close() })
			return c
		}
		admin := client(t)
		return backend{
			bus: func(t *testing.T) Bus { return NewRedis(slog.New(slog.DiscardHandler), client(t)) },
			interrupt: func(t *testing.T) {
				if err := admin.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
					t.Fatalf("CLIENT KILL: %v", err)
				}
			},
		}
	})
}

// TestRedisCluster runs the suite on a Redis Cluster of three masters: go-redis subscribes on
// one node, and a PUBLISH on any node reaches every node's subscribers.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	runConformance(t, func(t *testing.T) backend {
		c := redistest.NewCluster(t, 3)
		client := func(t *testing.T) *redis.ClusterClient {
			opt, err := redis.ParseClusterURL(c.URL())
			if err != nil {
				t.Fatal(err)
			}
			rdb := redis.NewClusterClient(opt)
			t.Cleanup(func() { rdb.Close() })
			return rdb
		}
		admin := client(t)
		return backend{
			bus: func(t *testing.T) Bus { return NewRedis(slog.New(slog.DiscardHandler), client(t)) },
			interrupt: func(t *testing.T) {
				err := admin.ForEachShard(context.Background(), func(ctx context.Context, n *redis.Client) error {
					return n.ClientKillByFilter(ctx, "TYPE", "pubsub").Err()
				})
				if err != nil {
					t.Fatalf("CLIENT KILL: %v", err)
				}
			},
		}
	})
}

// recorder is a Listener that passes on what it gets.
type recorder struct {
	ready chan bool
	msgs  chan *replicationv1.Envelope
}

func newRecorder() *recorder {
	return &recorder{ready: make(chan bool, 16), msgs: make(chan *replicationv1.Envelope, 1024)}
}

func (r *recorder) Ready(resumed bool)                { r.ready <- resumed }
func (r *recorder) Message(m *replicationv1.Envelope) { r.msgs <- m }

func (r *recorder) expectReady(t *testing.T, resumed bool) {
	t.Helper()
	select {
	case got := <-r.ready:
		if got != resumed {
			t.Fatalf("Ready(%v), want Ready(%v)", got, resumed)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no Ready(%v)", resumed)
	}
}

func (r *recorder) expect(t *testing.T, want ...*replicationv1.Envelope) {
	t.Helper()
	for i, w := range want {
		select {
		case got := <-r.msgs:
			if diff := cmp.Diff(w, got, protocmp.Transform()); diff != "" {
				t.Fatalf("message %d (-want +got):\n%s", i, diff)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d never arrived", i)
		}
	}
}

// expectNothingBefore checks that the next message is marker: nothing else came first.
func (r *recorder) expectNothingBefore(t *testing.T, marker *replicationv1.Envelope) {
	t.Helper()
	r.expect(t, marker)
}

// listen runs l on b as instance until the test ends (or stop is called).
func listen(t *testing.T, b Bus, instance string, l Listener) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { b.Listen(ctx, instance, l) })
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func change(account string) *replicationv1.Envelope {
	return &replicationv1.Envelope{Message: &replicationv1.Envelope_InventoryChange{InventoryChange: &replicationv1.InventoryChange{
		Origin: "a", OrgId: "org", EnvId: "env", Account: account, Resync: true}}}
}

func reply(id string) *replicationv1.Envelope {
	return &replicationv1.Envelope{Message: &replicationv1.Envelope_ForwardReply{ForwardReply: &replicationv1.ForwardReply{
		Id: id, Error: replicationv1.ForwardReply_ERROR_TIMEOUT, OutcomeUnknown: true}}}
}

func runConformance(t *testing.T, newBackend func(t *testing.T) backend) {
	ctx := context.Background()

	t.Run("broadcast reaches every replica", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		a, b := be.bus(t), be.bus(t)
		ra, rb := newRecorder(), newRecorder()
		listen(t, a, "a", ra)
		listen(t, b, "b", rb)
		ra.expectReady(t, false)
		rb.expectReady(t, false)
		m := change("edge")
		if err := a.Broadcast(ctx, m); err != nil {
			t.Fatalf("Broadcast: %v", err)
		}
		// The message belongs to each listener, not to the sender.
		m.GetInventoryChange().Account = "changed-after-sending"
		ra.expect(t, change("edge"))
		rb.expect(t, change("edge"))
	})

	t.Run("send reaches one replica, in order", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		a, b := be.bus(t), be.bus(t)
		ra, rb := newRecorder(), newRecorder()
		listen(t, a, "a", ra)
		listen(t, b, "b", rb)
		ra.expectReady(t, false)
		rb.expectReady(t, false)
		var want []*replicationv1.Envelope
		for i := range 50 {
			m := reply(fmt.Sprint(i))
			want = append(want, m)
			if ok, err := a.Send(ctx, "b", m); !ok || err != nil {
				t.Fatalf("Send %d = %v, %v; want delivered", i, ok, err)
			}
		}
		rb.expect(t, want...)
		// a got none of them: its next message is a later broadcast.
		if err := b.Broadcast(ctx, change("marker")); err != nil {
			t.Fatal(err)
		}
		ra.expectNothingBefore(t, change("marker"))
	})

	t.Run("send to nobody", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		a := be.bus(t)
		if ok, err := a.Send(ctx, "nobody", reply("x")); ok || err != nil {
			t.Fatalf("Send to a replica not listening = %v, %v; want false, nil", ok, err)
		}
		// Nor to one that stopped listening.
		r := newRecorder()
		stop := listen(t, a, "gone", r)
		r.expectReady(t, false)
		stop()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ok, err := a.Send(ctx, "gone", reply("x"))
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("Send still delivered to a replica that stopped listening")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("interrupted delivery resumes with Ready(true)", func(t *testing.T) {
		t.Parallel()
		be := newBackend(t)
		a, b := be.bus(t), be.bus(t)
		rb := newRecorder()
		listen(t, b, "b", rb)
		rb.expectReady(t, false)
		be.interrupt(t)
		rb.expectReady(t, true)
		// Delivery works again, once.
		if ok, err := a.Send(ctx, "b", reply("after")); !ok || err != nil {
			t.Fatalf("Send after the interruption = %v, %v", ok, err)
		}
		rb.expect(t, reply("after"))
		select {
		case resumed := <-rb.ready:
			t.Fatalf("another Ready(%v) after one interruption", resumed)
		default:
		}
	})

}
