package pipeline_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/pipeline"
	"github.com/sortie-dev/sortie/pipeline/config"
	"github.com/sortie-dev/sortie/pipeline/rollout/rolloutsim"
	"github.com/sortie-dev/sortie/seal"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/boltstore"
)

var tenant = store.Tenant{OrgID: "org", EnvID: "env"}

// simCluster is the engine's Cluster over simulated clusters, one per account: commands go
// to the simulator and every change it makes reaches the subscribers, as the hub's
// inventory feed would.
type simCluster struct {
	mu       sync.Mutex // guards clusters, subs and down
	clusters map[string]*rolloutsim.Cluster
	subs     map[*simSub]bool
	down     map[string]bool // accounts whose agent is disconnected
	sent     []string        // "account kind" of every command, for assertions
}

type simSub struct {
	sc *simCluster
	c  chan hub.Change
}

func (s *simSub) C() <-chan hub.Change { return s.c }

func (s *simSub) Close() {
	s.sc.mu.Lock()
	defer s.sc.mu.Unlock()
	if s.sc.subs[s] {
		delete(s.sc.subs, s)
		close(s.c)
	}
}

func newSimCluster(t *testing.T, accounts ...string) *simCluster {
	sc := &simCluster{clusters: map[string]*rolloutsim.Cluster{}, subs: map[*simSub]bool{}, down: map[string]bool{}}
	for _, a := range accounts {
		c := rolloutsim.New(nil)
		c.OnChange = func(r rolloutsim.Ref, _ []byte) { sc.publish(a, r) }
		sc.clusters[a] = c
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				for _, c := range sc.clusters {
					c.Tick()
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return sc
}

func (sc *simCluster) publish(account string, r rolloutsim.Ref) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for s := range sc.subs {
		select {
		case s.c <- hub.Change{Account: account, Ref: &hubv1.ObjectReference{ApiVersion: r.APIVersion, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}}:
		default:
		}
	}
}

func ref(r *hubv1.ObjectReference) rolloutsim.Ref {
	return rolloutsim.Ref{APIVersion: r.GetApiVersion(), Kind: r.GetKind(), Namespace: r.GetNamespace(), Name: r.GetName()}
}

func (sc *simCluster) cluster(account string) (*rolloutsim.Cluster, bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	c, ok := sc.clusters[account]
	return c, ok && !sc.down[account]
}

func (sc *simCluster) Send(ctx context.Context, t store.Tenant, account string, cmd *hubv1.Command) (*hubv1.CommandResult, error) {
	c, ok := sc.cluster(account)
	if !ok {
		return nil, fmt.Errorf("agent '%s' is not connected: %w", account, hub.ErrNotConnected)
	}
	result := func(objs [][]byte, err error) (*hubv1.CommandResult, error) {
		if err != nil {
			code := hubv1.CommandError_CODE_INVALID
			switch {
			case errors.Is(err, rolloutsim.ErrNotFound):
				code = hubv1.CommandError_CODE_NOT_FOUND
			case errors.Is(err, rolloutsim.ErrConflict):
				code = hubv1.CommandError_CODE_CONFLICT
			}
			return &hubv1.CommandResult{CommandId: cmd.GetId(), Outcome: hubv1.CommandResult_OUTCOME_FAILED,
				Error: &hubv1.CommandError{Code: code, Message: err.Error()}}, nil
		}
		var rs []*hubv1.Resource
		for _, o := range objs {
			rs = append(rs, &hubv1.Resource{Object: o})
		}
		return &hubv1.CommandResult{CommandId: cmd.GetId(), Outcome: hubv1.CommandResult_OUTCOME_SUCCEEDED,
			Payload: &hubv1.CommandResult_Resources{Resources: &hubv1.ResourceList{Resources: rs}}}, nil
	}
	sc.mu.Lock()
	switch a := cmd.GetAction().(type) {
	case *hubv1.Command_Apply:
		sc.sent = append(sc.sent, account+" apply")
	case *hubv1.Command_Patch:
		sc.sent = append(sc.sent, account+" patch "+string(a.Patch.GetPatch()))
	case *hubv1.Command_Get:
		sc.sent = append(sc.sent, account+" get")
	}
	sc.mu.Unlock()
	switch a := cmd.GetAction().(type) {
	case *hubv1.Command_Apply:
		return result(c.Apply(a.Apply.GetManifests(), a.Apply.GetNamespace()))
	case *hubv1.Command_Get:
		obj, err := c.Get(ref(a.Get.GetRef()))
		return result([][]byte{obj}, err)
	case *hubv1.Command_Patch:
		if a.Patch.GetSubresource() != "status" {
			return nil, fmt.Errorf("simCluster: only status patches are simulated")
		}
		obj, err := c.PatchStatus(ref(a.Patch.GetRef()), a.Patch.GetPatch())
		return result([][]byte{obj}, err)
	}
	return nil, fmt.Errorf("simCluster: %T is not simulated", cmd.GetAction())
}

func (sc *simCluster) CachedObject(ctx context.Context, t store.Tenant, account string, r *hubv1.ObjectReference) (*hubv1.Resource, error) {
	// A disconnected agent's inventory is gone too, as on a server that just restarted.
	c, ok := sc.cluster(account)
	if !ok {
		return nil, hub.ErrObjectNotCached
	}
	obj, err := c.Get(ref(r))
	if err != nil {
		return nil, hub.ErrObjectNotCached
	}
	return &hubv1.Resource{Ref: r, Object: obj}, nil
}

func (sc *simCluster) Subscribe(t store.Tenant, account string, inbox int) pipeline.Changes {
	s := &simSub{sc: sc, c: make(chan hub.Change, inbox)}
	sc.mu.Lock()
	sc.subs[s] = true
	sc.mu.Unlock()
	return s
}

func (sc *simCluster) Accounts(ctx context.Context, t store.Tenant) ([]hub.Account, error) {
	var out []hub.Account
	for a := range sc.clusters {
		out = append(out, hub.Account{Name: a, Connected: true})
	}
	return out, nil
}

func (sc *simCluster) commands(match string) int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	n := 0
	for _, s := range sc.sent {
		if strings.Contains(s, match) {
			n++
		}
	}
	return n
}

type testEngine struct {
	*pipeline.Engine
	st store.Store
	sc *simCluster
}

func newSealer(t *testing.T) *seal.Sealer {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sl, err := seal.New(key, "pipelines")
	if err != nil {
		t.Fatal(err)
	}
	return sl
}

// startEngine runs an engine on a fresh embedded store over simulated clusters.
func startEngine(t *testing.T, accounts ...string) *testEngine {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "sortie.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sc := newSimCluster(t, accounts...)
	return runEngine(t, st, sc, "replica-a")
}

func runEngine(t *testing.T, st store.Store, sc *simCluster, holder string) *testEngine {
	t.Helper()
	e, _ := runEngineStoppable(t, st, sc, holder)
	return e
}

// runEngineStoppable runs an engine until the test ends or stop is called.
func runEngineStoppable(t *testing.T, st store.Store, sc *simCluster, holder string) (*testEngine, func()) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := pipeline.New(log, st, sc, sealerFor(t, st), pipeline.Config{Holder: holder, Resync: 100 * time.Millisecond, LeaseTTL: 2 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return &testEngine{Engine: e, st: st, sc: sc}, stop
}

var (
	sealersMu sync.Mutex
	sealers   = map[store.Store]*seal.Sealer{}
)

// sealerFor gives every engine of one store the same key, as replicas share a master key.
func sealerFor(t *testing.T, st store.Store) *seal.Sealer {
	sealersMu.Lock()
	defer sealersMu.Unlock()
	if s, ok := sealers[st]; ok {
		return s
	}
	s := newSealer(t)
	sealers[st] = s
	return s
}

var admin = pipeline.Actor{Type: "machine", Name: "ci", ID: "client-1", Roles: []string{"Deployments Full Access"}}

func deployment(name, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  labels: {app: %[1]s}
spec:
  replicas: 4
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers:
      - name: web
        image: %[2]s
`, name, image)
}

// body is a deploy.yml (as the CLI sends it) deploying image to each target.
type body struct {
	App        string
	Targets    map[string]map[string]any
	Strategies map[string]any
	Image      string
	Config     map[string]any
}

func (b body) JSON() []byte {
	m := map[string]any{
		"application": b.App, "targets": b.Targets, "strategies": b.Strategies,
		"manifests": []any{map[string]any{"inline": deployment(b.App, b.Image)}},
	}
	if b.Config != nil {
		m["deploymentConfig"] = b.Config
	}
	out, _ := json.Marshal(m)
	return out
}

func canary(steps ...any) map[string]any {
	return map[string]any{"canary": map[string]any{"steps": steps}}
}

func weight(w int) any { return map[string]any{"setWeight": map[string]any{"weight": w}} }
func wait(s int) any {
	return map[string]any{"pause": map[string]any{"duration": s, "unit": "seconds"}}
}
func approval() any { return map[string]any{"pause": map[string]any{"untilApproved": true}} }

func oneTarget(app, image string, steps ...any) body {
	return body{App: app, Image: image,
		Targets:    map[string]map[string]any{"prod": {"account": "prod-west", "namespace": "web", "strategy": "c"}},
		Strategies: map[string]any{"c": canary(steps...)}}
}

func (e *testEngine) start(t *testing.T, b body) string {
	t.Helper()
	res, err := e.Start(context.Background(), pipeline.StartRequest{Tenant: tenant, Body: b.JSON(), Actor: admin})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	return res.PipelineID
}

// await follows the pipeline's watch until cond holds, and returns that view.
func (e *testEngine) await(t *testing.T, id, what string, cond func(*pipeline.View) bool) *pipeline.View {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ch, err := e.Watch(ctx, tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	var last *pipeline.View
	for v := range ch {
		last = v
		if cond(v) {
			return v
		}
	}
	got, _ := json.MarshalIndent(last, "", " ")
	t.Fatalf("pipeline %s never got to %s; last view:\n%s", id, what, got)
	return nil
}

func status(s pipeline.Status) func(*pipeline.View) bool {
	return func(v *pipeline.View) bool { return v.Status == s }
}

// deployed runs a first pipeline to success, so the next one is a real update (the first
// revision of a Rollout becomes stable at once, without steps).
func (e *testEngine) deployed(t *testing.T, app string) {
	t.Helper()
	id := e.start(t, oneTarget(app, "nginx:1.0", weight(50), approval()))
	e.await(t, id, "SUCCEEDED", status(pipeline.Succeeded))
}

func rolloutOf(t *testing.T, e *testEngine, account, ns, name string) v1alpha1.Rollout {
	t.Helper()
	c, _ := e.sc.cluster(account)
	obj, err := c.Get(rolloutsim.Ref{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Namespace: ns, Name: name})
	if err != nil {
		t.Fatalf("rollout %s/%s: %v", ns, name, err)
	}
	var ro v1alpha1.Rollout
	_ = json.Unmarshal(obj, &ro)
	return ro
}

func events(t *testing.T, e *testEngine, id string) []pipeline.Event {
	t.Helper()
	evs, err := e.Events(context.Background(), tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func count(evs []pipeline.Event, typ string, match func(pipeline.Event) bool) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ && (match == nil || match(ev)) {
			n++
		}
	}
	return n
}

func TestCanaryWithTimedPauseAndApproval(t *testing.T) {
	t.Parallel()
	e := startEngine(t, "prod-west")
	e.deployed(t, "web")
	id := e.start(t, oneTarget("web", "nginx:2.0", weight(25), wait(3), weight(50), approval()))

	paused := e.await(t, id, "PAUSED at 25%", status(pipeline.Paused))
	if tg := paused.Targets[0]; tg.Weight != 25 || tg.Pause == nil || tg.Pause.Reason != "timed" || tg.Pause.EndTime.IsZero() {
		t.Errorf("while paused: weight %d pause %+v, want 25%% and a timed pause with its end", tg.Weight, tg.Pause)
	}
	waiting := e.await(t, id, "AWAITING_APPROVAL", status(pipeline.AwaitingApproval))
	tg := waiting.Targets[0]
	if tg.Weight != 50 || tg.Pause == nil || tg.Pause.Step != "prod/canary/3" || tg.CurrentStep != 3 || tg.TotalSteps != 4 {
		t.Errorf("awaiting approval: weight %d step %d/%d pause %+v, want 50%%, step 3/4, pause prod/canary/3", tg.Weight, tg.CurrentStep, tg.TotalSteps, tg.Pause)
	}
	if ro := rolloutOf(t, e, "prod-west", "web", "web"); len(ro.Status.PauseConditions) != 1 {
		t.Fatalf("the Rollout is not paused: %+v", ro.Status)
	}
	n, err := e.Approve(context.Background(), tenant, id, "", admin)
	if err != nil || n != 1 {
		t.Fatalf("approve: %d, %v", n, err)
	}
	done := e.await(t, id, "SUCCEEDED", status(pipeline.Succeeded))
	if done.Targets[0].Weight != 100 || done.CompletedAt.IsZero() {
		t.Errorf("done: %+v", done.Targets[0])
	}
	if len(done.Decisions) != 1 || done.Decisions[0].Action != "approve" || done.Decisions[0].Actor.Name != "ci" || done.Decisions[0].At.IsZero() {
		t.Errorf("decisions: %+v, want one approval by ci with its time", done.Decisions)
	}
	ro := rolloutOf(t, e, "prod-west", "web", "web")
	if ro.Status.StableRS != ro.Status.CurrentPodHash || ro.Spec.Template.Spec.Containers[0].Image != "nginx:2.0" {
		t.Errorf("the new version is not stable: %+v", ro.Status)
	}
	evs := events(t, e, id)
	if n := count(evs, "rollout.promote", nil); n != 1 {
		t.Errorf("%d promotions recorded, want exactly 1", n)
	}
	if n := count(evs, "target.status", func(ev pipeline.Event) bool { return ev.Status == pipeline.Succeeded }); n != 1 {
		t.Errorf("SUCCEEDED recorded %d times", n)
	}
	if _, err := e.Approve(context.Background(), tenant, id, "", admin); !errors.Is(err, pipeline.ErrFinished) {
		t.Errorf("approving a finished pipeline: %v, want ErrFinished", err)
	}
	if _, err := e.Abort(context.Background(), tenant, id, admin); !errors.Is(err, pipeline.ErrFinished) {
		t.Errorf("aborting a finished pipeline: %v, want ErrFinished", err)
	}
}

func TestAbortAtApprovalRollsBack(t *testing.T) {
	t.Parallel()
	e := startEngine(t, "prod-west")
	e.deployed(t, "web")
	stable := rolloutOf(t, e, "prod-west", "web", "web").Status.StableRS
	id := e.start(t, oneTarget("web", "nginx:2.0", weight(25), approval()))
	e.await(t, id, "AWAITING_APPROVAL", status(pipeline.AwaitingApproval))
	if _, err := e.Approve(context.Background(), tenant, id, "prod/canary/0", admin); !errors.Is(err, pipeline.ErrNothingToApprove) {
		t.Errorf("approving a step that is not waiting: %v, want ErrNothingToApprove", err)
	}
	n, err := e.Abort(context.Background(), tenant, id, admin)
	if err != nil || n != 1 {
		t.Fatalf("abort: %d %v", n, err)
	}
	if n, err := e.Abort(context.Background(), tenant, id, admin); err != nil && !errors.Is(err, pipeline.ErrFinished) || n != 0 {
		t.Errorf("second abort: %d %v, want 0 affected", n, err)
	}
	v := e.await(t, id, "CANCELLED", status(pipeline.Cancelled))
	ro := rolloutOf(t, e, "prod-west", "web", "web")
	if !ro.Status.Abort || ro.Status.StableRS != stable {
		t.Errorf("rollout after abort: abort=%v stable %s (was %s)", ro.Status.Abort, ro.Status.StableRS, stable)
	}
	if !strings.Contains(v.Message, "aborted by ci") || v.Decisions[len(v.Decisions)-1].Action != "abort" {
		t.Errorf("message %q decisions %+v", v.Message, v.Decisions)
	}
}

func TestDependsOnAndBeforeDeploymentApproval(t *testing.T) {
	t.Parallel()
	e := startEngine(t, "staging", "prod")
	b := body{App: "shop", Image: "shop:1",
		Targets: map[string]map[string]any{
			"staging": {"account": "staging", "namespace": "shop", "strategy": "c"},
			"prod": {"account": "prod", "namespace": "shop", "strategy": "c", "constraints": map[string]any{
				"dependsOn":        []string{"staging"},
				"beforeDeployment": []any{map[string]any{"pause": map[string]any{"untilApproved": true, "requiresRoles": []string{"Release Managers"}}}},
			}},
		},
		Strategies: map[string]any{"c": canary(weight(50))}}
	id := e.start(t, b)
	v := e.await(t, id, "prod awaiting its before approval", func(v *pipeline.View) bool {
		return v.Status == pipeline.AwaitingApproval
	})
	byName := map[string]pipeline.TargetView{}
	for _, tg := range v.Targets {
		byName[tg.Name] = tg
	}
	if byName["staging"].Status != pipeline.Succeeded || byName["prod"].Pause == nil || byName["prod"].Pause.Step != "prod/before/0" {
		t.Fatalf("targets: %+v", v.Targets)
	}
	if c, _ := e.sc.cluster("prod"); c != nil {
		if _, err := c.Get(rolloutsim.Ref{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Namespace: "shop", Name: "shop"}); err == nil {
			t.Fatal("prod was deployed before its approval")
		}
	}
	if _, err := e.Approve(context.Background(), tenant, id, "", admin); !errors.Is(err, pipeline.ErrForbidden) {
		t.Fatalf("approval without the required role: %v, want ErrForbidden", err)
	}
	manager := pipeline.Actor{Type: "user", Name: "alice", ID: "u-1", Roles: []string{"Release Managers"}}
	if n, err := e.Approve(context.Background(), tenant, id, "prod/before/0", manager); err != nil || n != 1 {
		t.Fatalf("approve: %d %v", n, err)
	}
	done := e.await(t, id, "SUCCEEDED", status(pipeline.Succeeded))
	var steps []string
	for _, s := range done.Steps {
		steps = append(steps, fmt.Sprintf("%s:%s:%s:%v", s.Ref, s.Type, s.Status, s.DependsOn))
		if s.Type == "pause" && s.Pause == nil {
			t.Errorf("pause step %s has no pause object", s.Ref)
		}
	}
	want := []string{"staging:deployment:SUCCEEDED:[]", "prod/before/0:pause:SUCCEEDED:[staging]", "prod:deployment:SUCCEEDED:[prod/before/0]"}
	slices.Sort(steps)
	slices.Sort(want)
	if !slices.Equal(steps, want) {
		t.Errorf("steps %v, want %v", steps, want)
	}
}

func TestInProgressRules(t *testing.T) {
	t.Parallel()
	e := startEngine(t, "prod-west")
	e.deployed(t, "web")
	first := e.start(t, oneTarget("web", "nginx:1", approval()))
	e.await(t, first, "AWAITING_APPROVAL", status(pipeline.AwaitingApproval))

	_, err := e.Start(context.Background(), pipeline.StartRequest{Tenant: tenant, Body: oneTarget("web", "nginx:2").JSON(), Actor: admin})
	var inProgress *store.InProgressError
	if !errors.As(err, &inProgress) || inProgress.PipelineID != first {
		t.Fatalf("second pipeline with reject: %v, want in progress naming %s", err, first)
	}

	queued := oneTarget("web", "nginx:2", weight(100))
	queued.Config = map[string]any{"ifDeploymentInProgress": map[string]any{"strategy": "enqueueOne"}}
	q1 := e.start(t, queued)
	if v, _ := e.Get(context.Background(), tenant, q1); v.Status != pipeline.Queued || v.BlockedBy != first {
		t.Fatalf("queued pipeline: %s blocked by %q", v.Status, v.BlockedBy)
	}
	queued.Image = "nginx:3"
	q2 := e.start(t, queued)
	if v, _ := e.Get(context.Background(), tenant, q1); v.Status != pipeline.Rejected || v.BlockedBy != q2 {
		t.Fatalf("older queued pipeline: %s blocked by %q, want REJECTED by %s", v.Status, v.BlockedBy, q2)
	}
	if _, err := e.Approve(context.Background(), tenant, first, "", admin); err != nil {
		t.Fatal(err)
	}
	e.await(t, first, "SUCCEEDED", status(pipeline.Succeeded))
	e.await(t, q2, "SUCCEEDED", status(pipeline.Succeeded))
	if img := rolloutOf(t, e, "prod-west", "web", "web").Spec.Template.Spec.Containers[0].Image; img != "nginx:3" {
		t.Errorf("image %s, want the newest queued one", img)
	}
}

func TestApprovalExpirationAndTimeoutFail(t *testing.T) {
	t.Parallel()
	e := startEngine(t, "prod-west")
	e.deployed(t, "web")
	exp := oneTarget("web", "nginx:2", weight(25), map[string]any{"pause": map[string]any{"untilApproved": true,
		"approvalExpiration": map[string]any{"duration": 1, "unit": "seconds"}}})
	id := e.start(t, exp)
	v := e.await(t, id, "FAILED", status(pipeline.Failed))
	if !strings.Contains(v.Message, "expired") {
		t.Errorf("message %q, want the approval's expiry", v.Message)
	}
	if ro := rolloutOf(t, e, "prod-west", "web", "web"); !ro.Status.Abort {
		t.Error("the Rollout was not aborted after the approval expired")
	}

	e.deployed(t, "api")
	slow := oneTarget("api", "api:2", weight(25), approval())
	slow.Config = map[string]any{"timeout": map[string]any{"duration": 1, "unit": "seconds"}}
	id = e.start(t, slow)
	v = e.await(t, id, "FAILED", status(pipeline.Failed))
	if !strings.Contains(v.Message, "timed out") {
		t.Errorf("message %q, want the timeout", v.Message)
	}
}

func TestStartRefusesAndStoresNothing(t *testing.T) {
	t.Parallel()
	e := startEngine(t, "prod-west")
	cases := []struct {
		name string
		body []byte
		want func(error) bool
	}{
		{"unknown account", oneTargetOn("nowhere").JSON(), func(err error) bool {
			return errors.Is(err, pipeline.ErrUnknownAccount) && err.Error() == "account 'nowhere' does not exist"
		}},
		{"no deployment", []byte(`{"application":"x","targets":{"p":{"account":"prod-west","strategy":"c"}},
			"strategies":{"c":{"canary":{"steps":[]}}},"manifests":[{"inline":"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"}]}`),
			func(err error) bool {
				var v *config.ValidationError
				return errors.As(err, &v) && strings.Contains(err.Error(), "no apps/v1 Deployment")
			}},
		{"replica set", []byte(`{"application":"x","targets":{"p":{"account":"prod-west","strategy":"c"}},
			"strategies":{"c":{"canary":{"steps":[]}}},"manifests":[{"inline":"apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: c\n"}]}`),
			func(err error) bool { var v *config.ValidationError; return errors.As(err, &v) }},
		{"not json", []byte(`{"application":`), func(err error) bool { var s *config.SyntaxError; return errors.As(err, &s) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.Start(context.Background(), pipeline.StartRequest{Tenant: tenant, Body: c.body, Actor: admin})
			if !c.want(err) {
				t.Errorf("error %v (%T)", err, err)
			}
		})
	}
	if vs, _, err := e.List(context.Background(), tenant, pipeline.ListFilter{}); err != nil || len(vs) != 0 {
		t.Errorf("stored %d pipelines (%v), want none", len(vs), err)
	}
}

func TestKeepDeploymentObjectIsAWarning(t *testing.T) {
	t.Parallel()
	e := startEngine(t, "prod-west")
	b := oneTarget("web", "nginx:1")
	b.Config = map[string]any{"keepDeploymentObject": true}
	res, err := e.Start(context.Background(), pipeline.StartRequest{Tenant: tenant, Body: b.JSON(), Actor: admin})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || res.Warnings[0].Path != "deploymentConfig.keepDeploymentObject" {
		t.Errorf("warnings %+v, want one about keepDeploymentObject", res.Warnings)
	}
}

// Manifests and context are sealed at rest: the stored record holds neither in plain text,
// and a read shows the context again.
func TestManifestsAndContextAreSealedAtRest(t *testing.T) {
	t.Parallel()
	e := startEngine(t, "prod-west")
	b := oneTarget("web", "registry.example/secret-image:9f2c1e7")
	raw := map[string]any{}
	_ = json.Unmarshal(b.JSON(), &raw)
	raw["context"] = map[string]string{"ticket": "CHANGE-424242"}
	body, _ := json.Marshal(raw)
	res, err := e.Start(context.Background(), pipeline.StartRequest{Tenant: tenant, Body: body, Actor: admin})
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.st.GetPipeline(context.Background(), tenant, res.PipelineID)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"secret-image", "CHANGE-424242"} {
		if strings.Contains(string(p.State), secret) || strings.Contains(string(p.Sealed), secret) {
			t.Errorf("%q is stored in plain text", secret)
		}
	}
	v, err := e.Get(context.Background(), tenant, res.PipelineID)
	if err != nil || v.Context["ticket"] != "CHANGE-424242" {
		t.Errorf("the view's context %v (%v), want the ticket back", v.Context, err)
	}
}

func (sc *simCluster) setDown(account string, down bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.down[account] = down
}

// While the agent is away (and the Rollout cannot be read), the target keeps what it showed
// last: its approval stays open and can be given; the engine promotes once the agent is back.
func TestUnreadableRolloutKeepsTheApprovalOpen(t *testing.T) {
	t.Parallel()
	e := startEngine(t, "prod-west")
	e.deployed(t, "web")
	id := e.start(t, oneTarget("web", "nginx:2", weight(25), approval()))
	e.await(t, id, "AWAITING_APPROVAL", status(pipeline.AwaitingApproval))
	e.sc.setDown("prod-west", true)
	v := e.await(t, id, "a pass that could not reach the cluster", func(v *pipeline.View) bool {
		return strings.Contains(v.Targets[0].Message, "waiting for the cluster")
	})
	if v.Status != pipeline.AwaitingApproval || v.Targets[0].Pause == nil || v.Targets[0].Pause.Step != "prod/canary/1" {
		t.Fatalf("with the agent away: %s, pause %+v; want still AWAITING_APPROVAL at prod/canary/1", v.Status, v.Targets[0].Pause)
	}
	if n, err := e.Approve(context.Background(), tenant, id, "", admin); err != nil || n != 1 {
		t.Fatalf("approve while the agent is away: %d %v", n, err)
	}
	e.sc.setDown("prod-west", false)
	e.await(t, id, "SUCCEEDED", status(pipeline.Succeeded))
}

func oneTargetOn(account string) body {
	b := oneTarget("web", "nginx:1")
	b.Targets["prod"]["account"] = account
	return b
}

func TestUnmanagedDeploymentIsRefused(t *testing.T) {
	t.Parallel()
	e := startEngine(t, "prod-west")
	c, _ := e.sc.cluster("prod-west")
	c.Put(rolloutsim.Ref{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "web", Name: "web"},
		[]byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"web"}}`))
	id := e.start(t, oneTarget("web", "nginx:1"))
	v := e.await(t, id, "FAILED", status(pipeline.Failed))
	if !strings.Contains(v.Message, "not managed by Sortie") {
		t.Errorf("message %q", v.Message)
	}
	if e.sc.commands("prod-west apply") != 0 {
		t.Error("applied over an unmanaged Deployment")
	}
}

// A replica that stops mid-pipeline hands it over: another replica finishes it, the human
// decision taken through that replica counts, and no step runs twice.
func TestAnotherReplicaTakesOver(t *testing.T) {
	t.Parallel()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "sortie.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sc := newSimCluster(t, "prod-west")
	a, stopA := runEngineStoppable(t, st, sc, "replica-a")
	a.deployed(t, "web")
	id := a.start(t, oneTarget("web", "nginx:2", weight(25), approval(), weight(75)))
	a.await(t, id, "AWAITING_APPROVAL", status(pipeline.AwaitingApproval))
	stopA()

	b := runEngine(t, st, sc, "replica-b")
	if n, err := b.Approve(context.Background(), tenant, id, "", admin); err != nil || n != 1 {
		t.Fatalf("approve through the other replica: %d %v", n, err)
	}
	b.await(t, id, "SUCCEEDED", status(pipeline.Succeeded))
	evs := events(t, b, id)
	if n := count(evs, "rollout.promote", nil); n != 1 {
		t.Errorf("%d promotions, want 1", n)
	}
	if n := count(evs, "target.apply", nil); n != 1 {
		t.Errorf("%d applies, want 1", n)
	}
	if n := count(evs, "target.status", func(ev pipeline.Event) bool { return ev.Status == pipeline.AwaitingApproval }); n != 1 {
		t.Errorf("AWAITING_APPROVAL recorded %d times, want 1", n)
	}
}
