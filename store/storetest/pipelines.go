package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/store"
)

// pipeline returns an active pipeline of application app created at createdAt.
func pipeline(t store.Tenant, id, app string, createdAt time.Time) store.Pipeline {
	return store.Pipeline{
		ID:          id,
		Tenant:      t,
		Application: app,
		Status:      store.StatusRunning,
		CreatedAt:   createdAt,
		UpdatedAt:   createdAt,
		State:       []byte(`{"targets":["` + id + `"]}`),
		Sealed:      []byte("sealed " + id),
	}
}

// finished returns p in terminal status at completedAt.
func finished(p store.Pipeline, status string, completedAt time.Time) store.Pipeline {
	p.Status, p.UpdatedAt, p.CompletedAt = status, completedAt, completedAt
	return p
}

func event(typ string, d time.Duration) store.PipelineEvent {
	return store.PipelineEvent{Time: at(d), Type: typ, Data: []byte(`{"t":"` + typ + `"}`)}
}

// withSeq returns events numbered from first.
func withSeq(first int64, events ...store.PipelineEvent) []store.PipelineEvent {
	out := slices.Clone(events)
	for i := range out {
		out[i].Seq = first + int64(i)
	}
	return out
}

// create stores p under rule and fails the test on an error.
func create(t *testing.T, s store.Store, p store.Pipeline, rule store.InProgressRule, events ...store.PipelineEvent) store.CreateResult {
	t.Helper()
	return ok(s.CreatePipeline(t.Context(), p, rule, events))(t)
}

// stored returns p as CreatePipeline stores it with no active pipeline.
func stored(p store.Pipeline) store.Pipeline {
	p.Revision = 1
	return p
}

func ids(ps []store.Pipeline) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

func testPipelines(t *testing.T, ps store.Store) {
	ctx := t.Context()
	tenantA, tenantB, _ := tenants()
	p1 := pipeline(tenantA, "p1", "web", at(0))
	res := create(t, ps, p1, store.RejectInProgress, event("created", 0), event("planned", time.Second))
	diff(t, "CreatePipeline", store.CreateResult{Pipeline: stored(p1)}, res)
	diff(t, "GetPipeline", stored(p1), ok(ps.GetPipeline(ctx, tenantA, "p1"))(t))

	checkErrors(t, []errCase{
		{"duplicate id", func(ctx context.Context) error {
			return errOf(ps.CreatePipeline(ctx, pipeline(tenantA, "p1", "api", at(time.Hour)), store.EnqueueOne, nil))
		}, store.ErrConflict},
		{"another tenant's id", func(ctx context.Context) error {
			return errOf(ps.GetPipeline(ctx, tenantB, "p1"))
		}, store.ErrNotFound},
		{"missing", func(ctx context.Context) error {
			return errOf(ps.GetPipeline(ctx, tenantA, "p2"))
		}, store.ErrNotFound},
		{"events of another tenant's id", func(ctx context.Context) error {
			return errOf(ps.ListPipelineEvents(ctx, tenantB, "p1", 0, 0))
		}, store.ErrNotFound},
		{"update through another tenant", func(ctx context.Context) error {
			p := stored(p1)
			p.Tenant = tenantB
			return errOf(ps.UpdatePipeline(ctx, p, nil, nil))
		}, store.ErrNotFound},
		{"update of a missing pipeline", func(ctx context.Context) error {
			return errOf(ps.UpdatePipeline(ctx, stored(pipeline(tenantA, "p2", "web", at(0))), nil, nil))
		}, store.ErrNotFound},
	})

	t.Run("update", func(t *testing.T) {
		want := stored(p1)
		want.Status, want.BlockedBy, want.UpdatedAt = store.StatusPaused, "x", at(time.Minute)
		want.State, want.Sealed = []byte(`{"step":2}`), []byte("sealed 2")
		arg := want
		arg.Application, arg.CreatedAt = "renamed", at(time.Hour) // never change
		want.Revision = 2
		diff(t, "UpdatePipeline", want, ok(ps.UpdatePipeline(ctx, arg, nil, []store.PipelineEvent{event("paused", time.Minute)}))(t))
		diff(t, "GetPipeline after update", want, ok(ps.GetPipeline(ctx, tenantA, "p1"))(t))

		stale := arg // still revision 1
		stale.Status = store.StatusRunning
		if _, err := ps.UpdatePipeline(ctx, stale, nil, []store.PipelineEvent{event("lost", time.Hour)}); !errors.Is(err, store.ErrStale) {
			t.Errorf("UpdatePipeline at an old revision = %v, want ErrStale", err)
		}
		diff(t, "GetPipeline after a stale update", want, ok(ps.GetPipeline(ctx, tenantA, "p1"))(t))
		diff(t, "events", withSeq(1, event("created", 0), event("planned", time.Second), event("paused", time.Minute)),
			ok(ps.ListPipelineEvents(ctx, tenantA, "p1", 0, 0))(t))
	})

	t.Run("finished stays finished", func(t *testing.T) {
		cur := ok(ps.GetPipeline(ctx, tenantA, "p1"))(t)
		done := ok(ps.UpdatePipeline(ctx, finished(cur, store.StatusSucceeded, at(time.Hour)), nil, nil))(t)
		if done.Revision != cur.Revision+1 || done.Status != store.StatusSucceeded {
			t.Errorf("finished pipeline = revision %d, %s; want %d, SUCCEEDED", done.Revision, done.Status, cur.Revision+1)
		}
		again := done
		again.Status, again.CompletedAt = store.StatusRunning, time.Time{}
		if _, err := ps.UpdatePipeline(ctx, again, nil, nil); err == nil || errors.Is(err, store.ErrStale) {
			t.Errorf("reviving a finished pipeline = %v, want a refusal", err)
		}
		diff(t, "GetPipeline after a refused revival", done, ok(ps.GetPipeline(ctx, tenantA, "p1"))(t))
		// A finished pipeline's state may still change (for example a late event).
		done.State = []byte(`{"final":true}`)
		later := ok(ps.UpdatePipeline(ctx, done, nil, nil))(t)
		if later.Revision != done.Revision+1 || later.Status != store.StatusSucceeded {
			t.Errorf("update of a finished pipeline = revision %d, %s", later.Revision, later.Status)
		}
	})
}

// testPipelineBadInput checks that malformed pipelines and arguments are refused, change
// nothing, and are not mistaken for the sentinels.
func testPipelineBadInput(t *testing.T, ps store.Store) {
	tenantA, _, _ := tenants()
	good := pipeline(tenantA, "p1", "web", at(0))
	with := func(f func(p *store.Pipeline)) store.Pipeline {
		p := good
		f(&p)
		return p
	}
	tests := []struct {
		name   string
		p      store.Pipeline
		rule   store.InProgressRule
		events []store.PipelineEvent
	}{
		{"no id", with(func(p *store.Pipeline) { p.ID = "" }), store.RejectInProgress, nil},
		{"no environment", with(func(p *store.Pipeline) { p.Tenant.EnvID = "" }), store.RejectInProgress, nil},
		{"no application", with(func(p *store.Pipeline) { p.Application = "" }), store.RejectInProgress, nil},
		{"unknown status", with(func(p *store.Pipeline) { p.Status = "DONE" }), store.RejectInProgress, nil},
		{"no status", with(func(p *store.Pipeline) { p.Status = "" }), store.RejectInProgress, nil},
		{"terminal without CompletedAt", with(func(p *store.Pipeline) { p.Status = store.StatusFailed }), store.RejectInProgress, nil},
		{"active with CompletedAt", with(func(p *store.Pipeline) { p.CompletedAt = at(time.Hour) }), store.RejectInProgress, nil},
		{"event without type", good, store.RejectInProgress, []store.PipelineEvent{{Time: at(0)}}},
		{"unknown rule", good, store.InProgressRule(7), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ps.CreatePipeline(t.Context(), tt.p, tt.rule, tt.events)
			if err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrInProgress) {
				t.Errorf("CreatePipeline = %v, want a refusal", err)
			}
		})
	}
	ctx := t.Context()
	if _, err := ps.GetPipeline(ctx, tenantA, "p1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetPipeline of a refused pipeline = %v, want ErrNotFound", err)
	}
	diff(t, "ListActivePipelines", []store.PipelineRef(nil), ok(ps.ListActivePipelines(ctx))(t))

	p := create(t, ps, good, store.RejectInProgress).Pipeline
	other := stored(pipeline(tenantA, "p2", "web", at(0)))
	leaseErrs := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"update to an unknown status", func(ctx context.Context) error {
			return errOf(ps.UpdatePipeline(ctx, with(func(q *store.Pipeline) { *q = p; q.Status = "DONE" }), nil, nil))
		}},
		{"fence of another pipeline", func(ctx context.Context) error {
			l := store.Lease{Pipeline: store.PipelineRef{Tenant: tenantA, ID: other.ID}, Holder: "r1", Token: 1, ExpiresAt: time.Now().Add(time.Hour)}
			return errOf(ps.UpdatePipeline(ctx, p, &l, nil))
		}},
		{"lease without holder", func(ctx context.Context) error {
			return errOf(ps.AcquireLease(ctx, store.PipelineRef{Tenant: tenantA, ID: "p1"}, "", at(0), time.Second))
		}},
		{"lease without ttl", func(ctx context.Context) error {
			return errOf(ps.AcquireLease(ctx, store.PipelineRef{Tenant: tenantA, ID: "p1"}, "r1", at(0), 0))
		}},
		{"list with an unknown status", func(ctx context.Context) error {
			_, _, err := ps.ListPipelines(ctx, tenantA, store.PipelineFilter{Statuses: []string{"DONE"}})
			return err
		}},
		{"list with a made-up cursor", func(ctx context.Context) error {
			_, _, err := ps.ListPipelines(ctx, tenantA, store.PipelineFilter{After: "bm90IGEgY3Vyc29y"})
			return err
		}},
	}
	for _, tt := range leaseErrs {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(t.Context())
			if err == nil || errors.Is(err, store.ErrStale) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnavailable) {
				t.Errorf("error = %v, want a refusal", err)
			}
		})
	}
	diff(t, "GetPipeline after refused updates", p, ok(ps.GetPipeline(ctx, tenantA, "p1"))(t))
	if _, err := ps.GetLease(ctx, store.PipelineRef{Tenant: tenantA, ID: "p1"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetLease after refused acquisitions = %v, want ErrNotFound", err)
	}
}

func testPipelineList(t *testing.T, ps store.Store) {
	ctx := t.Context()
	tenantA, tenantB, _ := tenants()
	// p1..p7 created a minute apart; p3 and p4 share their CreatedAt, so ID breaks the tie.
	specs := []struct {
		id, app, status string
		d               time.Duration
	}{
		{"p1", "web", store.StatusSucceeded, 1 * time.Minute},
		{"p2", "api", store.StatusFailed, 2 * time.Minute},
		{"p4", "web", store.StatusCancelled, 3 * time.Minute},
		{"p3", "api", store.StatusSucceeded, 3 * time.Minute},
		{"p5", "web", store.StatusRunning, 5 * time.Minute},
		{"p6", "api", store.StatusAwaitingApproval, 6 * time.Minute},
		{"p7", "db", store.StatusNotStarted, 7 * time.Minute},
	}
	byID := map[string]store.Pipeline{}
	for _, sp := range specs {
		p := pipeline(tenantA, sp.id, sp.app, at(sp.d))
		if store.TerminalStatus(sp.status) {
			p = finished(p, sp.status, at(sp.d+time.Second))
		} else {
			p.Status = sp.status
		}
		byID[sp.id] = create(t, ps, p, store.RejectInProgress).Pipeline
	}
	create(t, ps, pipeline(tenantB, "b1", "web", at(time.Hour)), store.RejectInProgress)

	// list pages through f with the given page size and returns the ids of each page.
	list := func(t *testing.T, tenant store.Tenant, f store.PipelineFilter) [][]string {
		t.Helper()
		var pages [][]string
		for range 20 {
			page, next := func() ([]store.Pipeline, string) {
				p, n, err := ps.ListPipelines(ctx, tenant, f)
				must(t, err)
				return p, n
			}()
			for _, p := range page {
				diff(t, "listed "+p.ID, byID[p.ID], p)
			}
			pages = append(pages, ids(page))
			if next == "" {
				return pages
			}
			f.After = next
		}
		t.Fatal("ListPipelines never returned the last page")
		return nil
	}
	tests := []struct {
		name string
		f    store.PipelineFilter
		want [][]string
	}{
		{"all, newest first", store.PipelineFilter{}, [][]string{{"p7", "p6", "p5", "p3", "p4", "p2", "p1"}}},
		{"pages of 3", store.PipelineFilter{Limit: 3}, [][]string{{"p7", "p6", "p5"}, {"p3", "p4", "p2"}, {"p1"}}},
		{"pages that end exactly", store.PipelineFilter{Limit: 7}, [][]string{{"p7", "p6", "p5", "p3", "p4", "p2", "p1"}}},
		{"one application", store.PipelineFilter{Application: "web", Limit: 2}, [][]string{{"p5", "p4"}, {"p1"}}},
		{"statuses", store.PipelineFilter{Statuses: []string{store.StatusSucceeded, store.StatusRunning}, Limit: 2}, [][]string{{"p5", "p3"}, {"p1"}}},
		{"application and statuses", store.PipelineFilter{Application: "api", Statuses: []string{store.StatusSucceeded, store.StatusAwaitingApproval, store.StatusSucceeded}}, [][]string{{"p6", "p3"}}},
		{"no match", store.PipelineFilter{Application: "web", Statuses: []string{store.StatusQueued}}, [][]string{nil}},
		{"unknown application", store.PipelineFilter{Application: "web/"}, [][]string{nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diff(t, "pages", tt.want, list(t, tenantA, tt.f))
		})
	}
	t.Run("other tenant", func(t *testing.T) {
		byID["b1"] = ok(ps.GetPipeline(ctx, tenantB, "b1"))(t)
		diff(t, "pages", [][]string{{"b1"}}, list(t, tenantB, store.PipelineFilter{}))
	})
	t.Run("application names that spell other indexes", func(t *testing.T) {
		for _, app := range []string{"web:status:RUNNING", "web:status:" + store.StatusCancelled, "status:" + store.StatusSucceeded} {
			diff(t, app, [][]string{nil}, list(t, tenantA, store.PipelineFilter{Application: app}))
		}
	})
	t.Run("tenant without pipelines", func(t *testing.T) {
		diff(t, "pages", [][]string{nil}, list(t, store.Tenant{OrgID: "acme", EnvID: "none"}, store.PipelineFilter{}))
	})
	t.Run("status change moves the pipeline between status filters", func(t *testing.T) {
		p5 := byID["p5"]
		p5.Status = store.StatusPaused
		byID["p5"] = ok(ps.UpdatePipeline(ctx, p5, nil, nil))(t)
		diff(t, "running", [][]string{nil}, list(t, tenantA, store.PipelineFilter{Statuses: []string{store.StatusRunning}}))
		diff(t, "paused", [][]string{{"p5"}}, list(t, tenantA, store.PipelineFilter{Statuses: []string{store.StatusPaused}}))
		diff(t, "web", [][]string{{"p5", "p4", "p1"}}, list(t, tenantA, store.PipelineFilter{Application: "web"}))
	})
	t.Run("cursor survives new pipelines", func(t *testing.T) {
		page, next, err := ps.ListPipelines(ctx, tenantA, store.PipelineFilter{Limit: 2})
		must(t, err)
		diff(t, "first page", []string{"p7", "p6"}, ids(page))
		byID["p8"] = create(t, ps, pipeline(tenantA, "p8", "db", at(time.Hour)), store.EnqueueOne).Pipeline
		page, _, err = ps.ListPipelines(ctx, tenantA, store.PipelineFilter{Limit: 2, After: next})
		must(t, err)
		diff(t, "second page", []string{"p5", "p3"}, ids(page))
	})
}

func testInProgressRules(t *testing.T, ps store.Store) {
	ctx := t.Context()
	tenantA, tenantB, _ := tenants()
	running := create(t, ps, pipeline(tenantA, "run", "web", at(0)), store.RejectInProgress).Pipeline

	t.Run("reject", func(t *testing.T) {
		_, err := ps.CreatePipeline(ctx, pipeline(tenantA, "rej", "web", at(time.Minute)), store.RejectInProgress, []store.PipelineEvent{event("created", time.Minute)})
		ipe, isIPE := errors.AsType[*store.InProgressError](err)
		if !errors.Is(err, store.ErrInProgress) || !isIPE || ipe.PipelineID != "run" {
			t.Fatalf("CreatePipeline = %v, want an InProgressError naming run", err)
		}
		if _, err := ps.GetPipeline(ctx, tenantA, "rej"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetPipeline of the rejected request = %v, want ErrNotFound", err)
		}
	})
	t.Run("other applications and tenants are not blocked", func(t *testing.T) {
		create(t, ps, pipeline(tenantA, "api1", "api", at(time.Minute)), store.RejectInProgress)
		create(t, ps, pipeline(tenantB, "web-b", "web", at(time.Minute)), store.RejectInProgress)
	})
	t.Run("finished pipelines do not block", func(t *testing.T) {
		done := create(t, ps, finished(pipeline(tenantA, "db-old", "db", at(0)), store.StatusFailed, at(time.Second)), store.RejectInProgress).Pipeline
		if done.Status != store.StatusFailed || done.BlockedBy != "" {
			t.Errorf("finished pipeline stored as %s blocked by %q", done.Status, done.BlockedBy)
		}
		db := pipeline(tenantA, "db1", "db", at(time.Minute))
		diff(t, "CreatePipeline", store.CreateResult{Pipeline: stored(db)}, create(t, ps, db, store.RejectInProgress))
	})

	q1 := pipeline(tenantA, "q1", "web", at(2*time.Minute))
	t.Run("enqueue behind the running one", func(t *testing.T) {
		want := stored(q1)
		want.Status, want.BlockedBy = store.StatusQueued, "run"
		diff(t, "CreatePipeline", store.CreateResult{Pipeline: want}, create(t, ps, q1, store.EnqueueOne, event("created", 2*time.Minute)))
		diff(t, "QueuedPipeline", want, ok(ps.QueuedPipeline(ctx, tenantA, "web"))(t))
		diff(t, "events", withSeq(1, event("created", 2*time.Minute), store.PipelineEvent{Time: at(2 * time.Minute), Type: store.EventQueued}),
			ok(ps.ListPipelineEvents(ctx, tenantA, "q1", 0, 0))(t))
	})
	t.Run("a queued one blocks a rejecting one too", func(t *testing.T) {
		_, err := ps.CreatePipeline(ctx, pipeline(tenantA, "rej2", "web", at(3*time.Minute)), store.RejectInProgress, nil)
		if ipe, isIPE := errors.AsType[*store.InProgressError](err); !isIPE || ipe.PipelineID != "run" {
			t.Errorf("CreatePipeline = %v, want an InProgressError naming run", err)
		}
	})
	q2 := pipeline(tenantA, "q2", "web", at(4*time.Minute))
	t.Run("a newer one replaces the queued one", func(t *testing.T) {
		want := stored(q2)
		want.Status, want.BlockedBy = store.StatusQueued, "run"
		replaced := stored(q1)
		replaced.Status, replaced.BlockedBy, replaced.Revision = store.StatusRejected, "q2", 2
		replaced.UpdatedAt, replaced.CompletedAt = q2.CreatedAt, q2.CreatedAt
		diff(t, "CreatePipeline", store.CreateResult{Pipeline: want, Replaced: &replaced}, create(t, ps, q2, store.EnqueueOne))
		diff(t, "GetPipeline of the replaced one", replaced, ok(ps.GetPipeline(ctx, tenantA, "q1"))(t))
		diff(t, "QueuedPipeline", want, ok(ps.QueuedPipeline(ctx, tenantA, "web"))(t))
		diff(t, "events of the replaced one", withSeq(1,
			event("created", 2*time.Minute),
			store.PipelineEvent{Time: at(2 * time.Minute), Type: store.EventQueued},
			store.PipelineEvent{Time: at(4 * time.Minute), Type: store.EventReplaced},
		), ok(ps.ListPipelineEvents(ctx, tenantA, "q1", 0, 0))(t))
		page, _, err := ps.ListPipelines(ctx, tenantA, store.PipelineFilter{Statuses: []string{store.StatusRejected}})
		must(t, err)
		diff(t, "rejected pipelines", []string{"q1"}, ids(page))
	})
	t.Run("after the running one finishes the queued one still holds the line", func(t *testing.T) {
		ok(ps.UpdatePipeline(ctx, finished(running, store.StatusSucceeded, at(5*time.Minute)), nil, nil))(t)
		_, err := ps.CreatePipeline(ctx, pipeline(tenantA, "rej3", "web", at(6*time.Minute)), store.RejectInProgress, nil)
		if ipe, isIPE := errors.AsType[*store.InProgressError](err); !isIPE || ipe.PipelineID != "q2" {
			t.Errorf("CreatePipeline = %v, want an InProgressError naming q2", err)
		}
		q3 := pipeline(tenantA, "q3", "web", at(7*time.Minute))
		res := create(t, ps, q3, store.EnqueueOne)
		if res.Pipeline.Status != store.StatusQueued || res.Pipeline.BlockedBy != "run" || res.Replaced == nil || res.Replaced.ID != "q2" {
			t.Errorf("CreatePipeline = %s blocked by %q, replaced %v; want QUEUED inheriting run, replacing q2", res.Pipeline.Status, res.Pipeline.BlockedBy, res.Replaced)
		}
	})
	t.Run("no queued pipeline", func(t *testing.T) {
		if _, err := ps.QueuedPipeline(ctx, tenantA, "api"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("QueuedPipeline = %v, want ErrNotFound", err)
		}
		if _, err := ps.QueuedPipeline(ctx, tenantB, "web"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("QueuedPipeline of another tenant = %v, want ErrNotFound", err)
		}
	})
	t.Run("active pipelines", func(t *testing.T) {
		got := ok(ps.ListActivePipelines(ctx))(t)
		want := []store.PipelineRef{
			{Tenant: tenantB, ID: "web-b"}, // acme/dev sorts before acme/prod
			{Tenant: tenantA, ID: "api1"}, {Tenant: tenantA, ID: "db1"}, {Tenant: tenantA, ID: "q3"},
		}
		sortRefs(got)
		diff(t, "ListActivePipelines", want, got)
	})
}

func sortRefs(refs []store.PipelineRef) {
	slices.SortFunc(refs, func(a, b store.PipelineRef) int {
		if c := cmpString(a.Tenant.String(), b.Tenant.String()); c != 0 {
			return c
		}
		return cmpString(a.ID, b.ID)
	})
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testPipelineEvents(t *testing.T, ps store.Store) {
	ctx := t.Context()
	tenantA, _, _ := tenants()
	p := create(t, ps, pipeline(tenantA, "p1", "web", at(0)), store.RejectInProgress, event("e1", 1), event("e2", 2)).Pipeline
	diff(t, "events of a pipeline without events", []store.PipelineEvent(nil),
		ok(ps.ListPipelineEvents(ctx, tenantA, create(t, ps, pipeline(tenantA, "p2", "api", at(0)), store.RejectInProgress).Pipeline.ID, 0, 0))(t))
	// Seq given by the caller is ignored.
	e3 := event("e3", 3)
	e3.Seq = 99
	p = ok(ps.UpdatePipeline(ctx, p, nil, []store.PipelineEvent{e3, event("e4", 4), event("e5", 5)}))(t)
	p = ok(ps.UpdatePipeline(ctx, p, nil, nil))(t)
	ok(ps.UpdatePipeline(ctx, p, nil, []store.PipelineEvent{event("e6", 6)}))(t)

	all := withSeq(1, event("e1", 1), event("e2", 2), event("e3", 3), event("e4", 4), event("e5", 5), event("e6", 6))
	tests := []struct {
		name     string
		afterSeq int64
		limit    int
		want     []store.PipelineEvent
	}{
		{"all", 0, 0, all},
		{"after 2, at most 2", 2, 2, all[2:4]},
		{"after 4", 4, 0, all[4:]},
		{"limit beyond the end", 5, 10, all[5:]},
		{"after the last", 6, 0, nil},
		{"far after the last", 100, 3, nil},
		{"negative afterSeq", -5, 1, all[:1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diff(t, "ListPipelineEvents", tt.want, ok(ps.ListPipelineEvents(ctx, tenantA, "p1", tt.afterSeq, tt.limit))(t))
		})
	}
}

func testLeases(t *testing.T, ps store.Store) {
	ctx := t.Context()
	tenantA, tenantB, _ := tenants()
	p := create(t, ps, pipeline(tenantA, "p1", "web", at(0)), store.RejectInProgress).Pipeline
	ref := store.PipelineRef{Tenant: tenantA, ID: "p1"}
	now := time.Now()

	l1 := ok(ps.AcquireLease(ctx, ref, "r1", now, time.Minute))(t)
	if l1.Token <= 0 || l1.Holder != "r1" || l1.Pipeline != ref || !l1.ExpiresAt.Equal(now.Add(time.Minute).Truncate(time.Microsecond)) {
		t.Fatalf("AcquireLease = %+v, want r1's with a positive token until now+1m", l1)
	}
	diff(t, "GetLease", l1, ok(ps.GetLease(ctx, ref))(t))

	checkErrors(t, []errCase{
		{"held by another", func(ctx context.Context) error {
			return errOf(ps.AcquireLease(ctx, ref, "r2", now.Add(59*time.Second), time.Minute))
		}, store.ErrLeaseHeld},
		{"missing pipeline", func(ctx context.Context) error {
			return errOf(ps.AcquireLease(ctx, store.PipelineRef{Tenant: tenantA, ID: "p2"}, "r1", now, time.Minute))
		}, store.ErrNotFound},
		{"another tenant's pipeline", func(ctx context.Context) error {
			return errOf(ps.AcquireLease(ctx, store.PipelineRef{Tenant: tenantB, ID: "p1"}, "r1", now, time.Minute))
		}, store.ErrNotFound},
		{"lease of another tenant's pipeline", func(ctx context.Context) error {
			return errOf(ps.GetLease(ctx, store.PipelineRef{Tenant: tenantB, ID: "p1"}))
		}, store.ErrNotFound},
	})

	renewed := ok(ps.AcquireLease(ctx, ref, "r1", now.Add(30*time.Second), time.Minute))(t)
	if renewed.Token != l1.Token || !renewed.ExpiresAt.After(l1.ExpiresAt) {
		t.Errorf("renewal = token %d until %v; want token %d, later than %v", renewed.Token, renewed.ExpiresAt, l1.Token, l1.ExpiresAt)
	}
	// The fence is judged by the stored lease: the first copy still works after a renewal.
	p = ok(ps.UpdatePipeline(ctx, p, &l1, []store.PipelineEvent{event("by r1", 0)}))(t)

	// r2 takes over once r1's lease has expired (by r2's clock).
	l2 := ok(ps.AcquireLease(ctx, ref, "r2", now.Add(2*time.Minute), time.Hour))(t)
	if l2.Token <= l1.Token {
		t.Errorf("new holder's token %d, want more than %d", l2.Token, l1.Token)
	}
	if _, err := ps.UpdatePipeline(ctx, p, &renewed, []store.PipelineEvent{event("lost", 0)}); !errors.Is(err, store.ErrStale) {
		t.Errorf("UpdatePipeline with the old holder's lease = %v, want ErrStale", err)
	}
	stolen := l2
	stolen.Holder = "r1"
	if _, err := ps.UpdatePipeline(ctx, p, &stolen, nil); !errors.Is(err, store.ErrStale) {
		t.Errorf("UpdatePipeline with the new token but another holder = %v, want ErrStale", err)
	}
	p = ok(ps.UpdatePipeline(ctx, p, &l2, []store.PipelineEvent{event("by r2", 0)}))(t)
	diff(t, "events", withSeq(1, event("by r1", 0), event("by r2", 0)), ok(ps.ListPipelineEvents(ctx, tenantA, "p1", 0, 0))(t))

	// Releasing with a stale lease does nothing; with the current one frees the pipeline.
	must(t, ps.ReleaseLease(ctx, l1))
	diff(t, "GetLease after a stale release", l2, ok(ps.GetLease(ctx, ref))(t))
	must(t, ps.ReleaseLease(ctx, l2))
	if _, err := ps.GetLease(ctx, ref); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetLease after release = %v, want ErrNotFound", err)
	}
	if _, err := ps.UpdatePipeline(ctx, p, &l2, nil); !errors.Is(err, store.ErrStale) {
		t.Errorf("UpdatePipeline with a released lease = %v, want ErrStale", err)
	}
	must(t, ps.ReleaseLease(ctx, l2))

	// Even the same holder gets a greater token after a release.
	l3 := ok(ps.AcquireLease(ctx, ref, "r2", now, time.Minute))(t)
	if l3.Token <= l2.Token {
		t.Errorf("token after release %d, want more than %d", l3.Token, l2.Token)
	}

	// An expired lease (by this process's clock) fences nothing.
	expired := ok(ps.AcquireLease(ctx, ref, "r2", time.Now().Add(-time.Minute), time.Second))(t)
	if expired.Token != l3.Token {
		t.Errorf("renewal by the same holder changed the token to %d, want %d", expired.Token, l3.Token)
	}
	if _, err := ps.UpdatePipeline(ctx, p, &expired, nil); !errors.Is(err, store.ErrStale) {
		t.Errorf("UpdatePipeline with an expired lease = %v, want ErrStale", err)
	}
	diff(t, "GetPipeline after refused writes", p, ok(ps.GetPipeline(ctx, tenantA, "p1"))(t))
}

func testRetention(t *testing.T, ps store.Store) {
	ctx := t.Context()
	tenantA, tenantB, _ := tenants()
	oldA := create(t, ps, finished(pipeline(tenantA, "old-a", "web", at(0)), store.StatusSucceeded, at(time.Hour)), store.RejectInProgress, event("e", 0)).Pipeline
	create(t, ps, finished(pipeline(tenantB, "old-b", "web", at(0)), store.StatusFailed, at(2*time.Hour)), store.RejectInProgress)
	recent := create(t, ps, finished(pipeline(tenantA, "recent", "web", at(0)), store.StatusCancelled, at(3*time.Hour)), store.RejectInProgress).Pipeline
	active := create(t, ps, pipeline(tenantA, "active", "web", at(0)), store.RejectInProgress).Pipeline
	ok(ps.AcquireLease(ctx, store.PipelineRef{Tenant: tenantA, ID: "old-a"}, "r1", at(0), time.Minute))(t)
	// One that finished through an update, with a queued one replaced on the way.
	q := create(t, ps, pipeline(tenantA, "queued", "web", at(time.Minute)), store.EnqueueOne).Pipeline
	replaced := create(t, ps, pipeline(tenantA, "newer", "web", at(90*time.Minute)), store.EnqueueOne).Replaced
	if replaced == nil || replaced.ID != q.ID {
		t.Fatalf("the newer pipeline replaced %v, want %s", replaced, q.ID)
	}

	cutoff := at(150 * time.Minute) // after old-a, old-b and queued (rejected at 90m), before recent
	diff(t, "removed", 3, ok(ps.DeletePipelinesCompletedBefore(ctx, cutoff))(t))
	diff(t, "removed again", 0, ok(ps.DeletePipelinesCompletedBefore(ctx, cutoff))(t))

	for _, ref := range []store.PipelineRef{{Tenant: tenantA, ID: "old-a"}, {Tenant: tenantB, ID: "old-b"}, {Tenant: tenantA, ID: "queued"}} {
		if _, err := ps.GetPipeline(ctx, ref.Tenant, ref.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetPipeline of pruned %s = %v, want ErrNotFound", ref.ID, err)
		}
		if _, err := ps.ListPipelineEvents(ctx, ref.Tenant, ref.ID, 0, 0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ListPipelineEvents of pruned %s = %v, want ErrNotFound", ref.ID, err)
		}
		if _, err := ps.GetLease(ctx, ref); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetLease of pruned %s = %v, want ErrNotFound", ref.ID, err)
		}
	}
	diff(t, "GetPipeline of a recent one", recent, ok(ps.GetPipeline(ctx, tenantA, "recent"))(t))
	diff(t, "GetPipeline of an active one", active, ok(ps.GetPipeline(ctx, tenantA, "active"))(t))
	page, _, err := ps.ListPipelines(ctx, tenantA, store.PipelineFilter{})
	must(t, err)
	diff(t, "ListPipelines a", []string{"newer", "active", "recent"}, ids(page))
	page, _, err = ps.ListPipelines(ctx, tenantA, store.PipelineFilter{Statuses: []string{store.StatusRejected, store.StatusSucceeded}})
	must(t, err)
	diff(t, "ListPipelines of pruned statuses", []string(nil), ids(page))
	page, _, err = ps.ListPipelines(ctx, tenantB, store.PipelineFilter{Application: "web"})
	must(t, err)
	diff(t, "ListPipelines b", []string(nil), ids(page))

	// The id is free again, and starts a fresh history and fencing counter.
	again := create(t, ps, finished(pipeline(tenantA, "old-a", "api", at(5*time.Hour)), store.StatusSucceeded, at(5*time.Hour)), store.RejectInProgress).Pipeline
	diff(t, "events of a reused id", []store.PipelineEvent(nil), ok(ps.ListPipelineEvents(ctx, tenantA, again.ID, 0, 0))(t))
	if oldA.ID != again.ID {
		t.Fatal("unreachable")
	}
}

// raceN is how many callers the race tests start at once.
const raceN = 16

func testPipelineRaces(t *testing.T, ps store.Store) {
	tenantA, _, _ := tenants()

	t.Run("reject: one creation wins", func(t *testing.T) {
		ctx := t.Context()
		errs := make([]error, raceN)
		var wg sync.WaitGroup
		for i := range raceN {
			wg.Go(func() {
				_, errs[i] = ps.CreatePipeline(ctx, pipeline(tenantA, fmt.Sprintf("r%d", i), "race", at(0)), store.RejectInProgress, nil)
			})
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("r%d and r%d were both created", winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrInProgress):
				t.Errorf("r%d: error = %v, want nil or ErrInProgress", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no pipeline was created")
		}
		for i, err := range errs {
			if ipe, isIPE := errors.AsType[*store.InProgressError](err); isIPE && ipe.PipelineID != fmt.Sprintf("r%d", winner) {
				t.Errorf("r%d was blocked by %s, want r%d", i, ipe.PipelineID, winner)
			}
		}
		page, _, err := ps.ListPipelines(ctx, tenantA, store.PipelineFilter{Application: "race"})
		must(t, err)
		diff(t, "stored", []string{fmt.Sprintf("r%d", winner)}, ids(page))
	})

	t.Run("enqueue: one stays queued", func(t *testing.T) {
		ctx := t.Context()
		create(t, ps, pipeline(tenantA, "head", "queue", at(0)), store.RejectInProgress)
		errs := make([]error, raceN)
		var wg sync.WaitGroup
		for i := range raceN {
			wg.Go(func() {
				_, errs[i] = ps.CreatePipeline(ctx, pipeline(tenantA, fmt.Sprintf("q%02d", i), "queue", at(time.Duration(i+1)*time.Second)), store.EnqueueOne, nil)
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("q%02d: %v", i, err)
			}
		}
		page, _, err := ps.ListPipelines(ctx, tenantA, store.PipelineFilter{Application: "queue", Statuses: []string{store.StatusQueued}})
		must(t, err)
		if len(page) != 1 {
			t.Fatalf("queued pipelines: %v, want exactly one", ids(page))
		}
		rejected, _, err := ps.ListPipelines(ctx, tenantA, store.PipelineFilter{Application: "queue", Statuses: []string{store.StatusRejected}})
		must(t, err)
		if len(rejected) != raceN-1 {
			t.Errorf("%d rejected pipelines, want %d", len(rejected), raceN-1)
		}
		for _, r := range rejected {
			if r.BlockedBy == "" || r.BlockedBy == r.ID {
				t.Errorf("rejected %s names %q as its replacement", r.ID, r.BlockedBy)
			}
		}
		diff(t, "QueuedPipeline", page[0], ok(ps.QueuedPipeline(ctx, tenantA, "queue"))(t))
	})

	t.Run("lease: one holder", func(t *testing.T) {
		ctx := t.Context()
		create(t, ps, pipeline(tenantA, "leased", "lease", at(0)), store.RejectInProgress)
		ref := store.PipelineRef{Tenant: tenantA, ID: "leased"}
		leases := make([]store.Lease, raceN)
		errs := make([]error, raceN)
		now := time.Now()
		var wg sync.WaitGroup
		for i := range raceN {
			wg.Go(func() {
				leases[i], errs[i] = ps.AcquireLease(ctx, ref, fmt.Sprintf("replica-%d", i), now, time.Minute)
			})
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("replica-%d and replica-%d both hold the lease", winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrLeaseHeld):
				t.Errorf("replica-%d: error = %v, want nil or ErrLeaseHeld", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("nobody got the lease")
		}
		diff(t, "GetLease", leases[winner], ok(ps.GetLease(ctx, ref))(t))
	})

	t.Run("fenced updates: one wins per revision", func(t *testing.T) {
		ctx := t.Context()
		p := create(t, ps, pipeline(tenantA, "fenced", "fence", at(0)), store.RejectInProgress).Pipeline
		ref := store.PipelineRef{Tenant: tenantA, ID: "fenced"}
		l := ok(ps.AcquireLease(ctx, ref, "r1", time.Now(), time.Hour))(t)
		for round := range 3 {
			results := make([]store.Pipeline, raceN)
			errs := make([]error, raceN)
			var wg sync.WaitGroup
			for i := range raceN {
				wg.Go(func() {
					q := p
					q.State = fmt.Appendf(nil, `{"writer":%d}`, i)
					results[i], errs[i] = ps.UpdatePipeline(ctx, q, &l, []store.PipelineEvent{event(fmt.Sprintf("w%d", i), 0)})
				})
			}
			wg.Wait()
			winner := -1
			for i, err := range errs {
				switch {
				case err == nil && winner >= 0:
					t.Errorf("round %d: writers %d and %d both won", round, winner, i)
				case err == nil:
					winner = i
				case !errors.Is(err, store.ErrStale):
					t.Errorf("round %d: writer %d: error = %v, want nil or ErrStale", round, i, err)
				}
			}
			if winner < 0 {
				t.Fatalf("round %d: no writer won", round)
			}
			p = results[winner]
			diff(t, "GetPipeline", p, ok(ps.GetPipeline(ctx, tenantA, "fenced"))(t))
			events := ok(ps.ListPipelineEvents(ctx, tenantA, "fenced", int64(round), 0))(t)
			diff(t, "events", withSeq(int64(round+1), event(fmt.Sprintf("w%d", winner), 0)), events)
		}
		if p.Revision != 4 {
			t.Errorf("revision after three rounds = %d, want 4", p.Revision)
		}
	})
}

// testPipelineCopies checks that the store keeps no caller slices and shares none it returns.
func testPipelineCopies(t *testing.T, ps store.Store) {
	ctx := t.Context()
	tenantA, _, _ := tenants()
	arg := pipeline(tenantA, "p1", "web", at(0))
	e := event("e1", 0)
	res := create(t, ps, arg, store.RejectInProgress, e)
	want := stored(pipeline(tenantA, "p1", "web", at(0)))
	arg.State[0], arg.Sealed[0], e.Data[0] = 'X', 'X', 'X'
	res.Pipeline.State[1], res.Pipeline.Sealed[1] = 'X', 'X'
	got := ok(ps.GetPipeline(ctx, tenantA, "p1"))(t)
	diff(t, "GetPipeline", want, got)
	got.State[0] = 'X'
	upd := ok(ps.UpdatePipeline(ctx, want, nil, nil))(t)
	upd.Sealed[0] = 'X'
	want.Revision = 2
	diff(t, "GetPipeline after update", want, ok(ps.GetPipeline(ctx, tenantA, "p1"))(t))
	evs := ok(ps.ListPipelineEvents(ctx, tenantA, "p1", 0, 0))(t)
	evs[0].Data[0] = 'X'
	diff(t, "events", withSeq(1, event("e1", 0)), ok(ps.ListPipelineEvents(ctx, tenantA, "p1", 0, 0))(t))
}

// writePipelines stores pipelines, events and a lease for testPersistence and returns a check
// to run after the restart.
func writePipelines(t *testing.T, ps store.Store) func(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenantA, _, _ := tenants()
	p := create(t, ps, pipeline(tenantA, "p1", "web", at(0)), store.RejectInProgress, event("e1", 0)).Pipeline
	ref := store.PipelineRef{Tenant: tenantA, ID: "p1"}
	l1 := ok(ps.AcquireLease(ctx, ref, "r1", time.Now(), time.Hour))(t)
	p.Status = store.StatusPaused
	p = ok(ps.UpdatePipeline(ctx, p, &l1, []store.PipelineEvent{event("e2", time.Second)}))(t)
	q := create(t, ps, pipeline(tenantA, "q1", "web", at(time.Minute)), store.EnqueueOne).Pipeline
	must(t, ps.ReleaseLease(ctx, l1))
	l2 := ok(ps.AcquireLease(ctx, ref, "r2", time.Now(), time.Hour))(t)
	done := create(t, ps, finished(pipeline(tenantA, "done", "api", at(0)), store.StatusSucceeded, at(time.Hour)), store.RejectInProgress).Pipeline

	return func(t *testing.T, ps store.Store) {
		diff(t, "GetPipeline", p, ok(ps.GetPipeline(ctx, tenantA, "p1"))(t))
		diff(t, "QueuedPipeline", q, ok(ps.QueuedPipeline(ctx, tenantA, "web"))(t))
		diff(t, "events", withSeq(1, event("e1", 0), event("e2", time.Second)), ok(ps.ListPipelineEvents(ctx, tenantA, "p1", 0, 0))(t))
		diff(t, "GetLease", l2, ok(ps.GetLease(ctx, ref))(t))
		page, _, err := ps.ListPipelines(ctx, tenantA, store.PipelineFilter{Statuses: []string{store.StatusPaused, store.StatusQueued, store.StatusSucceeded}})
		must(t, err)
		diff(t, "ListPipelines", []store.Pipeline{q, done, p}, page)
		active := ok(ps.ListActivePipelines(ctx))(t)
		sortRefs(active)
		diff(t, "ListActivePipelines", []store.PipelineRef{ref, {Tenant: tenantA, ID: "q1"}}, active)
		if _, err := ps.CreatePipeline(ctx, pipeline(tenantA, "p2", "web", at(2*time.Minute)), store.RejectInProgress, nil); !errors.Is(err, store.ErrInProgress) {
			t.Errorf("CreatePipeline after restart = %v, want ErrInProgress", err)
		}
		p = ok(ps.UpdatePipeline(ctx, p, &l2, []store.PipelineEvent{event("e3", 2*time.Second)}))(t)
		must(t, ps.ReleaseLease(ctx, l2))
		if l3 := ok(ps.AcquireLease(ctx, ref, "r1", time.Now(), time.Hour))(t); l3.Token <= l2.Token {
			t.Errorf("token after restart %d, want more than %d", l3.Token, l2.Token)
		}
		diff(t, "removed", 1, ok(ps.DeletePipelinesCompletedBefore(ctx, at(2*time.Hour)))(t))
	}
}
