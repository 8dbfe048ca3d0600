package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	deployv1 "github.com/sortie-dev/sortie/gen/sortie/deploy/v1"
	"github.com/sortie-dev/sortie/gen/sortie/deploy/v1/deployv1connect"
	identityv1 "github.com/sortie-dev/sortie/gen/sortie/identity/v1"
)

// TestDeploymentServiceOverConnect drives DeploymentService with the generated client on
// the real HTTP/2 listener: start, get, list, watch one pipeline to its end, watch the
// tenant, approve and abort, and the error codes.
func TestDeploymentServiceOverConnect(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := deployv1connect.NewDeploymentServiceClient(h2cClient(), f.URL, connect.WithGRPC(), connect.WithInterceptors(bearerAll(f.tok)))

	// The tenant's watch is open before anything starts, so it must report the new pipeline.
	tenantCtx, stopTenant := context.WithCancel(ctx)
	tenant, err := client.WatchPipelines(tenantCtx, connect.NewRequest(&deployv1.WatchPipelinesRequest{}))
	if err != nil {
		t.Fatal(err)
	}

	started, err := client.StartPipeline(ctx, connect.NewRequest(&deployv1.StartPipelineRequest{
		ConfigJson: mustJSON(t, gated("web")), Form: deployv1.Form_FORM_PIPELINE,
	}))
	if err != nil {
		t.Fatalf("StartPipeline: %v", err)
	}
	id := started.Msg.GetPipelineId()
	if id == "" || len(started.Msg.GetWarnings()) != 0 {
		t.Fatalf("StartPipeline: %v", started.Msg)
	}

	for tenant.Receive() {
		if tenant.Msg().GetPipeline().GetId() == id {
			break
		}
	}
	if tenant.Err() != nil {
		t.Fatalf("WatchPipelines: %v", tenant.Err())
	}
	stopTenant()
	for tenant.Receive() {
	}
	if code := connect.CodeOf(tenant.Err()); tenant.Err() != nil && code != connect.CodeCanceled {
		t.Errorf("WatchPipelines after the caller hung up: %v", tenant.Err())
	}
	tenant.Close()

	// Watch the pipeline: it reaches AWAITING_APPROVAL, is aborted, and the stream ends by
	// itself after the final view.
	watch, err := client.WatchPipeline(ctx, connect.NewRequest(&deployv1.WatchPipelineRequest{Id: id}))
	if err != nil {
		t.Fatal(err)
	}
	var last *deployv1.Pipeline
	aborted := false
	for watch.Receive() {
		last = watch.Msg().GetPipeline()
		if last.GetStatus() == deployv1.Status_STATUS_AWAITING_APPROVAL && !aborted {
			tg := last.GetTargets()[0]
			if tg.GetPause().GetReason() != deployv1.PauseReason_PAUSE_REASON_APPROVAL || tg.GetPause().GetStep() == "" {
				t.Errorf("awaiting target: %v", tg)
			}
			var gate *deployv1.Step
			for _, s := range last.GetSteps() {
				if s.GetRef() == tg.GetPause().GetStep() {
					gate = s
				}
			}
			if gate.GetType() != deployv1.StepType_STEP_TYPE_PAUSE || !gate.GetPause().GetUntilApproved() || gate.GetConstraintFor() != "prod" {
				t.Errorf("gate step: %v", gate)
			}
			res, err := client.AbortPipeline(ctx, connect.NewRequest(&deployv1.AbortPipelineRequest{Id: id}))
			if err != nil || res.Msg.GetNumberAffected() != 1 {
				t.Fatalf("AbortPipeline: %v %v", res, err)
			}
			aborted = true
		}
	}
	if err := watch.Err(); err != nil {
		t.Fatalf("WatchPipeline: %v", err)
	}
	watch.Close()
	if !aborted || last.GetStatus() != deployv1.Status_STATUS_CANCELLED || last.GetCompleteTime() == nil {
		t.Fatalf("the watch ended on %v (aborted %v)", last, aborted)
	}
	if d := last.GetDecisions(); len(d) != 1 || d[0].GetAction() != deployv1.DecisionAction_DECISION_ACTION_ABORT ||
		d[0].GetActor().GetName() != f.credName || d[0].GetActor().GetType() != identityv1.PrincipalType_PRINCIPAL_TYPE_MACHINE {
		t.Errorf("decisions: %v", d)
	}

	got, err := client.GetPipeline(ctx, connect.NewRequest(&deployv1.GetPipelineRequest{Id: id}))
	if err != nil {
		t.Fatal(err)
	}
	if p := got.Msg.GetPipeline(); p.GetApplication() != "web" || p.GetContext()["commit"] != "abc123" ||
		p.GetInitiatedBy().GetName() != f.credName || p.GetForm() != deployv1.Form_FORM_PIPELINE || p.GetCreateTime() == nil {
		t.Errorf("GetPipeline: %v", p)
	}

	dep, err := client.StartDeployment(ctx, connect.NewRequest(&deployv1.StartDeploymentRequest{ConfigJson: mustJSON(t, map[string]any{
		"account": "prod-west", "application": "stage", "namespace": "web",
		"manifests": []any{map[string]any{"inline": map[string]any{"value": deploymentYAML}}},
		"canary":    map[string]any{"steps": []any{}},
	})}))
	if err != nil {
		t.Fatalf("StartDeployment: %v", err)
	}
	list, err := client.ListPipelines(ctx, connect.NewRequest(&deployv1.ListPipelinesRequest{
		Statuses: []deployv1.Status{deployv1.Status_STATUS_CANCELLED},
	}))
	if err != nil || len(list.Msg.GetPipelines()) != 1 || list.Msg.GetPipelines()[0].GetId() != id {
		t.Errorf("ListPipelines CANCELLED: %v %v", list, err)
	}
	list, err = client.ListPipelines(ctx, connect.NewRequest(&deployv1.ListPipelinesRequest{PageSize: 1}))
	if err != nil || len(list.Msg.GetPipelines()) != 1 || list.Msg.GetPipelines()[0].GetId() != dep.Msg.GetDeploymentId() || list.Msg.GetNextPageToken() == "" {
		t.Errorf("ListPipelines newest first, one a page: %v %v", list, err)
	}

	for _, c := range []struct {
		name string
		call func() error
		want connect.Code
		says string
	}{
		{"unknown pipeline", func() error {
			_, err := client.GetPipeline(ctx, connect.NewRequest(&deployv1.GetPipelineRequest{Id: "nope"}))
			return err
		}, connect.CodeNotFound, ""},
		{"watch an unknown pipeline", func() error {
			s, err := client.WatchPipeline(ctx, connect.NewRequest(&deployv1.WatchPipelineRequest{Id: "nope"}))
			if err != nil {
				return err
			}
			defer s.Close()
			for s.Receive() {
			}
			return s.Err()
		}, connect.CodeNotFound, ""},
		{"approve a finished pipeline", func() error {
			_, err := client.ApprovePipeline(ctx, connect.NewRequest(&deployv1.ApprovePipelineRequest{Id: id}))
			return err
		}, connect.CodeFailedPrecondition, "finished"},
		{"invalid config", func() error {
			_, err := client.StartPipeline(ctx, connect.NewRequest(&deployv1.StartPipelineRequest{ConfigJson: []byte(`{"application":"x"}`)}))
			return err
		}, connect.CodeInvalidArgument, "targets"},
		{"malformed config", func() error {
			_, err := client.StartPipeline(ctx, connect.NewRequest(&deployv1.StartPipelineRequest{ConfigJson: []byte(`{`)}))
			return err
		}, connect.CodeInvalidArgument, "malformed"},
		{"unknown account", func() error {
			_, err := client.StartPipeline(ctx, connect.NewRequest(&deployv1.StartPipelineRequest{ConfigJson: mustJSON(t,
				deployYML("web", deploymentYAML, map[string]any{"targets": map[string]any{"prod": map[string]any{"account": "nowhere", "strategy": "rolling"}}}))}))
			return err
		}, connect.CodeFailedPrecondition, "account 'nowhere' does not exist"},
		{"in progress", func() error {
			if _, err := client.StartPipeline(ctx, connect.NewRequest(&deployv1.StartPipelineRequest{ConfigJson: mustJSON(t, gated("api"))})); err != nil {
				return err
			}
			_, err := client.StartPipeline(ctx, connect.NewRequest(&deployv1.StartPipelineRequest{ConfigJson: mustJSON(t, gated("api"))}))
			return err
		}, connect.CodeFailedPrecondition, "in progress"},
		{"resume an unknown deployment", func() error {
			_, err := client.ResumeDeployment(ctx, connect.NewRequest(&deployv1.ResumeDeploymentRequest{DeploymentId: "nope"}))
			return err
		}, connect.CodeNotFound, ""},
		{"resume a deployment that is not paused", func() error {
			_, err := client.ResumeDeployment(ctx, connect.NewRequest(&deployv1.ResumeDeploymentRequest{DeploymentId: dep.Msg.GetDeploymentId()}))
			return err
		}, connect.CodeFailedPrecondition, "nothing is awaiting approval"},
		{"unspecified status filter", func() error {
			_, err := client.ListPipelines(ctx, connect.NewRequest(&deployv1.ListPipelinesRequest{Statuses: []deployv1.Status{deployv1.Status_STATUS_UNSPECIFIED}}))
			return err
		}, connect.CodeInvalidArgument, "statuses"},
		{"page size out of range", func() error {
			_, err := client.ListPipelines(ctx, connect.NewRequest(&deployv1.ListPipelinesRequest{PageSize: 501}))
			return err
		}, connect.CodeInvalidArgument, "page_size"},
	} {
		err := c.call()
		if connect.CodeOf(err) != c.want || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want %v saying %q", c.name, err, c.want, c.says)
		}
	}
}

// TestDeploymentServiceJSON calls a procedure the way the browser console does, with the
// Connect protocol's JSON, and checks the enum and timestamp encodings.
func TestDeploymentServiceJSON(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	id := f.startPipeline(t, deployYML("web", refusedYAML, nil))
	f.waitStatus(t, id, "FAILED")
	r := f.do(t, "POST", "/sortie.deploy.v1.DeploymentService/GetPipeline", f.tok, `{"id":"`+id+`"}`)
	for _, want := range []string{`"status":"STATUS_FAILED"`, `"form":"FORM_PIPELINE"`, `"type":"STEP_TYPE_DEPLOYMENT"`, `"completeTime":"`} {
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), want) {
			t.Errorf("GetPipeline JSON lacks %s: %d %s", want, r.Status, r.Body)
		}
	}
}
