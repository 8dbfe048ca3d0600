package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/internal/record"
)

// Buckets inside a tenant's pipelines/<org>/<env> bucket.
const (
	bucketRecords     = "records"      // id -> pipeline
	bucketEvents      = "events"       // id/seq (8-byte big endian) -> event
	bucketIndex       = "index"        // name/sort key -> "" (record.IndexNames)
	bucketActive      = "active"       // id -> "" for every non-terminal pipeline
	bucketAppActive   = "app_active"   // application/id -> sort key
	bucketCompleted   = "completed"    // completed key (record.CompletedKey) -> id
	bucketLeases      = "leases"       // id -> lease
	bucketLeaseTokens = "lease_tokens" // id -> last fencing token (8-byte big endian)
)

var tenantPipelineBuckets = []string{
	bucketRecords, bucketEvents, bucketIndex, bucketActive, bucketAppActive,
	bucketCompleted, bucketLeases, bucketLeaseTokens,
}

// pipelineTenant is the bucket of one tenant's pipelines, opened in one transaction.
type pipelineTenant struct {
	b *bolt.Bucket
}

// readTenant returns t's pipelines bucket, or nil if the tenant has no pipelines.
func readTenant(tx *bolt.Tx, t store.Tenant) *pipelineTenant {
	org := tx.Bucket([]byte(bucketPipelines)).Bucket([]byte(t.OrgID))
	if org == nil {
		return nil
	}
	b := org.Bucket([]byte(t.EnvID))
	if b == nil {
		return nil
	}
	return &pipelineTenant{b: b}
}

// writeTenant returns t's pipelines bucket, creating it and its sub-buckets.
func writeTenant(tx *bolt.Tx, t store.Tenant) (*pipelineTenant, error) {
	org, err := tx.Bucket([]byte(bucketPipelines)).CreateBucketIfNotExists([]byte(t.OrgID))
	if err != nil {
		return nil, err
	}
	b, err := org.CreateBucketIfNotExists([]byte(t.EnvID))
	if err != nil {
		return nil, err
	}
	for _, name := range tenantPipelineBuckets {
		if _, err := b.CreateBucketIfNotExists([]byte(name)); err != nil {
			return nil, err
		}
	}
	return &pipelineTenant{b: b}, nil
}

func (pt *pipelineTenant) sub(name string) *bolt.Bucket { return pt.b.Bucket([]byte(name)) }

// get returns the stored pipeline and its event count, or ErrNotFound.
func (pt *pipelineTenant) get(id string) (store.Pipeline, int64, error) {
	if pt == nil {
		return store.Pipeline{}, 0, store.ErrNotFound
	}
	v := pt.sub(bucketRecords).Get([]byte(id))
	if v == nil {
		return store.Pipeline{}, 0, store.ErrNotFound
	}
	return record.DecodePipeline(v)
}

// put writes p (its event count then events) and moves its index entries from old's, where
// old is nil for a new pipeline.
func (pt *pipelineTenant) put(p store.Pipeline, events int64, old *store.Pipeline) error {
	v, err := record.EncodePipeline(p, events)
	if err != nil {
		return err
	}
	if err := pt.sub(bucketRecords).Put([]byte(p.ID), v); err != nil {
		return err
	}
	sortKey := record.SortKey(p.CreatedAt, p.ID)
	if old != nil {
		if err := pt.unindex(*old); err != nil {
			return err
		}
	}
	index := pt.sub(bucketIndex)
	for _, name := range record.IndexNames(p.Application, p.Status) {
		b, err := index.CreateBucketIfNotExists([]byte(name))
		if err != nil {
			return err
		}
		if err := b.Put([]byte(sortKey), nil); err != nil {
			return err
		}
	}
	if store.TerminalStatus(p.Status) {
		return pt.sub(bucketCompleted).Put([]byte(record.CompletedKey(p.CompletedAt, p.ID)), []byte(p.ID))
	}
	if err := pt.sub(bucketActive).Put([]byte(p.ID), nil); err != nil {
		return err
	}
	app, err := pt.sub(bucketAppActive).CreateBucketIfNotExists([]byte(p.Application))
	if err != nil {
		return err
	}
	return app.Put([]byte(p.ID), []byte(sortKey))
}

// unindex removes p's index entries.
func (pt *pipelineTenant) unindex(p store.Pipeline) error {
	sortKey := []byte(record.SortKey(p.CreatedAt, p.ID))
	index := pt.sub(bucketIndex)
	for _, name := range record.IndexNames(p.Application, p.Status) {
		if b := index.Bucket([]byte(name)); b != nil {
			if err := b.Delete(sortKey); err != nil {
				return err
			}
		}
	}
	if store.TerminalStatus(p.Status) {
		return pt.sub(bucketCompleted).Delete([]byte(record.CompletedKey(p.CompletedAt, p.ID)))
	}
	if err := pt.sub(bucketActive).Delete([]byte(p.ID)); err != nil {
		return err
	}
	if app := pt.sub(bucketAppActive).Bucket([]byte(p.Application)); app != nil {
		return app.Delete([]byte(p.ID))
	}
	return nil
}

// appendEvents stores events after the pipeline's first n and returns the new count.
func (pt *pipelineTenant) appendEvents(id string, n int64, events []store.PipelineEvent) (int64, error) {
	if len(events) == 0 {
		return n, nil
	}
	b, err := pt.sub(bucketEvents).CreateBucketIfNotExists([]byte(id))
	if err != nil {
		return 0, err
	}
	for _, e := range events {
		v, err := record.EncodeEvent(e)
		if err != nil {
			return 0, err
		}
		n++
		if err := b.Put(seqKey(n), v); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// fenceHolds reports whether fence is the pipeline's current, unexpired lease at now.
func (pt *pipelineTenant) fenceHolds(fence *store.Lease, now time.Time) (bool, error) {
	v := pt.sub(bucketLeases).Get([]byte(fence.Pipeline.ID))
	if v == nil {
		return false, nil
	}
	l, err := record.DecodeLease(v, fence.Pipeline)
	if err != nil {
		return false, err
	}
	return l.Holder == fence.Holder && l.Token == fence.Token && l.ExpiresAt.After(now), nil
}

func seqKey(seq int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(seq)) }

// CreatePipeline implements store.Pipelines: the rule check and the writes are one bbolt
// transaction, which bbolt serializes with every other write (batched with concurrent ones
// into one commit).
func (s *Store) CreatePipeline(ctx context.Context, p store.Pipeline, rule store.InProgressRule, events []store.PipelineEvent) (store.CreateResult, error) {
	var res store.CreateResult
	err := record.CheckPipeline(p)
	if err == nil {
		err = record.CheckEvents(events)
	}
	if err == nil && rule != store.RejectInProgress && rule != store.EnqueueOne {
		err = fmt.Errorf("unknown in-progress rule %d", rule)
	}
	if err == nil {
		// Batched like UpdatePipeline: a run works on its own copies of p and events, since
		// bbolt may run it again, and refusals leave through refused (only the tenant's
		// empty buckets may have been written by then).
		var refused error
		arg, argEvents := p, events
		err = s.batch(func(tx *bolt.Tx) error {
			p, events, refused, res = arg, argEvents, nil, store.CreateResult{}
			pt, err := writeTenant(tx, p.Tenant)
			if err != nil {
				return err
			}
			if pt.sub(bucketRecords).Get([]byte(p.ID)) != nil {
				refused = store.ErrConflict
				return nil
			}
			p.Revision, p.BlockedBy = 1, ""
			var queued []store.Pipeline
			if !store.TerminalStatus(p.Status) {
				blocker, q, err := pt.activeOf(p.Application)
				if err != nil {
					return err
				}
				queued = q
				if blocker == "" && len(queued) > 0 {
					blocker = queued[0].ID
				}
				switch {
				case blocker == "":
				case rule == store.RejectInProgress:
					refused = &store.InProgressError{PipelineID: blocker}
					return nil
				default:
					p.Status, p.BlockedBy = store.StatusQueued, blocker
					if len(queued) > 0 && blocker == queued[0].ID {
						p.BlockedBy = queued[0].BlockedBy
					}
					events = append(events[:len(events):len(events)], store.PipelineEvent{Time: p.CreatedAt, Type: store.EventQueued})
				}
			}
			n, err := pt.appendEvents(p.ID, 0, events)
			if err != nil {
				return err
			}
			if err := pt.put(p, n, nil); err != nil {
				return err
			}
			res.Pipeline = record.ClonePipeline(p)
			for i, old := range queued {
				r := old
				r.Status, r.BlockedBy, r.Revision = store.StatusRejected, p.ID, old.Revision+1
				r.UpdatedAt, r.CompletedAt = p.CreatedAt, p.CreatedAt
				_, n, err := pt.get(old.ID)
				if err != nil {
					return err
				}
				n, err = pt.appendEvents(r.ID, n, []store.PipelineEvent{{Time: p.CreatedAt, Type: store.EventReplaced}})
				if err != nil {
					return err
				}
				if err := pt.put(r, n, &old); err != nil {
					return err
				}
				if i == 0 {
					res.Replaced = &r
				}
			}
			return nil
		})
		if err == nil {
			err = refused
		}
	}
	if err != nil {
		return store.CreateResult{}, fmt.Errorf("create pipeline %s: %w", p.ID, err)
	}
	return res, nil
}

// activeOf returns the oldest in-progress pipeline of the application ("" if none) and its
// QUEUED pipelines, newest first.
func (pt *pipelineTenant) activeOf(app string) (blocker string, queued []store.Pipeline, err error) {
	b := pt.sub(bucketAppActive).Bucket([]byte(app))
	if b == nil {
		return "", nil, nil
	}
	var blockerKey string
	err = b.ForEach(func(id, sortKey []byte) error {
		p, _, err := pt.get(string(id))
		if err != nil {
			return fmt.Errorf("active pipeline %s: %w", id, err)
		}
		if p.Status == store.StatusQueued {
			queued = append(queued, p)
		} else if string(sortKey) > blockerKey {
			blocker, blockerKey = p.ID, string(sortKey)
		}
		return nil
	})
	record.SortPipelines(queued)
	return blocker, queued, err
}

// GetPipeline implements store.Pipelines.
func (s *Store) GetPipeline(ctx context.Context, t store.Tenant, id string) (store.Pipeline, error) {
	var p store.Pipeline
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		p, _, err = readTenant(tx, t).get(id)
		return err
	})
	if err != nil {
		return store.Pipeline{}, fmt.Errorf("get pipeline %s: %w", id, err)
	}
	return p, nil
}

// UpdatePipeline implements store.Pipelines. The fence is judged at time.Now() of this
// process, inside the write transaction.
func (s *Store) UpdatePipeline(ctx context.Context, p store.Pipeline, fence *store.Lease, events []store.PipelineEvent) (store.Pipeline, error) {
	var out store.Pipeline
	err := record.CheckPipeline(p)
	if err == nil {
		err = record.CheckEvents(events)
	}
	if err == nil && fence != nil && fence.Pipeline != (store.PipelineRef{Tenant: p.Tenant, ID: p.ID}) {
		err = fmt.Errorf("the fence is the lease of pipeline %s in %s", fence.Pipeline.ID, fence.Pipeline.Tenant)
	}
	if err == nil {
		// Refusals are found before anything is written; they are returned through refused
		// so they do not fail the batch other writers share.
		var refused error
		err = s.batch(func(tx *bolt.Tx) error {
			refused = nil
			pt := readTenant(tx, p.Tenant)
			old, n, err := pt.get(p.ID)
			if err != nil {
				refused = err
				return nil
			}
			if old.Revision != p.Revision {
				refused = fmt.Errorf("revision %d is not the stored %d: %w", p.Revision, old.Revision, store.ErrStale)
				return nil
			}
			if fence != nil {
				holds, err := pt.fenceHolds(fence, time.Now())
				if err != nil {
					return err
				}
				if !holds {
					refused = fmt.Errorf("lease token %d of %s is not current: %w", fence.Token, fence.Holder, store.ErrStale)
					return nil
				}
			}
			if store.TerminalStatus(old.Status) && !store.TerminalStatus(p.Status) {
				refused = fmt.Errorf("pipeline is finished (%s) and cannot become %s", old.Status, p.Status)
				return nil
			}
			out = old
			out.Status, out.BlockedBy, out.UpdatedAt, out.CompletedAt = p.Status, p.BlockedBy, p.UpdatedAt, p.CompletedAt
			out.State, out.Sealed = p.State, p.Sealed
			out.Revision++
			n, err = pt.appendEvents(p.ID, n, events)
			if err != nil {
				return err
			}
			return pt.put(out, n, &old)
		})
		if err == nil {
			err = refused
		}
	}
	if err != nil {
		return store.Pipeline{}, fmt.Errorf("update pipeline %s: %w", p.ID, err)
	}
	return record.ClonePipeline(out), nil
}

// ListPipelines implements store.Pipelines by merging the filter's indexes in sort-key order.
func (s *Store) ListPipelines(ctx context.Context, t store.Tenant, f store.PipelineFilter) ([]store.Pipeline, string, error) {
	limit, after, err := record.CheckFilter(f)
	if err != nil {
		return nil, "", fmt.Errorf("list pipelines of %s: %w", t, err)
	}
	var page []store.Pipeline
	var next string
	err = s.view(func(tx *bolt.Tx) error {
		pt := readTenant(tx, t)
		if pt == nil {
			return nil
		}
		var keys []string
		for _, name := range record.FilterIndexes(f) {
			b := pt.sub(bucketIndex).Bucket([]byte(name))
			if b == nil {
				continue
			}
			c := b.Cursor()
			k, _ := c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, _ = c.Next()
			}
			for i := 0; k != nil && i <= limit; i++ {
				keys = append(keys, string(k))
				k, _ = c.Next()
			}
		}
		keys, more := record.MergeSortKeys(keys, limit)
		for _, key := range keys {
			id, err := record.SortKeyID(key)
			if err != nil {
				return err
			}
			p, _, err := pt.get(id)
			if err != nil {
				return fmt.Errorf("indexed pipeline %s: %w", id, err)
			}
			page = append(page, p)
		}
		if more {
			next = record.EncodeCursor(keys[len(keys)-1])
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list pipelines of %s: %w", t, err)
	}
	return page, next, nil
}

// ListActivePipelines implements store.Pipelines.
func (s *Store) ListActivePipelines(ctx context.Context) ([]store.PipelineRef, error) {
	var refs []store.PipelineRef
	err := s.view(func(tx *bolt.Tx) error {
		return forEachTenant(tx, func(t store.Tenant, pt *pipelineTenant) error {
			return pt.sub(bucketActive).ForEach(func(id, _ []byte) error {
				refs = append(refs, store.PipelineRef{Tenant: t, ID: string(id)})
				return nil
			})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list active pipelines: %w", err)
	}
	return refs, nil
}

// forEachTenant calls fn for every tenant that has pipelines.
func forEachTenant(tx *bolt.Tx, fn func(store.Tenant, *pipelineTenant) error) error {
	return tx.Bucket([]byte(bucketPipelines)).ForEachBucket(func(org []byte) error {
		ob := tx.Bucket([]byte(bucketPipelines)).Bucket(org)
		return ob.ForEachBucket(func(env []byte) error {
			return fn(store.Tenant{OrgID: string(org), EnvID: string(env)}, &pipelineTenant{b: ob.Bucket(env)})
		})
	})
}

// QueuedPipeline implements store.Pipelines.
func (s *Store) QueuedPipeline(ctx context.Context, t store.Tenant, application string) (store.Pipeline, error) {
	var p store.Pipeline
	err := s.view(func(tx *bolt.Tx) error {
		pt := readTenant(tx, t)
		if pt == nil {
			return store.ErrNotFound
		}
		_, queued, err := pt.activeOf(application)
		if err != nil {
			return err
		}
		if len(queued) == 0 {
			return store.ErrNotFound
		}
		p = queued[0]
		return nil
	})
	if err != nil {
		return store.Pipeline{}, fmt.Errorf("queued pipeline of %s: %w", application, err)
	}
	return p, nil
}

// ListPipelineEvents implements store.Pipelines.
func (s *Store) ListPipelineEvents(ctx context.Context, t store.Tenant, id string, afterSeq int64, limit int) ([]store.PipelineEvent, error) {
	var events []store.PipelineEvent
	err := s.view(func(tx *bolt.Tx) error {
		pt := readTenant(tx, t)
		if _, _, err := pt.get(id); err != nil {
			return err
		}
		b := pt.sub(bucketEvents).Bucket([]byte(id))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(seqKey(max(afterSeq, 0) + 1)); k != nil && (limit <= 0 || len(events) < limit); k, v = c.Next() {
			e, err := record.DecodeEvent(v, int64(binary.BigEndian.Uint64(k)))
			if err != nil {
				return err
			}
			events = append(events, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list events of pipeline %s: %w", id, err)
	}
	return events, nil
}

// DeletePipelinesCompletedBefore implements store.Pipelines in one transaction.
func (s *Store) DeletePipelinesCompletedBefore(ctx context.Context, cutoff time.Time) (int, error) {
	removed := 0
	before := []byte(record.CompletedKeyBefore(cutoff))
	err := s.update(func(tx *bolt.Tx) error {
		removed = 0
		return forEachTenant(tx, func(t store.Tenant, pt *pipelineTenant) error {
			var ids []string
			c := pt.sub(bucketCompleted).Cursor()
			for k, id := c.First(); k != nil && string(k) < string(before); k, id = c.Next() {
				ids = append(ids, string(id))
			}
			for _, id := range ids {
				p, _, err := pt.get(id)
				if err != nil {
					return fmt.Errorf("completed pipeline %s: %w", id, err)
				}
				if err := pt.unindex(p); err != nil {
					return err
				}
				if err := pt.sub(bucketRecords).Delete([]byte(id)); err != nil {
					return err
				}
				if pt.sub(bucketEvents).Bucket([]byte(id)) != nil {
					if err := pt.sub(bucketEvents).DeleteBucket([]byte(id)); err != nil {
						return err
					}
				}
				if err := pt.sub(bucketLeases).Delete([]byte(id)); err != nil {
					return err
				}
				if err := pt.sub(bucketLeaseTokens).Delete([]byte(id)); err != nil {
					return err
				}
				removed++
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("delete pipelines completed before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
	}
	return removed, nil
}

// AcquireLease implements store.Leases.
func (s *Store) AcquireLease(ctx context.Context, ref store.PipelineRef, holder string, now time.Time, ttl time.Duration) (store.Lease, error) {
	var l store.Lease
	err := record.CheckLease(ref, holder, ttl)
	if err == nil {
		var refused error // as in UpdatePipeline
		err = s.batch(func(tx *bolt.Tx) error {
			refused = nil
			pt := readTenant(tx, ref.Tenant)
			if _, _, err := pt.get(ref.ID); err != nil {
				refused = err
				return nil
			}
			leases := pt.sub(bucketLeases)
			token := int64(0)
			if v := leases.Get([]byte(ref.ID)); v != nil {
				cur, err := record.DecodeLease(v, ref)
				if err != nil {
					return err
				}
				if cur.Holder != holder && cur.ExpiresAt.After(now) {
					refused = fmt.Errorf("held by %s until %s: %w", cur.Holder, cur.ExpiresAt.UTC().Format(time.RFC3339Nano), store.ErrLeaseHeld)
					return nil
				}
				if cur.Holder == holder {
					token = cur.Token
				}
			}
			if token == 0 {
				tokens := pt.sub(bucketLeaseTokens)
				if v := tokens.Get([]byte(ref.ID)); len(v) == 8 {
					token = int64(binary.BigEndian.Uint64(v))
				}
				token++
				if err := tokens.Put([]byte(ref.ID), seqKey(token)); err != nil {
					return err
				}
			}
			l = store.Lease{Pipeline: ref, Holder: holder, Token: token, ExpiresAt: record.LeaseTime(now.Add(ttl))}
			v, err := record.EncodeLease(l)
			if err != nil {
				return err
			}
			return leases.Put([]byte(ref.ID), v)
		})
		if err == nil {
			err = refused
		}
	}
	if err != nil {
		return store.Lease{}, fmt.Errorf("acquire lease of pipeline %s: %w", ref.ID, err)
	}
	return l, nil
}

// ReleaseLease implements store.Leases.
func (s *Store) ReleaseLease(ctx context.Context, l store.Lease) error {
	err := s.batch(func(tx *bolt.Tx) error {
		pt := readTenant(tx, l.Pipeline.Tenant)
		if pt == nil {
			return nil
		}
		leases := pt.sub(bucketLeases)
		v := leases.Get([]byte(l.Pipeline.ID))
		if v == nil {
			return nil
		}
		cur, err := record.DecodeLease(v, l.Pipeline)
		if err != nil {
			return err
		}
		if cur.Holder != l.Holder || cur.Token != l.Token {
			return nil
		}
		return leases.Delete([]byte(l.Pipeline.ID))
	})
	if err != nil {
		return fmt.Errorf("release lease of pipeline %s: %w", l.Pipeline.ID, err)
	}
	return nil
}

// GetLease implements store.Leases.
func (s *Store) GetLease(ctx context.Context, ref store.PipelineRef) (store.Lease, error) {
	var l store.Lease
	err := s.view(func(tx *bolt.Tx) error {
		pt := readTenant(tx, ref.Tenant)
		if pt == nil {
			return store.ErrNotFound
		}
		v := pt.sub(bucketLeases).Get([]byte(ref.ID))
		if v == nil {
			return store.ErrNotFound
		}
		var err error
		l, err = record.DecodeLease(v, ref)
		return err
	})
	if err != nil {
		return store.Lease{}, fmt.Errorf("get lease of pipeline %s: %w", ref.ID, err)
	}
	return l, nil
}

// batch runs fn in a write transaction shared with other writers arriving at the same time
// (bbolt's Batch), so many pipelines written at once cost one commit and one fsync instead
// of one each. fn may run more than once (bbolt retries a batch whose member failed alone),
// so it must depend only on the transaction's state: every caller's does.
func (s *Store) batch(fn func(*bolt.Tx) error) error { return closedAsUnavailable(s.db.Batch(fn)) }
