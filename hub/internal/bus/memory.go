package bus

import (
	"context"
	"sync"

	"google.golang.org/protobuf/proto"

	replicationv1 "github.com/sortie-dev/sortie/gen/sortie/hub/replication/v1"
)

// memoryInbox bounds the messages waiting for one listener; more are dropped, and the
// listener told it missed some.
const memoryInbox = 4096

// Memory is a Bus between the replicas of one process. The zero value is not usable; call
// NewMemory.
type Memory struct {
	mu        sync.Mutex // guards listeners
	listeners map[string]*memoryListener
}

type memoryListener struct {
	inbox  chan *replicationv1.Envelope
	missed chan struct{} // holds a token when messages were dropped
}

// NewMemory returns an empty in-process bus.
func NewMemory() *Memory {
	return &Memory{listeners: map[string]*memoryListener{}}
}

// Broadcast implements Bus.
func (b *Memory) Broadcast(_ context.Context, m *replicationv1.Envelope) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.listeners {
		l.put(proto.CloneOf(m))
	}
	return nil
}

// Send implements Bus.
func (b *Memory) Send(_ context.Context, instance string, m *replicationv1.Envelope) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.listeners[instance]
	if l == nil {
		return false, nil
	}
	l.put(proto.CloneOf(m))
	return true, nil
}

// put queues m without blocking; a full inbox drops it.
func (l *memoryListener) put(m *replicationv1.Envelope) {
	select {
	case l.inbox <- m:
	default:
		l.miss()
	}
}

func (l *memoryListener) miss() {
	select {
	case l.missed <- struct{}{}:
	default:
	}
}

// Listen implements Bus. A second listener under the same instance replaces the first.
func (b *Memory) Listen(ctx context.Context, instance string, ls Listener) {
	l := &memoryListener{inbox: make(chan *replicationv1.Envelope, memoryInbox), missed: make(chan struct{}, 1)}
	b.mu.Lock()
	b.listeners[instance] = l
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.listeners[instance] == l {
			delete(b.listeners, instance)
		}
	}()
	ls.Ready(false)
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.missed:
			ls.Ready(true)
		case m := <-l.inbox:
			ls.Message(m)
		}
	}
}

// interrupt drops what waits for every listener and tells them, as an outage would.
func (b *Memory) interrupt() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.listeners {
		for drained := false; !drained; {
			select {
			case <-l.inbox:
			default:
				drained = true
			}
		}
		l.miss()
	}
}
