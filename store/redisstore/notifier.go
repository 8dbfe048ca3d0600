package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/sortie-dev/sortie/store"
)

// PipelineChannel is the pub/sub channel on which the replicas sharing a Redis tell each
// other that a pipeline changed. One channel serves the whole deployment: the hints are
// rare (human decisions) and tiny.
const PipelineChannel = "sortie:pipeline_changes"

// Notifier carries the pipeline engine's wake-up hints (pipeline.Notifier) between the
// replicas sharing a Redis, over PUBLISH and SUBSCRIBE on PipelineChannel. The hints are
// best effort: Redis pub/sub drops what is published while a subscriber is disconnected,
// and the engine's resync catches up.
//
// On a Redis Cluster a PUBLISH reaches the subscribers of every node, so it does not matter
// on which node the subscription and the PUBLISH land.
type Notifier struct {
	log *slog.Logger
	rdb redis.UniversalClient
}

// Notifier returns the store's notifier, which shares its connections.
func (s *Store) Notifier(log *slog.Logger) *Notifier { return &Notifier{log: log, rdb: s.rdb} }

// hint is the payload of one message on PipelineChannel.
type hint struct {
	Org    string `json:"o"`
	Env    string `json:"e"`
	ID     string `json:"p"`
	Origin string `json:"r,omitempty"`
}

// Publish implements pipeline.Notifier.
func (n *Notifier) Publish(ctx context.Context, ref store.PipelineRef, origin string) error {
	body, err := json.Marshal(hint{Org: ref.Tenant.OrgID, Env: ref.Tenant.EnvID, ID: ref.ID, Origin: origin})
	if err != nil {
		return fmt.Errorf("encode pipeline wake-up: %w", err)
	}
	return wrap("publish pipeline wake-up", n.rdb.Publish(ctx, PipelineChannel, body).Err())
}

// Listen implements pipeline.Notifier. It retries a broken subscription with backoff until
// ctx ends and calls missed each time the subscription is back.
func (n *Notifier) Listen(ctx context.Context, onHint func(ref store.PipelineRef, origin string), missed func()) {
	ready := func(resumed bool) {
		if resumed {
			missed()
		}
	}
	Subscribe(ctx, n.rdb, n.log, "pipeline wake-ups (pipelines still advance at every resync)", []string{PipelineChannel}, ready,
		func(m *redis.Message) {
			var h hint
			if err := json.Unmarshal([]byte(m.Payload), &h); err != nil || h.Org == "" || h.Env == "" || h.ID == "" {
				n.log.Warn("ignoring an unreadable pipeline wake-up", "channel", m.Channel)
				return
			}
			onHint(store.PipelineRef{Tenant: store.Tenant{OrgID: h.Org, EnvID: h.Env}, ID: h.ID}, h.Origin)
		})
}
