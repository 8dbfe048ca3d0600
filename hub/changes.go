package hub

import (
	"context"
	"sync"

	replicationv1 "github.com/sortie-dev/sortie/gen/sortie/hub/replication/v1"
	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/store"
)

// DefaultSubscriptionInbox is the inbox of a Subscription asked for with inbox <= 0.
const DefaultSubscriptionInbox = 256

// Change is one change of an account's cached inventory, as Hub.Subscribe delivers it.
//
// With Resync unset, the object Ref names was added or changed (read it with
// Hub.CachedObject), or removed when Deleted is set. With Resync set, Ref is nil and
// changes may have been missed: re-read the whole inventory of Account, or of every account
// of the subscription when Account is empty (the inbox overflowed, or the replica's Redis
// subscription was re-established).
type Change struct {
	Account string
	Ref     *hubv1.ObjectReference
	Deleted bool
	Resync  bool
}

// Subscription receives the inventory changes of one tenant's account, or of all its
// accounts. Create it with Hub.Subscribe; Close it when done.
type Subscription struct {
	h       *Hub
	tenant  store.Tenant
	account string // "" = every account of the tenant

	mu     sync.Mutex // guards closed and sends on c, so Close never races a delivery
	c      chan Change
	closed bool
}

// Subscribe returns a subscription to the inventory changes of account in tenant t (of
// every account of t when account is ""), made on this replica or, with Redis, on any
// replica. Changes wait in an inbox of inbox entries (DefaultSubscriptionInbox when inbox
// <= 0); the hub never waits for a reader: when the inbox is full, what is in it is
// dropped and replaced by one Change{Resync: true}, after which changes queue again. A
// subscription also gets a Resync after the replica's Redis subscription was re-established,
// since changes published meanwhile are lost. Changes of one agent stream arrive in order;
// a Change only says what to re-read, it does not carry the object, and its Ref is shared
// by every subscriber: do not modify it. The channel is closed
// by Close and when the hub shuts down.
func (h *Hub) Subscribe(t store.Tenant, account string, inbox int) *Subscription {
	if inbox <= 0 {
		inbox = DefaultSubscriptionInbox
	}
	s := &Subscription{h: h, tenant: t, account: account, c: make(chan Change, inbox)}
	h.subMu.Lock()
	defer h.subMu.Unlock()
	if h.subsClosed {
		close(s.c)
		s.closed = true
		return s
	}
	if h.subs[t] == nil {
		h.subs[t] = map[*Subscription]struct{}{}
	}
	h.subs[t][s] = struct{}{}
	return s
}

// C returns the channel of the subscription's changes.
func (s *Subscription) C() <-chan Change { return s.c }

// Close ends the subscription and closes its channel. Closing twice does nothing.
func (s *Subscription) Close() {
	s.h.subMu.Lock()
	if byTenant := s.h.subs[s.tenant]; byTenant != nil {
		delete(byTenant, s)
		if len(byTenant) == 0 {
			delete(s.h.subs, s.tenant)
		}
	}
	s.h.subMu.Unlock()
	s.closeChannel()
}

func (s *Subscription) closeChannel() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.c)
	}
}

// deliver queues changes without blocking; on overflow it replaces the inbox's content with
// one Resync.
func (s *Subscription) deliver(changes []Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for _, c := range changes {
		select {
		case s.c <- c:
			continue
		default:
		}
		// Full: everything queued is superseded by a Resync. Only deliver sends on s.c, under
		// s.mu, so once drained there is room for it.
		s.h.m.subscriptionResyncs.Inc()
		for drained := false; !drained; {
			select {
			case <-s.c:
			default:
				drained = true
			}
		}
		s.c <- Change{Account: s.account, Resync: true}
		// The Resync covers the rest of this batch too.
		return
	}
}

// matching returns the subscriptions of t that take changes of account ("" = all of them).
func (h *Hub) matching(t store.Tenant, account string) []*Subscription {
	h.subMu.Lock()
	defer h.subMu.Unlock()
	var out []*Subscription
	for s := range h.subs[t] {
		if account == "" || s.account == "" || s.account == account {
			out = append(out, s)
		}
	}
	return out
}

// fanOut hands changes of one account to this replica's subscribers.
func (h *Hub) fanOut(t store.Tenant, account string, changes []Change) {
	if len(changes) == 0 {
		return
	}
	for _, s := range h.matching(t, account) {
		s.deliver(changes)
	}
}

// resyncAll tells every local subscriber that changes may have been missed.
func (h *Hub) resyncAll() {
	h.subMu.Lock()
	var all []*Subscription
	for _, byTenant := range h.subs {
		for s := range byTenant {
			all = append(all, s)
		}
	}
	h.subMu.Unlock()
	for _, s := range all {
		s.deliver([]Change{{Account: s.account, Resync: true}})
	}
}

// closeSubscriptions closes every subscription at shutdown; later ones start closed.
func (h *Hub) closeSubscriptions() {
	h.subMu.Lock()
	h.subsClosed = true
	var all []*Subscription
	for t, byTenant := range h.subs {
		for s := range byTenant {
			all = append(all, s)
		}
		delete(h.subs, t)
	}
	h.subMu.Unlock()
	for _, s := range all {
		s.closeChannel()
	}
}

// changed tells the subscribers on every replica about a change this replica applied:
// upserted and deleted objects, or with resync the replacement of the whole inventory.
func (h *Hub) changed(k agentKey, resync bool, upserted, deleted []*hubv1.ObjectReference) {
	var changes []Change
	if resync {
		changes = []Change{{Account: k.agent, Resync: true}}
	} else {
		changes = make([]Change, 0, len(upserted)+len(deleted))
		for _, ref := range upserted {
			changes = append(changes, Change{Account: k.agent, Ref: ref})
		}
		for _, ref := range deleted {
			changes = append(changes, Change{Account: k.agent, Ref: ref, Deleted: true})
		}
	}
	if len(changes) == 0 {
		return
	}
	h.fanOut(k.tenant, k.agent, changes)
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	err := h.bus.Broadcast(ctx, &replicationv1.Envelope{Message: &replicationv1.Envelope_InventoryChange{InventoryChange: &replicationv1.InventoryChange{
		Origin: h.id, OrgId: k.tenant.OrgID, EnvId: k.tenant.EnvID, Account: k.agent,
		Resync: resync, Upserted: upserted, Deleted: deleted,
	}}})
	if err != nil {
		h.log.Warn("publishing an inventory change failed; subscribers on other replicas miss it",
			"tenant", k.tenant.String(), "agent", k.agent, "err", err)
	}
}

// onChange fans out an InventoryChange another replica published.
func (h *Hub) onChange(c *replicationv1.InventoryChange) {
	if c.Origin == h.id || !ValidIdentifier(c.Account) {
		return
	}
	t := store.Tenant{OrgID: c.OrgId, EnvID: c.EnvId}
	var changes []Change
	if c.Resync {
		changes = []Change{{Account: c.Account, Resync: true}}
	} else {
		for _, ref := range c.Upserted {
			changes = append(changes, Change{Account: c.Account, Ref: ref})
		}
		for _, ref := range c.Deleted {
			changes = append(changes, Change{Account: c.Account, Ref: ref, Deleted: true})
		}
	}
	h.fanOut(t, c.Account, changes)
}
