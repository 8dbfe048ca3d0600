package redisstore

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Subscribe subscribes rdb to channels and hands each message to message until ctx ends,
// retrying a broken subscription with backoff (50 ms doubling to 2 s). ready runs once per
// connection whose subscription Redis confirmed: resumed is false the first time and true
// after every outage, when messages published meanwhile are lost. what names the
// subscription in the log, where an outage is written once when it starts and once when it
// ends. On a Redis Cluster go-redis subscribes on the node of the first channel.
func Subscribe(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger, what string, channels []string,
	ready func(resumed bool), message func(*redis.Message)) {
	ps := rdb.Subscribe(ctx, channels...)
	// A blocked Receive does not watch ctx; closing the subscription ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	defer ps.Close()
	// established: the current connection's subscription was confirmed; confirmed: one was
	// confirmed before; failing: the last Receive failed.
	established, confirmed, failing := false, false, false
	backoff := 50 * time.Millisecond
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			established = false
			if !failing {
				log.Warn("Redis subscription of "+what+" failed; retrying", "err", wrap("subscribe", err))
				failing = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		if failing {
			log.Info("Redis subscription of " + what + " restored")
			failing = false
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			// One confirmation per channel; ready once per connection.
			if !established {
				established = true
				ready(confirmed)
				confirmed = true
			}
		case *redis.Message:
			message(m)
		}
	}
}
