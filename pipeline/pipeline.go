// Package pipeline is Sortie's pipeline engine: it turns a deployment request (a deploy.yml
// from the Armory CLI, or the single-target request of the Spinnaker stage) into Argo
// Rollouts in the targets' clusters and drives each one through its steps, pauses,
// approvals and dependencies.
//
// The engine is a level-triggered reconciler, like a Kubernetes controller (see
// ../shared/spec/engine.md for the design). The stored pipeline is the desired state (its
// validated config, which step each target is on, every human decision); the Rollouts the
// agents report through the hub are the observed state. Reconcile reads both and takes the
// next idempotent action: apply the generated objects with server-side apply, clear a
// Rollout's pause conditions to approve, set status.abort to abort, or record a transition.
// Wake-ups (inventory changes, human actions, timers, a periodic resync) are only hints.
// A human action taken on a replica that does not drive the pipeline reaches the one that
// does through the Notifier (Redis pub/sub when replicas share Redis); a lost hint costs
// one resync, never the action.
//
// Exactly one replica drives a pipeline at a time: it holds the pipeline's lease in the
// store, and every write of pipeline state is conditioned on the lease's fencing token and
// the record's revision, so a replica that lost its lease can never overwrite the new
// holder's work. The embedded store runs the same code with one holder.
package pipeline

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/seal"
	"github.com/sortie-dev/sortie/store"
)

// Store is the persistence the engine needs.
type Store interface {
	store.Pipelines
	store.Leases
}

// Cluster is what the engine needs from the Agent Hub: commands to an account's agent, the
// cached inventory and its change feed. FromHub adapts a *hub.Hub.
type Cluster interface {
	Send(ctx context.Context, t store.Tenant, account string, cmd *hubv1.Command) (*hubv1.CommandResult, error)
	CachedObject(ctx context.Context, t store.Tenant, account string, ref *hubv1.ObjectReference) (*hubv1.Resource, error)
	Subscribe(t store.Tenant, account string, inbox int) Changes
	Accounts(ctx context.Context, t store.Tenant) ([]hub.Account, error)
}

// Changes is a subscription to inventory changes (a *hub.Subscription).
type Changes interface {
	C() <-chan hub.Change
	Close()
}

// FromHub returns the Cluster of a hub.
func FromHub(h *hub.Hub) Cluster { return hubCluster{h} }

type hubCluster struct{ *hub.Hub }

func (c hubCluster) Subscribe(t store.Tenant, account string, inbox int) Changes {
	return c.Hub.Subscribe(t, account, inbox)
}

// Notifier carries "this pipeline changed" hints between the replicas sharing a store, so
// that a human decision recorded on one replica wakes the replica holding the pipeline's
// lease at once instead of at its next resync. Hints are best effort: correctness never
// depends on them, and a lost one only delays the pipeline until the resync.
// *redisstore.Notifier implements it; a single server (the embedded store) needs none.
type Notifier interface {
	// Publish tells every replica (the publishing one included) that pipeline ref changed;
	// origin names the publishing replica.
	Publish(ctx context.Context, ref store.PipelineRef, origin string) error
	// Listen calls hint for every published change until ctx ends, resubscribing after a
	// failure; after a resubscription it calls missed, as hints may have been lost.
	Listen(ctx context.Context, hint func(ref store.PipelineRef, origin string), missed func())
}

// Defaults of Config.
const (
	DefaultLeaseTTL  = 10 * time.Second
	DefaultResync    = 3 * time.Second
	DefaultWorkers   = 16
	DefaultRetention = 30 * 24 * time.Hour
)

// Config tunes the engine; zero values take the defaults.
type Config struct {
	// Holder names this replica in leases (the hub instance id is a good choice).
	Holder string
	// LeaseTTL is how long a lease lasts without renewal; the holder renews it every third
	// of it and stops sending commands for a pipeline whose lease it could not renew.
	LeaseTTL time.Duration
	// Resync is how often every held pipeline is reconciled and unowned ones are looked for.
	Resync time.Duration
	// Workers bounds how many pipelines reconcile at once.
	Workers int
	// Retention is how long finished pipelines are kept.
	Retention time.Duration
	// CommandTimeout bounds one command to an agent (default 30 s).
	CommandTimeout time.Duration
	// Notifier carries wake-up hints between replicas; nil when there is one replica.
	Notifier   Notifier
	Now        func() time.Time
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.Resync <= 0 {
		c.Resync = DefaultResync
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Engine is the pipeline engine. Create it with New and run Run; its methods are safe for
// concurrent use and may be called before Run starts.
type Engine struct {
	log    *slog.Logger
	cfg    Config
	now    func() time.Time
	st     Store
	cl     Cluster
	sealer *seal.Sealer
	m      *metrics
	queue  workqueue.TypedDelayingInterface[store.PipelineRef]

	mu      sync.Mutex // guards held, others, subs, index and changed
	held    map[store.PipelineRef]*held
	others  map[store.PipelineRef]time.Time // pipelines another replica held, and when to try again
	subs    map[store.Tenant]Changes
	index   map[string]map[store.PipelineRef]bool // change-feed key -> pipelines to wake
	changed chan struct{}                         // closed and replaced after every local write
}
