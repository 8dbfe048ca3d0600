package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sortie-dev/sortie/pipeline/config"
	"github.com/sortie-dev/sortie/store"
)

// Status is the one status enum of pipelines, targets (deployments) and steps (api.md
// section 4).
type Status string

// Status values. PAUSED is a timed pause running; AWAITING_APPROVAL is waiting for a human.
const (
	NotStarted       Status = store.StatusNotStarted
	Queued           Status = store.StatusQueued
	Running          Status = store.StatusRunning
	Paused           Status = store.StatusPaused
	AwaitingApproval Status = store.StatusAwaitingApproval
	Succeeded        Status = store.StatusSucceeded
	Failed           Status = store.StatusFailed
	Cancelled        Status = store.StatusCancelled
	Rejected         Status = store.StatusRejected
)

// Terminal reports whether s is a final status.
func (s Status) Terminal() bool { return store.TerminalStatus(string(s)) }

// Actor is who did something: the principal of the verified token that asked.
type Actor struct {
	Type  string   `json:"type"` // "machine" or "user"
	Name  string   `json:"name"`
	ID    string   `json:"id"` // client id or user id
	Roles []string `json:"roles,omitempty"`
}

// Form says which API a start request came through.
type Form int

// Forms of StartRequest.
const (
	// FormPipeline is the deploy.yml of the Armory CLI (POST /pipelines/kubernetes, POST /pipelines).
	FormPipeline Form = iota
	// FormDeployment is the single-target request of the Spinnaker stage (POST /deployments/kubernetes).
	FormDeployment
)

// StartRequest asks for a new pipeline.
type StartRequest struct {
	Tenant store.Tenant
	Form   Form
	Body   []byte // the JSON request body as received
	Actor  Actor
}

// StartResult is what Start stored.
type StartResult struct {
	PipelineID string
	// DeploymentID is the id of the single target's deployment (FormDeployment), which
	// GET /deployments/{id} reads; it equals PipelineID.
	DeploymentID string
	Status       Status
	BlockedBy    string // the pipeline a QUEUED one waits for
	Replaced     string // the older queued pipeline this one replaced (now REJECTED)
	Warnings     []config.Warning
}

// View is a pipeline as the APIs show it.
type View struct {
	ID            string            `json:"id"`
	Application   string            `json:"application"`
	Status        Status            `json:"status"`
	Form          string            `json:"form"` // "pipeline" or "deployment"
	CreatedAt     time.Time         `json:"createdAt"`
	StartedAt     time.Time         `json:"startedAt"`   // zero until it leaves QUEUED/NOT_STARTED
	CompletedAt   time.Time         `json:"completedAt"` // zero while active
	Context       map[string]string `json:"context,omitempty"`
	InitiatedBy   Actor             `json:"initiatedBy"`
	BlockedBy     string            `json:"blockedBy,omitempty"`
	Message       string            `json:"message,omitempty"` // why it failed, was cancelled or rejected
	Targets       []TargetView      `json:"targets"`
	Steps         []StepView        `json:"steps"`
	Decisions     []Decision        `json:"decisions"`
	SourceControl json.RawMessage   `json:"sourceControl,omitempty"`
	Revision      int64             `json:"revision"`
}

// TargetView is one target (one deployment to one account) of a pipeline.
type TargetView struct {
	Name         string    `json:"name"`
	Account      string    `json:"account"`
	Namespace    string    `json:"namespace"`
	DeploymentID string    `json:"deploymentId"`
	Status       Status    `json:"status"`
	Strategy     string    `json:"strategy"` // "canary" or "blueGreen"
	DependsOn    []string  `json:"dependsOn,omitempty"`
	CurrentStep  int       `json:"currentStep"` // steps of the strategy passed so far
	TotalSteps   int       `json:"totalSteps"`
	Weight       int       `json:"weight"` // canary weight of the new version, 0..100
	Pause        *Pause    `json:"pause,omitempty"`
	StartedAt    time.Time `json:"startedAt"`
	CompletedAt  time.Time `json:"completedAt"`
	Message      string    `json:"message,omitempty"`
}

// Pause describes what a PAUSED or AWAITING_APPROVAL target or step waits for.
type Pause struct {
	Reason        string    `json:"reason"` // "timed", "approval"
	Step          string    `json:"step"`   // the ref approve takes
	EndTime       time.Time `json:"endTime"`
	RequiresRoles []string  `json:"requiresRoles,omitempty"`
	ExpiresAt     time.Time `json:"expiresAt"` // when an unanswered approval fails the pipeline
}

// StepView is one step of the pipeline graph: a target's deployment or one of its
// before/after pauses.
type StepView struct {
	Ref           string          `json:"ref"`
	Type          string          `json:"type"` // "deployment" or "pause"
	Status        Status          `json:"status"`
	DependsOn     []string        `json:"dependsOn"`
	ConstraintFor string          `json:"constraintFor,omitempty"` // the target a pause gates
	Deployment    *StepDeployment `json:"deployment,omitempty"`
	Pause         *StepPause      `json:"pause,omitempty"`
}

// StepDeployment is the deployment part of a deployment step.
type StepDeployment struct {
	ID          string `json:"id"`
	Environment string `json:"environment"` // the target's name
	Step        int    `json:"step"`
	TotalSteps  int    `json:"totalSteps"`
}

// StepPause is the pause part of a pause step.
type StepPause struct {
	Duration      int64    `json:"duration"` // in Unit; 0 for approvals
	Unit          string   `json:"unit"`     // SECONDS, MINUTES, HOURS, or NONE for approvals
	UntilApproved bool     `json:"untilApproved"`
	RequiresRoles []string `json:"requiresRoles,omitempty"`
}

// Decision is a human action on a pipeline: who, what and when.
type Decision struct {
	Action string    `json:"action"` // "approve", "resume", "abort"
	Step   string    `json:"step,omitempty"`
	Target string    `json:"target,omitempty"`
	Actor  Actor     `json:"actor"`
	At     time.Time `json:"at"`
}

// Event is one entry of a pipeline's history.
type Event struct {
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Target  string    `json:"target,omitempty"`
	Step    string    `json:"step,omitempty"`
	Status  Status    `json:"status,omitempty"`
	Message string    `json:"message,omitempty"`
	Actor   *Actor    `json:"actor,omitempty"`
}

// ListFilter selects pipelines for List.
type ListFilter struct {
	Application string
	Statuses    []Status
	After       string // paging cursor from the previous page
	Limit       int
}

// Sentinel errors of the engine's operations; check them with errors.Is. Validation errors
// are the config package's (*config.SyntaxError: 400; *config.ValidationError and
// *config.UnsupportedError: 422).
var (
	// ErrNotFound: no such pipeline or deployment in the caller's tenant.
	ErrNotFound = errors.New("pipeline not found")
	// ErrInProgress: the application has a pipeline in progress and the config says reject
	// (409). The returned error is a *store.InProgressError naming it.
	ErrInProgress = store.ErrInProgress
	// ErrNothingToApprove: the pipeline is not waiting for an approval (of that step) (409).
	ErrNothingToApprove = errors.New("nothing is awaiting approval")
	// ErrFinished: the pipeline has already finished (409).
	ErrFinished = errors.New("the pipeline has already finished")
	// ErrForbidden: the approval needs a role the caller does not have (403).
	ErrForbidden = errors.New("the caller lacks a role this approval requires")
	// ErrUnknownAccount: a target's account has no agent connected (422). The error reads
	// "account 'x' does not exist".
	ErrUnknownAccount = errors.New("account does not exist")
)

// unknownAccountError is ErrUnknownAccount naming the account and the target.
type unknownAccountError struct{ account, path string }

func (e *unknownAccountError) Error() string {
	return fmt.Sprintf("account '%s' does not exist", e.account)
}
func (e *unknownAccountError) Is(target error) bool { return target == ErrUnknownAccount }

// Field is the JSON path of the config that named the account, for the error contract's
// metadata.field.
func (e *unknownAccountError) Field() string { return e.path }
