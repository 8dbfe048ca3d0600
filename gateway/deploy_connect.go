package gateway

import (
	"context"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	deployv1 "github.com/sortie-dev/sortie/gen/sortie/deploy/v1"
	"github.com/sortie-dev/sortie/gen/sortie/deploy/v1/deployv1connect"
	identityv1 "github.com/sortie-dev/sortie/gen/sortie/identity/v1"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/pipeline"
	"github.com/sortie-dev/sortie/pipeline/config"
)

// deployProcedureScopes declares what each DeploymentService procedure requires.
var deployProcedureScopes = procedureScopes{
	deployv1connect.DeploymentServiceStartPipelineProcedure:      identity.ScopeManageDeploy,
	deployv1connect.DeploymentServiceStartDeploymentProcedure:    identity.ScopeManageDeploy,
	deployv1connect.DeploymentServiceGetPipelineProcedure:        identity.ScopeReadDeploy,
	deployv1connect.DeploymentServiceListPipelinesProcedure:      identity.ScopeReadDeploy,
	deployv1connect.DeploymentServiceWatchPipelineProcedure:      identity.ScopeReadDeploy,
	deployv1connect.DeploymentServiceWatchPipelinesProcedure:     identity.ScopeReadDeploy,
	deployv1connect.DeploymentServiceApprovePipelineProcedure:    identity.ScopeManageDeploy,
	deployv1connect.DeploymentServiceResumeDeploymentProcedure:   identity.ScopeManageDeploy,
	deployv1connect.DeploymentServiceAbortPipelineProcedure:      identity.ScopeManageDeploy,
	deployv1connect.DeploymentServiceListPipelineEventsProcedure: identity.ScopeReadDeploy,
}

// deployServer implements DeploymentService over the same engine calls as REST.
type deployServer struct {
	g *Gateway
}

var _ deployv1connect.DeploymentServiceHandler = (*deployServer)(nil)

func (s *deployServer) err(ctx context.Context, err error) error {
	return connectError(ctx, s.g.log, err)
}

func tsPB(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func statusPB(st pipeline.Status) deployv1.Status {
	if v, ok := deployv1.Status_value["STATUS_"+string(st)]; ok {
		return deployv1.Status(v)
	}
	return deployv1.Status_STATUS_UNSPECIFIED
}

func actorPB(a pipeline.Actor) *deployv1.Actor {
	typ := identityv1.PrincipalType_PRINCIPAL_TYPE_UNSPECIFIED
	switch a.Type {
	case identity.PrincipalMachine:
		typ = identityv1.PrincipalType_PRINCIPAL_TYPE_MACHINE
	case identity.PrincipalUser:
		typ = identityv1.PrincipalType_PRINCIPAL_TYPE_USER
	}
	return &deployv1.Actor{Type: typ, Name: a.Name, Id: a.ID, Roles: a.Roles}
}

func pausePB(p *pipeline.Pause) *deployv1.Pause {
	if p == nil {
		return nil
	}
	reason := deployv1.PauseReason_PAUSE_REASON_UNSPECIFIED
	switch p.Reason {
	case "timed":
		reason = deployv1.PauseReason_PAUSE_REASON_TIMED
	case "approval":
		reason = deployv1.PauseReason_PAUSE_REASON_APPROVAL
	}
	return &deployv1.Pause{Reason: reason, Step: p.Step, EndTime: tsPB(p.EndTime), RequiresRoles: p.RequiresRoles, ExpireTime: tsPB(p.ExpiresAt)}
}

// durationPB converts a pause's duration and unit; approvals (NONE) have none.
func durationPB(n int64, unit string) *durationpb.Duration {
	per := map[string]time.Duration{"SECONDS": time.Second, "MINUTES": time.Minute, "HOURS": time.Hour}[strings.ToUpper(unit)]
	if per == 0 || n == 0 {
		return nil
	}
	return durationpb.New(time.Duration(n) * per)
}

func pipelinePB(v *pipeline.View) *deployv1.Pipeline {
	form := deployv1.Form_FORM_PIPELINE
	if v.Form == "deployment" {
		form = deployv1.Form_FORM_DEPLOYMENT
	}
	out := &deployv1.Pipeline{
		Id: v.ID, Application: v.Application, Status: statusPB(v.Status), Form: form,
		CreateTime: tsPB(v.CreatedAt), StartTime: tsPB(v.StartedAt), CompleteTime: tsPB(v.CompletedAt),
		Context: v.Context, InitiatedBy: actorPB(v.InitiatedBy), BlockedBy: v.BlockedBy, Message: v.Message,
		SourceControlJson: v.SourceControl, Revision: v.Revision,
	}
	for _, tg := range v.Targets {
		out.Targets = append(out.Targets, &deployv1.Target{
			Name: tg.Name, Account: tg.Account, Namespace: tg.Namespace, DeploymentId: tg.DeploymentID,
			Status: statusPB(tg.Status), Strategy: tg.Strategy, DependsOn: tg.DependsOn,
			CurrentStep: int32(tg.CurrentStep), TotalSteps: int32(tg.TotalSteps), Weight: int32(tg.Weight),
			Pause: pausePB(tg.Pause), StartTime: tsPB(tg.StartedAt), CompleteTime: tsPB(tg.CompletedAt), Message: tg.Message,
		})
	}
	for _, st := range v.Steps {
		step := &deployv1.Step{Ref: st.Ref, Status: statusPB(st.Status), DependsOn: st.DependsOn, ConstraintFor: st.ConstraintFor}
		switch st.Type {
		case "deployment":
			step.Type = deployv1.StepType_STEP_TYPE_DEPLOYMENT
		case "pause":
			step.Type = deployv1.StepType_STEP_TYPE_PAUSE
		}
		if d := st.Deployment; d != nil {
			step.Detail = &deployv1.Step_Deployment{Deployment: &deployv1.StepDeployment{
				Id: d.ID, Environment: d.Environment, Step: int32(d.Step), TotalSteps: int32(d.TotalSteps)}}
		}
		if p := st.Pause; p != nil {
			step.Detail = &deployv1.Step_Pause{Pause: &deployv1.StepPause{
				Duration: durationPB(p.Duration, p.Unit), UntilApproved: p.UntilApproved, RequiresRoles: p.RequiresRoles}}
		}
		out.Steps = append(out.Steps, step)
	}
	for _, d := range v.Decisions {
		action := deployv1.DecisionAction_DECISION_ACTION_UNSPECIFIED
		switch d.Action {
		case "approve":
			action = deployv1.DecisionAction_DECISION_ACTION_APPROVE
		case "resume":
			action = deployv1.DecisionAction_DECISION_ACTION_RESUME
		case "abort":
			action = deployv1.DecisionAction_DECISION_ACTION_ABORT
		}
		out.Decisions = append(out.Decisions, &deployv1.Decision{Action: action, Step: d.Step, Target: d.Target, Actor: actorPB(d.Actor), Time: tsPB(d.At)})
	}
	return out
}

func warningsPB(ws []config.Warning) []*deployv1.Warning {
	out := make([]*deployv1.Warning, 0, len(ws))
	for _, w := range ws {
		out = append(out, &deployv1.Warning{Path: w.Path, Message: w.Message})
	}
	return out
}

func (s *deployServer) StartPipeline(ctx context.Context, req *connect.Request[deployv1.StartPipelineRequest]) (*connect.Response[deployv1.StartPipelineResponse], error) {
	form := pipeline.FormPipeline
	switch req.Msg.GetForm() {
	case deployv1.Form_FORM_UNSPECIFIED, deployv1.Form_FORM_PIPELINE:
	case deployv1.Form_FORM_DEPLOYMENT:
		form = pipeline.FormDeployment
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("form: unknown value %d", req.Msg.GetForm()))
	}
	res, err := s.g.start(ctx, form, req.Msg.GetConfigJson())
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&deployv1.StartPipelineResponse{
		PipelineId: res.PipelineID, DeploymentId: res.DeploymentID, Status: statusPB(res.Status),
		BlockedBy: res.BlockedBy, Replaced: res.Replaced, Warnings: warningsPB(res.Warnings),
	}), nil
}

func (s *deployServer) StartDeployment(ctx context.Context, req *connect.Request[deployv1.StartDeploymentRequest]) (*connect.Response[deployv1.StartDeploymentResponse], error) {
	res, err := s.g.start(ctx, pipeline.FormDeployment, req.Msg.GetConfigJson())
	if err != nil {
		return nil, s.err(ctx, err)
	}
	id := res.DeploymentID
	if id == "" {
		id = res.PipelineID
	}
	return connect.NewResponse(&deployv1.StartDeploymentResponse{DeploymentId: id, Warnings: warningsPB(res.Warnings)}), nil
}

func (s *deployServer) GetPipeline(ctx context.Context, req *connect.Request[deployv1.GetPipelineRequest]) (*connect.Response[deployv1.GetPipelineResponse], error) {
	v, err := s.g.view(ctx, req.Msg.GetId())
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&deployv1.GetPipelineResponse{Pipeline: pipelinePB(v)}), nil
}

func (s *deployServer) ListPipelines(ctx context.Context, req *connect.Request[deployv1.ListPipelinesRequest]) (*connect.Response[deployv1.ListPipelinesResponse], error) {
	size := int(req.Msg.GetPageSize())
	switch {
	case size == 0:
		size = defaultPageSize
	case size < 0 || size > maxPageSize:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("page_size: %d is out of range: use 1 to %d", size, maxPageSize))
	}
	var sts []pipeline.Status
	for _, st := range req.Msg.GetStatuses() {
		name, ok := strings.CutPrefix(st.String(), "STATUS_")
		if !ok || st == deployv1.Status_STATUS_UNSPECIFIED {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("statuses: %v is not a status to filter by", st))
		}
		sts = append(sts, pipeline.Status(name))
	}
	e, err := s.g.engine()
	if err != nil {
		return nil, s.err(ctx, err)
	}
	views, next, err := e.List(ctx, principalFrom(ctx).Tenant(), pipeline.ListFilter{
		Application: req.Msg.GetApplication(), Statuses: sts, After: req.Msg.GetPageToken(), Limit: size,
	})
	if err != nil {
		return nil, s.err(ctx, err)
	}
	resp := &deployv1.ListPipelinesResponse{NextPageToken: next}
	for _, v := range views {
		resp.Pipelines = append(resp.Pipelines, pipelinePB(v))
	}
	return connect.NewResponse(resp), nil
}

// forward sends every view of ch until it closes or ctx ends.
func forward(ctx context.Context, ch <-chan *pipeline.View, send func(*deployv1.Pipeline) error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case v, ok := <-ch:
			if !ok {
				return nil
			}
			if err := send(pipelinePB(v)); err != nil {
				return err
			}
		}
	}
}

func (s *deployServer) WatchPipeline(ctx context.Context, req *connect.Request[deployv1.WatchPipelineRequest], stream *connect.ServerStream[deployv1.WatchPipelineResponse]) error {
	ctx, stop := s.g.authorizedStream(ctx)
	defer stop()
	e, err := s.g.engine()
	if err != nil {
		return s.err(ctx, err)
	}
	ch, err := e.Watch(ctx, principalFrom(ctx).Tenant(), req.Msg.GetId())
	if err != nil {
		return s.err(ctx, err)
	}
	return streamEnd(ctx, forward(ctx, ch, func(p *deployv1.Pipeline) error {
		return stream.Send(&deployv1.WatchPipelineResponse{Pipeline: p})
	}))
}

func (s *deployServer) WatchPipelines(ctx context.Context, _ *connect.Request[deployv1.WatchPipelinesRequest], stream *connect.ServerStream[deployv1.WatchPipelinesResponse]) error {
	ctx, stop := s.g.authorizedStream(ctx)
	defer stop()
	e, err := s.g.engine()
	if err != nil {
		return s.err(ctx, err)
	}
	ch, err := e.WatchTenant(ctx, principalFrom(ctx).Tenant())
	if err != nil {
		return s.err(ctx, err)
	}
	// Send the headers now: a tenant without pipelines may send nothing for a long time, and
	// clients wait for the headers before they look at the stream.
	if err := stream.Send(nil); err != nil {
		return err
	}
	return streamEnd(ctx, forward(ctx, ch, func(p *deployv1.Pipeline) error {
		return stream.Send(&deployv1.WatchPipelinesResponse{Pipeline: p})
	}))
}

func (s *deployServer) ApprovePipeline(ctx context.Context, req *connect.Request[deployv1.ApprovePipelineRequest]) (*connect.Response[deployv1.ApprovePipelineResponse], error) {
	n, err := s.g.act(ctx, "approve", req.Msg.GetId(), req.Msg.GetStep())
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&deployv1.ApprovePipelineResponse{
		Message: actionMessage("approve", "pipeline", req.Msg.GetId(), n), NumberAffected: int32(n)}), nil
}

func (s *deployServer) ResumeDeployment(ctx context.Context, req *connect.Request[deployv1.ResumeDeploymentRequest]) (*connect.Response[deployv1.ResumeDeploymentResponse], error) {
	n, err := s.g.act(ctx, "resume", req.Msg.GetDeploymentId(), "")
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&deployv1.ResumeDeploymentResponse{
		Message: actionMessage("resume", "deployment", req.Msg.GetDeploymentId(), n), NumberAffected: int32(n)}), nil
}

func (s *deployServer) AbortPipeline(ctx context.Context, req *connect.Request[deployv1.AbortPipelineRequest]) (*connect.Response[deployv1.AbortPipelineResponse], error) {
	n, err := s.g.act(ctx, "abort", req.Msg.GetId(), "")
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return connect.NewResponse(&deployv1.AbortPipelineResponse{
		Message: actionMessage("abort", "pipeline", req.Msg.GetId(), n), NumberAffected: int32(n)}), nil
}

func (s *deployServer) ListPipelineEvents(ctx context.Context, req *connect.Request[deployv1.ListPipelineEventsRequest]) (*connect.Response[deployv1.ListPipelineEventsResponse], error) {
	e, err := s.g.engine()
	if err != nil {
		return nil, s.err(ctx, err)
	}
	events, err := e.Events(ctx, principalFrom(ctx).Tenant(), req.Msg.GetId())
	if err != nil {
		return nil, s.err(ctx, err)
	}
	resp := &deployv1.ListPipelineEventsResponse{}
	for _, ev := range events {
		item := &deployv1.Event{Seq: ev.Seq, Time: tsPB(ev.Time), Type: ev.Type, Target: ev.Target, Step: ev.Step,
			Status: statusPB(ev.Status), Message: ev.Message}
		if ev.Actor != nil {
			item.Actor = actorPB(*ev.Actor)
		}
		resp.Events = append(resp.Events, item)
	}
	return connect.NewResponse(resp), nil
}
