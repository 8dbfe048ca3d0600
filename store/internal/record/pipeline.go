package record

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sortie-dev/sortie/store"
)

// MaxPipelinePage is the largest page ListPipelines returns.
const MaxPipelinePage = 500

type pipeline struct {
	ID          string    `json:"id"`
	Tenant      tenant    `json:"tenant"`
	Application string    `json:"application"`
	Status      string    `json:"status"`
	BlockedBy   string    `json:"blocked_by"`
	Revision    int64     `json:"revision"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	CompletedAt time.Time `json:"completed_at"`
	State       []byte    `json:"state"`
	Sealed      []byte    `json:"sealed"`
	// Events counts the pipeline's events: the Seq of the last one.
	Events int64 `json:"events"`
}

type pipelineEvent struct {
	Time time.Time `json:"time"`
	Type string    `json:"type"`
	Data []byte    `json:"data"`
}

type lease struct {
	Holder    string    `json:"holder"`
	Token     int64     `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// knownStatuses are the statuses a stored pipeline may have.
var knownStatuses = map[string]bool{
	store.StatusNotStarted: true, store.StatusQueued: true, store.StatusRunning: true,
	store.StatusPaused: true, store.StatusAwaitingApproval: true, store.StatusSucceeded: true,
	store.StatusFailed: true, store.StatusCancelled: true, store.StatusRejected: true,
}

// CheckStatus refuses a status outside the store's enum.
func CheckStatus(s string) error {
	if !knownStatuses[s] {
		return fmt.Errorf("unknown pipeline status %q", s)
	}
	return nil
}

// CheckPipeline refuses a pipeline the store must not write: one without its identity, with
// an unknown status, or whose CompletedAt disagrees with its status (set exactly when the
// status is terminal, since retention counts from it).
func CheckPipeline(p store.Pipeline) error {
	if p.ID == "" || p.Tenant.OrgID == "" || p.Tenant.EnvID == "" || p.Application == "" {
		return fmt.Errorf("pipeline needs an id, a tenant and an application: %w", errEmptyID)
	}
	if err := CheckStatus(p.Status); err != nil {
		return err
	}
	switch terminal := store.TerminalStatus(p.Status); {
	case terminal && p.CompletedAt.IsZero():
		return fmt.Errorf("pipeline %s: status %s needs a CompletedAt", p.ID, p.Status)
	case !terminal && !p.CompletedAt.IsZero():
		return fmt.Errorf("pipeline %s: status %s is not terminal but CompletedAt is set", p.ID, p.Status)
	}
	return nil
}

// CheckEvents refuses events without a type.
func CheckEvents(events []store.PipelineEvent) error {
	for i, e := range events {
		if e.Type == "" {
			return fmt.Errorf("event %d has no type", i)
		}
	}
	return nil
}

// EncodePipeline returns the stored form of p, which has had events events so far. The
// caller has checked p with CheckPipeline.
func EncodePipeline(p store.Pipeline, events int64) ([]byte, error) {
	if p.ID == "" || p.Tenant.OrgID == "" || p.Tenant.EnvID == "" {
		return nil, errEmptyID
	}
	return json.Marshal(pipeline{
		ID:          p.ID,
		Tenant:      tenant{OrgID: p.Tenant.OrgID, EnvID: p.Tenant.EnvID},
		Application: p.Application,
		Status:      p.Status,
		BlockedBy:   p.BlockedBy,
		Revision:    p.Revision,
		CreatedAt:   p.CreatedAt.UTC(),
		UpdatedAt:   p.UpdatedAt.UTC(),
		CompletedAt: p.CompletedAt.UTC(),
		State:       p.State,
		Sealed:      p.Sealed,
		Events:      events,
	})
}

// DecodePipeline parses the stored form of a pipeline and returns it with its event count.
func DecodePipeline(b []byte) (store.Pipeline, int64, error) {
	var r pipeline
	if err := json.Unmarshal(b, &r); err != nil {
		return store.Pipeline{}, 0, err
	}
	return store.Pipeline{
		ID:          r.ID,
		Tenant:      store.Tenant{OrgID: r.Tenant.OrgID, EnvID: r.Tenant.EnvID},
		Application: r.Application,
		Status:      r.Status,
		BlockedBy:   r.BlockedBy,
		Revision:    r.Revision,
		CreatedAt:   r.CreatedAt,
		UpdatedAt:   r.UpdatedAt,
		CompletedAt: r.CompletedAt,
		State:       r.State,
		Sealed:      r.Sealed,
	}, r.Events, nil
}

// EncodeEvent returns the stored form of e. Its Seq is not stored: it is the event's position
// in the pipeline's history.
func EncodeEvent(e store.PipelineEvent) ([]byte, error) {
	return json.Marshal(pipelineEvent{Time: e.Time.UTC(), Type: e.Type, Data: e.Data})
}

// DecodeEvent parses the stored form of the event at position seq.
func DecodeEvent(b []byte, seq int64) (store.PipelineEvent, error) {
	var r pipelineEvent
	if err := json.Unmarshal(b, &r); err != nil {
		return store.PipelineEvent{}, err
	}
	return store.PipelineEvent{Seq: seq, Time: r.Time, Type: r.Type, Data: r.Data}, nil
}

// EncodeLease returns the stored form of l (its pipeline is the key it is stored under).
func EncodeLease(l store.Lease) ([]byte, error) {
	return json.Marshal(lease{Holder: l.Holder, Token: l.Token, ExpiresAt: l.ExpiresAt.UTC()})
}

// DecodeLease parses the stored form of the lease of pipeline ref.
func DecodeLease(b []byte, ref store.PipelineRef) (store.Lease, error) {
	var r lease
	if err := json.Unmarshal(b, &r); err != nil {
		return store.Lease{}, err
	}
	return store.Lease{Pipeline: ref, Holder: r.Holder, Token: r.Token, ExpiresAt: r.ExpiresAt}, nil
}

// LeaseTime is t as a lease keeps it: to the microsecond, which both stores can compare
// exactly (Redis scripts hold numbers as doubles).
func LeaseTime(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// CheckLease refuses lease arguments the store must not act on.
func CheckLease(ref store.PipelineRef, holder string, ttl time.Duration) error {
	if ref.ID == "" || ref.Tenant.OrgID == "" || ref.Tenant.EnvID == "" {
		return fmt.Errorf("lease needs a pipeline id and tenant: %w", errEmptyID)
	}
	if holder == "" {
		return errors.New("lease needs a holder")
	}
	if ttl <= 0 {
		return fmt.Errorf("lease ttl must be positive, not %v", ttl)
	}
	return nil
}

// sortTimeLen is the length of a sort key's time part.
const sortTimeLen = 20

// SortKey orders pipelines newest first: a fixed-width decimal that decreases as createdAt
// increases, then "/" and the id, so byte order is CreatedAt descending, then ID ascending.
func SortKey(createdAt time.Time, id string) string {
	n := uint64(createdAt.UnixNano()) ^ (1 << 63) // int64 order as uint64 order
	return fmt.Sprintf("%020d/%s", ^n, id)
}

// SortKeyID returns the id a sort key ends with.
func SortKeyID(key string) (string, error) {
	if len(key) <= sortTimeLen || key[sortTimeLen] != '/' {
		return "", fmt.Errorf("malformed pipeline sort key %q", key)
	}
	if _, err := strconv.ParseUint(key[:sortTimeLen], 10, 64); err != nil {
		return "", fmt.Errorf("malformed pipeline sort key %q", key)
	}
	return key[sortTimeLen+1:], nil
}

// ErrBadCursor means a paging cursor was not one ListPipelines returned.
var ErrBadCursor = errors.New("invalid paging cursor")

// EncodeCursor returns the opaque cursor that continues after sort key key.
func EncodeCursor(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

// DecodeCursor returns the sort key a cursor continues after ("" for the first page).
func DecodeCursor(cursor string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", ErrBadCursor
	}
	if _, err := SortKeyID(string(b)); err != nil {
		return "", ErrBadCursor
	}
	return string(b), nil
}

// CheckFilter refuses a filter with an unknown status or a bad cursor, and returns its page
// size and the sort key to continue after.
func CheckFilter(f store.PipelineFilter) (limit int, after string, err error) {
	for _, s := range f.Statuses {
		if err := CheckStatus(s); err != nil {
			return 0, "", err
		}
	}
	after, err = DecodeCursor(f.After)
	if err != nil {
		return 0, "", err
	}
	limit = f.Limit
	if limit <= 0 || limit > MaxPipelinePage {
		limit = MaxPipelinePage
	}
	return limit, after, nil
}

// Index names of the tenant's pipeline indexes, each ordered by sort key.
const indexAll = "all"

// IndexNames returns the indexes a pipeline of application app in status belongs to: every
// pipeline, the application's, the status's, and the application's in that status. The
// application is query-escaped, which leaves no ':' in it, so no application's name can
// spell another's index.
func IndexNames(app, status string) []string {
	a := "app:" + url.QueryEscape(app)
	return []string{indexAll, a, "status:" + status, a + ":status:" + status}
}

// FilterIndexes returns the indexes whose union, merged by sort key, is exactly the
// pipelines f selects.
func FilterIndexes(f store.PipelineFilter) []string {
	var names []string
	if len(f.Statuses) == 0 {
		if f.Application == "" {
			return []string{indexAll}
		}
		return []string{"app:" + url.QueryEscape(f.Application)}
	}
	seen := map[string]bool{}
	for _, s := range f.Statuses {
		if seen[s] {
			continue
		}
		seen[s] = true
		if f.Application == "" {
			names = append(names, "status:"+s)
		} else {
			names = append(names, "app:"+url.QueryEscape(f.Application)+":status:"+s)
		}
	}
	return names
}

// CompletedKey orders finished pipelines by completion, oldest first, for the retention
// prune: a fixed-width decimal of the completion time, "/" and the id.
func CompletedKey(completedAt time.Time, id string) string {
	return fmt.Sprintf("%020d/%s", uint64(completedAt.UnixNano())^(1<<63), id)
}

// CompletedKeyBefore is the smallest completed key of a pipeline completed at or after cutoff.
func CompletedKeyBefore(cutoff time.Time) string {
	return fmt.Sprintf("%020d/", uint64(cutoff.UnixNano())^(1<<63))
}

// SortPipelines orders pipelines newest first (CreatedAt descending, then ID), the order
// ListPipelines promises.
func SortPipelines(ps []store.Pipeline) {
	slices.SortFunc(ps, func(a, b store.Pipeline) int {
		return strings.Compare(SortKey(a.CreatedAt, a.ID), SortKey(b.CreatedAt, b.ID))
	})
}

// MergeSortKeys sorts and deduplicates the sort keys read from several indexes and returns
// the first limit, reporting whether more were left.
func MergeSortKeys(keys []string, limit int) ([]string, bool) {
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if len(keys) > limit {
		return keys[:limit], true
	}
	return keys, false
}

// ClonePipeline returns p with its own copies of State and Sealed, so a store hands out
// nothing the caller passed in.
func ClonePipeline(p store.Pipeline) store.Pipeline {
	p.State, p.Sealed = bytes.Clone(p.State), bytes.Clone(p.Sealed)
	return p
}
