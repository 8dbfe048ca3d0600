package bus

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	replicationv1 "github.com/sortie-dev/sortie/gen/sortie/hub/replication/v1"
	"github.com/sortie-dev/sortie/store/redisstore"
)

// BroadcastChannel carries the broadcasts between replicas.
const BroadcastChannel = "sortie:hub:replicas"

// InstanceChannel carries the messages to one replica.
func InstanceChannel(instance string) string { return "sortie:hub:instance:" + instance }

// Redis is a Bus over Redis pub/sub: Envelopes in protobuf on BroadcastChannel and on each
// replica's InstanceChannel.
//
// On a Redis Cluster a PUBLISH reaches the subscribers of every node, but its reply counts
// only those of the node it ran on, and Send needs that count to tell whether the replica
// listens. So every replica subscribes on the master of BroadcastChannel's hash slot
// (go-redis subscribes on the node of the first channel), and every PUBLISH runs there too.
type Redis struct {
	log *slog.Logger
	rdb redis.UniversalClient
}

// NewRedis returns a bus over rdb.
func NewRedis(log *slog.Logger, rdb redis.UniversalClient) *Redis {
	return &Redis{log: log, rdb: rdb}
}

// unavailableError wraps a Redis failure without repeating its text (which may name the
// server).
type unavailableError struct {
	op    string
	cause error
}

func (e *unavailableError) Error() string   { return e.op + ": " + ErrUnavailable.Error() }
func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.cause} }

func (b *Redis) publish(ctx context.Context, op, channel string, m *replicationv1.Envelope) (int64, error) {
	body, err := proto.Marshal(m)
	if err != nil {
		return 0, fmt.Errorf("%s: encode: %w", op, err)
	}
	n, err := b.publisher(ctx).Publish(ctx, channel, body).Result()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return 0, fmt.Errorf("%s: %w", op, cerr)
		}
		return 0, &unavailableError{op: op, cause: err}
	}
	return n, nil
}

// publisher returns the client to PUBLISH with: on a Redis Cluster, the master the replicas
// subscribe on.
func (b *Redis) publisher(ctx context.Context) redis.Cmdable {
	cc, ok := b.rdb.(*redis.ClusterClient)
	if !ok {
		return b.rdb
	}
	if m, err := cc.MasterForKey(ctx, BroadcastChannel); err == nil {
		return m
	}
	return b.rdb // the cluster is unreachable: let the PUBLISH fail as usual
}

// Broadcast implements Bus.
func (b *Redis) Broadcast(ctx context.Context, m *replicationv1.Envelope) error {
	_, err := b.publish(ctx, "broadcast", BroadcastChannel, m)
	return err
}

// Send implements Bus.
func (b *Redis) Send(ctx context.Context, instance string, m *replicationv1.Envelope) (bool, error) {
	n, err := b.publish(ctx, "send to replica", InstanceChannel(instance), m)
	return n > 0, err
}

// Listen implements Bus. It retries a broken subscription with backoff until ctx ends.
func (b *Redis) Listen(ctx context.Context, instance string, l Listener) {
	// BroadcastChannel first: on a Redis Cluster it decides the node (see Redis).
	redisstore.Subscribe(ctx, b.rdb, b.log, "the replica bus", []string{BroadcastChannel, InstanceChannel(instance)}, l.Ready,
		func(m *redis.Message) {
			var env replicationv1.Envelope
			if err := proto.Unmarshal([]byte(m.Payload), &env); err != nil {
				b.log.Warn("ignoring an unreadable message on the replica bus", "channel", m.Channel, "err", err)
				return
			}
			l.Message(&env)
		})
}
