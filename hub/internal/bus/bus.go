// Package bus carries the messages between Agent Hub replicas: broadcasts every replica
// hears (inventory changes, agent events) and messages to one replica (forwarded commands
// and their replies). Memory connects the replicas of one process; Redis those sharing a
// Redis, over its pub/sub. Both pass one conformance suite.
//
// Delivery is at most once and may lose messages during an outage; a listener learns that
// it may have missed some because its Ready callback runs again with resumed set.
package bus

import (
	"context"
	"errors"

	replicationv1 "github.com/sortie-dev/sortie/gen/sortie/hub/replication/v1"
)

// Bus carries messages between the replicas sharing it.
type Bus interface {
	// Broadcast sends m to every replica listening, the sender included.
	Broadcast(ctx context.Context, m *replicationv1.Envelope) error
	// Send sends m to the replica listening as instance and reports whether one was.
	Send(ctx context.Context, instance string, m *replicationv1.Envelope) (bool, error)
	// Listen receives the broadcasts and the messages sent to instance until ctx ends,
	// calling l's methods from one goroutine.
	Listen(ctx context.Context, instance string, l Listener)
}

// Listener receives what a Bus delivers.
type Listener interface {
	// Ready says the listener receives from now on: first with resumed unset, then again
	// with resumed set each time delivery was interrupted (messages may be lost).
	Ready(resumed bool)
	// Message is one message; it belongs to the listener.
	Message(m *replicationv1.Envelope)
}

// ErrUnavailable means the bus could not send: its backend is unreachable.
var ErrUnavailable = errors.New("replica bus unavailable")
