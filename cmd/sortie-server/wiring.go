package main

import (
	"log/slog"

	"github.com/sortie-dev/sortie/pipeline"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redisstore"
)

// pipelineNotifier returns what carries the engine's wake-up hints between replicas: Redis
// pub/sub when the store is Redis (replicas may share it), none for the embedded store (one
// server; its local wake-ups suffice).
func pipelineNotifier(log *slog.Logger, st store.Store) pipeline.Notifier {
	if rs, ok := st.(*redisstore.Store); ok {
		return rs.Notifier(log)
	}
	return nil
}
