package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sortie-dev/sortie/pipeline/rollout/rolloutsim"
	"github.com/sortie-dev/sortie/pipeline/rollout/rolloutsim/simagent"
)

// startMediaType is what the Armory CLI sends to POST /pipelines/kubernetes.
const startMediaType = "application/vnd.start.kubernetes.pipeline.v2+json"

// Statuses the run waits on, as GET /pipelines filters.
const (
	activeStatuses = "NOT_STARTED,QUEUED,RUNNING,PAUSED,AWAITING_APPROVAL"
	failedStatuses = "FAILED,CANCELLED,REJECTED"
)

// pipelineDriver drives one size on one server set through REST.
type pipelineDriver struct {
	b        *bench
	cfg      pipelinesConfig
	set      *serverSet
	clients  []*adminClient // one per server, admin token
	clusters []*rolloutsim.Cluster
	name     string // topology and size, for progress lines
}

// runPipelineSize starts fresh servers and agents and runs n pipelines in three phases:
// first versions of n applications (no steps: a Rollout's first revision skips them), then
// second versions with the canary held at its timed pause (the simulated clusters' clocks
// are not ticked) while the memory with n active pipelines is measured, then one tick of
// every cluster ends the pauses and the pipelines finish.
func runPipelineSize(ctx context.Context, b *bench, cfg pipelinesConfig, topology string, n int) (pipelineRun, error) {
	run := pipelineRun{Topology: topology, Pipelines: n}
	set, err := startServerSet(ctx, b, cfg, topology, filepath.Join(b.dir, fmt.Sprintf("%s-%d", topology, n)))
	if err != nil {
		return run, err
	}
	defer set.stop()
	run.Replicas = len(set.servers)
	d := &pipelineDriver{b: b, cfg: cfg, set: set, name: fmt.Sprintf("%s/%d", topology, n)}
	transport := &http.Transport{MaxIdleConnsPerHost: 2 * cfg.Concurrency}
	for _, u := range set.urls {
		d.clients = append(d.clients, &adminClient{baseURL: u, client: http.Client{Transport: transport, Timeout: time.Minute}})
	}
	if err := d.clients[0].login(ctx, set.adminCreds); err != nil {
		return run, err
	}
	for _, c := range d.clients[1:] {
		c.token = d.clients[0].token
	}
	agents, err := d.connectAgents(ctx)
	for _, a := range agents {
		defer a.Close()
	}
	if err != nil {
		return run, err
	}

	d.b.logf("%s: first versions of %d applications", d.name, n)
	t0 := time.Now()
	first, _, err := d.startAll(ctx, n, "1")
	if err != nil {
		return run, err
	}
	if _, err := d.waitGone(ctx, first, "to finish (first versions)"); err != nil {
		return run, err
	}
	if err := d.verifySucceeded(ctx, first); err != nil {
		return run, err
	}
	run.FirstVersionsSeconds = time.Since(t0).Seconds()
	if run.Idle, err = d.memory(ctx); err != nil {
		return run, err
	}

	d.b.logf("%s: %d canaries to their timed pause", d.name, n)
	t0 = time.Now()
	ids, sent, err := d.startAll(ctx, n, "2")
	if err != nil {
		return run, err
	}
	run.StartRequestsSeconds = time.Since(t0).Seconds()
	paused, err := d.waitSeen(ctx, ids, "PAUSED")
	if err != nil {
		return run, err
	}
	run.AllPausedSeconds = latest(paused).Sub(t0).Seconds() // refined from the histories below
	if run.Active, err = d.memory(ctx); err != nil {
		return run, err
	}
	still, err := d.clients[0].statuses(ctx, "PAUSED")
	if err != nil {
		return run, err
	}
	for _, id := range ids {
		if still[id] != "" {
			run.ActiveWhenMeasured++
		}
	}

	// Every timed pause started before its pipeline said PAUSED; one second after the last
	// one, a tick of each cluster ends them all.
	if wait := time.Until(latest(paused).Add(time.Second + 50*time.Millisecond)); wait > 0 {
		time.Sleep(wait)
	}
	d.b.logf("%s: ending the pauses", d.name)
	changed := time.Now()
	d.tick()
	tickCtx, stopTicks := context.WithCancel(ctx)
	var ticks sync.WaitGroup
	ticks.Go(func() { // stragglers, should any pause have begun late
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-tickCtx.Done():
				return
			case <-t.C:
				d.tick()
			}
		}
	})
	done, err := d.waitGone(ctx, ids, "to finish (canaries)")
	stopTicks()
	ticks.Wait()
	if err != nil {
		return run, err
	}
	if err := d.verifySucceeded(ctx, ids); err != nil {
		return run, err
	}
	run.Succeeded = n
	// The latencies, from the engine's own record of each transition; a history without one
	// falls back to the status poll that first showed it.
	recorded, err := recordedTransitions(ctx, set.urls[0], d.clients[0].token, ids, d.cfg.Concurrency)
	if err != nil {
		return run, err
	}
	pausedAt, doneAt := make([]time.Time, n), make([]time.Time, n)
	for i := range ids {
		pausedAt[i], doneAt[i] = paused[i], done[i]
		if r := recorded[i]; !r.paused.IsZero() && !r.succeeded.IsZero() {
			pausedAt[i], doneAt[i] = r.paused, r.succeeded
			run.FromHistory++
		}
		run.startToPaused = append(run.startToPaused, pausedAt[i].Sub(sent[i]).Seconds())
		run.changeToSucceeded = append(run.changeToSucceeded, doneAt[i].Sub(changed).Seconds())
	}
	run.AllPausedSeconds = latest(pausedAt).Sub(t0).Seconds()
	run.FinishSeconds = latest(doneAt).Sub(changed).Seconds()
	run.finish()
	d.b.logf("%s: all %d succeeded; start->PAUSED p50 %.0fms p99 %.0fms, pause end->SUCCEEDED p50 %.0fms p99 %.0fms, %s RSS per active pipeline",
		d.name, n, 1000*run.StartToPaused.P50, 1000*run.StartToPaused.P99, 1000*run.ChangeToSucceeded.P50, 1000*run.ChangeToSucceeded.P99, bytesIEC(run.RSSPerPipeline))
	return run, nil
}

// account names the i-th simulated agent.
func account(i int) string { return fmt.Sprintf("sim-%02d", i) }

// connectAgents creates one agent credential and dials cfg.Agents simulated agents with it,
// spread over the servers, and waits until every server lists them all.
func (d *pipelineDriver) connectAgents(ctx context.Context) ([]*simagent.Agent, error) {
	id, secret, err := d.clients[0].createAgentCredential(ctx)
	if err != nil {
		return nil, err
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	anon := &adminClient{baseURL: d.set.urls[0]}
	if err := anon.do(ctx, http.MethodPost, "/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()), &tok); err != nil {
		return nil, err
	}
	var agents []*simagent.Agent
	h2c := simagent.H2CClient()
	for i := range d.cfg.Agents {
		c := rolloutsim.New(nil)
		a, err := simagent.Dial(ctx, h2c, d.set.urls[i%len(d.set.urls)], tok.AccessToken, account(i), c, 0)
		if err != nil {
			return agents, fmt.Errorf("simulated agent %s: %w", account(i), err)
		}
		agents, d.clusters = append(agents, a), append(d.clusters, c)
	}
	for _, c := range d.clients {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var streams []struct {
				AgentIdentifier string `json:"agentIdentifier"`
			}
			err := c.do(ctx, http.MethodGet, "/identity/connected-agents", "", nil, &streams)
			seen := map[string]bool{}
			for _, s := range streams {
				seen[s.AgentIdentifier] = true
			}
			if err == nil && len(seen) >= d.cfg.Agents {
				break
			}
			if time.Now().After(deadline) {
				return agents, fmt.Errorf("%s lists %d of %d agents after 30s (%v)", c.baseURL, len(seen), d.cfg.Agents, err)
			}
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				return agents, err
			}
		}
	}
	return agents, nil
}

// tick lets every simulated cluster's controller act on time.
func (d *pipelineDriver) tick() {
	var wg sync.WaitGroup
	for _, c := range d.clusters {
		wg.Go(c.Tick)
	}
	wg.Wait()
}

// deployConfig is the deploy.yml (as JSON) of application i at version: one target on
// account i mod agents, a canary of [setWeight 25, pause 1s, setWeight 100].
func (d *pipelineDriver) deployConfig(i int, version string) []byte {
	app := fmt.Sprintf("app-%04d", i)
	manifest := fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %[1]s\nspec:\n  replicas: 2\n"+
		"  selector:\n    matchLabels: {app: %[1]s}\n  template:\n    metadata:\n      labels: {app: %[1]s}\n"+
		"    spec:\n      containers:\n      - name: %[1]s\n        image: example.com/%[1]s:%[2]s\n", app, version)
	body, _ := json.Marshal(map[string]any{
		"version": "v1", "kind": "kubernetes", "application": app,
		"targets": map[string]any{"prod": map[string]any{"account": account(i % d.cfg.Agents), "namespace": "bench", "strategy": "canary"}},
		"strategies": map[string]any{"canary": map[string]any{"canary": map[string]any{"steps": []any{
			map[string]any{"setWeight": map[string]any{"weight": 25}},
			map[string]any{"pause": map[string]any{"duration": 1, "unit": "SECONDS"}},
			map[string]any{"setWeight": map[string]any{"weight": 100}},
		}}}},
		"manifests": []any{map[string]any{"path": "k8s/app.yaml"}},
		"files":     map[string]any{"k8s/app.yaml": []string{manifest}},
		"context":   map[string]string{"version": version},
	})
	return body
}

// startAll starts version of applications 0..n-1, cfg.Concurrency at a time, spread over
// the servers, and returns each pipeline's id and when its request was sent.
func (d *pipelineDriver) startAll(ctx context.Context, n int, version string) ([]string, []time.Time, error) {
	ids, sent := make([]string, n), make([]time.Time, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.cfg.Concurrency)
	for i := range n {
		g.Go(func() error {
			var out struct {
				PipelineID string `json:"pipelineId"`
			}
			c := d.clients[i%len(d.clients)]
			sent[i] = time.Now()
			if err := c.do(gctx, http.MethodPost, "/pipelines/kubernetes", startMediaType, bytes.NewReader(d.deployConfig(i, version)), &out); err != nil {
				return err
			}
			ids[i] = out.PipelineID
			return nil
		})
	}
	return ids, sent, g.Wait()
}

// waitSeen polls until every pipeline of ids has been listed in status, and returns when
// each was first; a pipeline that ends FAILED, CANCELLED or REJECTED fails the wait.
func (d *pipelineDriver) waitSeen(ctx context.Context, ids []string, status string) ([]time.Time, error) {
	seen := make([]time.Time, len(ids))
	left := len(ids)
	err := d.poll(ctx, "to be listed "+status, func() (int, error) {
		got, err := d.clients[0].statuses(ctx, status+","+failedStatuses)
		if err != nil {
			return left, err
		}
		now := time.Now()
		for i, id := range ids {
			switch s := got[id]; {
			case s == "" || !seen[i].IsZero():
			case s == status:
				seen[i] = now
				left--
			default:
				return left, d.failure(ctx, id)
			}
		}
		return left, nil
	})
	return seen, err
}

// waitGone polls until no pipeline of ids is listed as active, and returns when each was
// first missing.
func (d *pipelineDriver) waitGone(ctx context.Context, ids []string, what string) ([]time.Time, error) {
	gone := make([]time.Time, len(ids))
	left := len(ids)
	err := d.poll(ctx, what, func() (int, error) {
		active, err := d.clients[0].statuses(ctx, activeStatuses)
		if err != nil {
			return left, err
		}
		now := time.Now()
		for i, id := range ids {
			if gone[i].IsZero() && active[id] == "" {
				gone[i] = now
				left--
			}
		}
		return left, nil
	})
	return gone, err
}

// poll calls step every cfg.Poll until it reports nothing left, fails, a server exits or the
// phase times out.
func (d *pipelineDriver) poll(ctx context.Context, what string, step func() (left int, err error)) error {
	deadline := time.Now().Add(d.cfg.PhaseTimeout)
	lastLog := time.Now()
	for {
		next := time.Now().Add(d.cfg.Poll)
		left, err := step()
		switch {
		case err != nil:
			return err
		case left == 0:
			return nil
		case d.set.alive() != nil:
			return d.set.alive()
		case time.Now().After(deadline):
			return fmt.Errorf("%s: after %s, %d pipelines still %s", d.name, d.cfg.PhaseTimeout, left, what)
		case time.Since(lastLog) >= 5*time.Second:
			d.b.logf("%s: %d pipelines still %s", d.name, left, what)
			lastLog = time.Now()
		}
		if err := sleep(ctx, time.Until(next)); err != nil {
			return err
		}
	}
}

// verifySucceeded checks that every pipeline of ids ended SUCCEEDED.
func (d *pipelineDriver) verifySucceeded(ctx context.Context, ids []string) error {
	got, err := d.clients[0].statuses(ctx, "SUCCEEDED")
	if err != nil {
		return err
	}
	for _, id := range ids {
		if got[id] == "" {
			return d.failure(ctx, id)
		}
	}
	return nil
}

// failure describes a pipeline that did not succeed.
func (d *pipelineDriver) failure(ctx context.Context, id string) error {
	var p struct {
		Application string `json:"application"`
		Status      string `json:"status"`
		Message     string `json:"message"`
	}
	if err := d.clients[0].do(ctx, http.MethodGet, "/pipelines/"+id, "", nil, &p); err != nil {
		return err
	}
	return fmt.Errorf("%s: pipeline %s of %s ended %s: %s", d.name, id, p.Application, p.Status, p.Message)
}

// memory sums the memory of every server of the set.
func (d *pipelineDriver) memory(ctx context.Context) (memory, error) {
	var sum memory
	for i, srv := range d.set.servers {
		m, err := measureMemory(ctx, srv.pid(), d.set.urls[i])
		if err != nil {
			return sum, err
		}
		sum.RSS, sum.HeapInuse, sum.StackInuse, sum.Goroutines = sum.RSS+m.RSS, sum.HeapInuse+m.HeapInuse, sum.StackInuse+m.StackInuse, sum.Goroutines+m.Goroutines
	}
	return sum, nil
}

// statuses lists the tenant's pipelines in one of statuses (comma-separated), every page,
// as id -> status.
func (a *adminClient) statuses(ctx context.Context, statuses string) (map[string]string, error) {
	out := map[string]string{}
	page := ""
	for {
		var list struct {
			Pipelines []struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			} `json:"pipelines"`
			NextPageToken string `json:"nextPageToken"`
		}
		q := url.Values{"status": {statuses}, "limit": {"500"}}
		if page != "" {
			q.Set("pageToken", page)
		}
		if err := a.do(ctx, http.MethodGet, "/pipelines?"+q.Encode(), "", nil, &list); err != nil {
			return nil, err
		}
		for _, p := range list.Pipelines {
			out[p.ID] = p.Status
		}
		if page = list.NextPageToken; page == "" {
			return out, nil
		}
	}
}

// latest returns the latest of ts.
func latest(ts []time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return errStopped
	case <-time.After(d):
		return nil
	}
}
