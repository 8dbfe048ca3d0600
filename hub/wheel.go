package hub

import (
	"context"
	"fmt"
	"time"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

// wheelSlots is how many slots the heartbeat wheel has. It visits one slot every
// HeartbeatInterval/wheelSlots, so every stream once per interval, and a burst of streams
// (a reconnect storm) spreads over the interval, as streams are dealt to the slots in turn.
const wheelSlots = 64

// wheel holds every open registered stream of the hub in one of its slots: one goroutine
// and one ticker do for all streams what a ticker per stream would. Guarded by Hub.mu.
type wheel struct {
	slots [wheelSlots][]*stream
	next  int // the slot the next stream goes to
}

// wheelAddLocked puts s into the next slot, unless it is closing.
func (h *Hub) wheelAddLocked(s *stream) {
	if s.closing || s.slot >= 0 {
		return
	}
	w := &h.wheel
	s.slot, s.pos = w.next, len(w.slots[w.next])
	w.slots[w.next] = append(w.slots[w.next], s)
	w.next = (w.next + 1) % wheelSlots
}

// wheelRemoveLocked takes s out of the wheel, if it is in it.
func (h *Hub) wheelRemoveLocked(s *stream) {
	if s.slot < 0 {
		return
	}
	slot := h.wheel.slots[s.slot]
	last := slot[len(slot)-1]
	slot[s.pos], last.pos = last, s.pos
	slot[len(slot)-1] = nil
	h.wheel.slots[s.slot] = slot[:len(slot)-1]
	s.slot = -1
}

// wheelLoop visits the wheel's slots in turn until ctx ends.
func (h *Hub) wheelLoop(ctx context.Context) {
	tick := time.NewTicker(max(h.cfg.HeartbeatInterval/wheelSlots, 1))
	defer tick.Stop()
	var batch []*stream
	for slot := 0; ; slot = (slot + 1) % wheelSlots {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h.mu.Lock()
		batch = append(batch[:0], h.wheel.slots[slot]...)
		h.mu.Unlock()
		for _, s := range batch {
			h.visit(s)
		}
		clear(batch)
	}
}

// visit does a stream's periodic work: a stream silent for three heartbeat intervals ends
// with Goodbye HEARTBEAT_TIMEOUT, one whose current write has not finished for three
// intervals ends with Goodbye TOO_SLOW (and the write is cut), and any other gets a
// Heartbeat, written on a goroutine of its own so that no agent holds up the wheel.
func (h *Hub) visit(s *stream) {
	interval := h.cfg.HeartbeatInterval
	now := h.mono()
	if silent := time.Duration(now - s.lastHeard.Load()); silent > 3*interval {
		h.closeWith(s, hubv1.Goodbye_REASON_HEARTBEAT_TIMEOUT,
			fmt.Sprintf("nothing heard from the agent for %s (3 heartbeat intervals)", silent.Round(time.Millisecond)))
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ws := s.writeStart.Load(); ws != 0 && time.Duration(now-ws) > 3*interval {
		if !s.closing {
			h.beginCloseLocked(s, goodbye(hubv1.Goodbye_REASON_TOO_SLOW, "the agent has not read what the hub sent for 3 heartbeat intervals"))
			if s.rc != nil {
				// Reset the HTTP/2 stream: the stuck write returns. Its handler still runs, as
				// it returns only after closing s itself.
				_ = s.rc.SetWriteDeadline(time.Now())
			}
		}
		return
	}
	if !h.shuttingDown && h.reserveLocked(s) {
		h.wg.Go(func() { h.writeHeartbeat(s) })
	}
}
