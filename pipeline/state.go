package pipeline

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/sortie-dev/sortie/store"
)

// state is the engine's plain (unencrypted) part of a stored pipeline: the plan, which step
// each target is on and every human decision. Its JSON names are the stored form: renaming a
// Go field must keep its tag.
type state struct {
	Form        string     `json:"form"` // "pipeline" or "deployment"
	InitiatedBy Actor      `json:"initiated_by"`
	Timeout     int64      `json:"timeout_ms,omitempty"`
	StartedAt   time.Time  `json:"started_at,omitzero"`
	Deadline    time.Time  `json:"deadline,omitzero"` // StartedAt + Timeout
	Targets     []*target  `json:"targets"`
	Decisions   []Decision `json:"decisions"`
	// Abort is the first abort asked for the whole pipeline.
	Abort   *Decision `json:"abort,omitempty"`
	Message string    `json:"message,omitempty"`
}

// Phases of a target, in order.
const (
	phasePending = "pending" // waiting for dependsOn
	phaseBefore  = "before"  // beforeDeployment gates
	phaseApply   = "apply"   // applying the objects (intent recorded)
	phaseRollout = "rollout" // the Rollouts progress in the cluster
	phaseAfter   = "after"   // afterDeployment gates
	phaseDone    = "done"
)

// gate is a pause: timed (Duration) or until approved.
type gate struct {
	Duration      time.Duration `json:"duration,omitempty"`
	UntilApproved bool          `json:"until_approved,omitempty"`
	RequiresRoles []string      `json:"requires_roles,omitempty"`
	Expiration    time.Duration `json:"expiration,omitempty"`
}

// canaryStep is one step of a canary strategy: a weight or a pause.
type canaryStep struct {
	Weight *int  `json:"weight,omitempty"`
	Pause  *gate `json:"pause,omitempty"`
}

// objectRef names an object in a target's cluster.
type objectRef struct {
	APIVersion string `json:"api_version"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

func (r objectRef) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name)
}

// target is one target's plan and progress.
type target struct {
	Name         string       `json:"name"`
	Account      string       `json:"account"`
	Namespace    string       `json:"namespace,omitempty"`
	DeploymentID string       `json:"deployment_id"`
	DependsOn    []string     `json:"depends_on,omitempty"`
	Strategy     string       `json:"strategy"` // "canary" or "blueGreen"
	Before       []gate       `json:"before,omitempty"`
	After        []gate       `json:"after,omitempty"`
	Canary       []canaryStep `json:"canary,omitempty"`
	// Redirect are the blue/green conditions before traffic moves to the new version.
	Redirect []gate `json:"redirect,omitempty"`
	// Services are the blue/green active and preview Services, whose selectors the
	// controller points at a version.
	Services []string    `json:"services,omitempty"`
	Rollouts []objectRef `json:"rollouts"`

	Phase string `json:"phase"`
	// EndedIn is the phase a finished target was in when it ended.
	EndedIn   string    `json:"ended_in,omitempty"`
	Status    Status    `json:"status"`
	Gate      int       `json:"gate"`                // index into the gates of the current phase
	GateStart time.Time `json:"gate_start,omitzero"` // when the current gate began
	// Approved are the refs of approved (or resumed) pauses of this target.
	Approved []string `json:"approved,omitempty"`
	// Promoted are the canary step indexes (or -1 for the blue/green promotion) a promote
	// was sent for.
	Promoted  []int `json:"promoted,omitempty"`
	AbortSent bool  `json:"abort_sent,omitempty"`
	// EndAs is the status an abort in progress ends the target with (CANCELLED for a user's
	// abort, FAILED for a timeout or an expired approval), and Reason why.
	EndAs  Status `json:"end_as,omitempty"`
	Reason string `json:"reason,omitempty"`
	// ApplyAttempts counts apply commands sent; more than one means a retry after an unknown
	// outcome or a lost lease.
	ApplyAttempts int `json:"apply_attempts,omitempty"`

	// What the Rollouts showed last.
	CurrentStep int       `json:"current_step"`
	Weight      int       `json:"weight"`
	PauseKind   string    `json:"pause_kind,omitempty"` // "timed" or "approval"
	PauseRef    string    `json:"pause_ref,omitempty"`
	PauseEnd    time.Time `json:"pause_end,omitzero"`
	PauseExpiry time.Time `json:"pause_expiry,omitzero"`
	PauseRoles  []string  `json:"pause_roles,omitempty"`

	StartedAt   time.Time `json:"started_at,omitzero"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
	Message     string    `json:"message,omitempty"`
}

// totalSteps is the number of strategy steps the target's deployment step shows.
func (tg *target) totalSteps() int {
	if tg.Strategy == "blueGreen" {
		return len(tg.Redirect) + 1
	}
	return len(tg.Canary)
}

func (tg *target) approved(ref string) bool {
	for _, r := range tg.Approved {
		if r == ref {
			return true
		}
	}
	return false
}

func (tg *target) promoted(i int) bool {
	for _, p := range tg.Promoted {
		if p == i {
			return true
		}
	}
	return false
}

// Refs of the pauses a user may approve.
func beforeRef(t string, i int) string   { return fmt.Sprintf("%s/before/%d", t, i) }
func afterRef(t string, i int) string    { return fmt.Sprintf("%s/after/%d", t, i) }
func canaryRef(t string, i int) string   { return fmt.Sprintf("%s/canary/%d", t, i) }
func redirectRef(t string, i int) string { return fmt.Sprintf("%s/redirect/%d", t, i) }

// spec is the sealed part of a pipeline: what the user sent that may be sensitive.
type spec struct {
	Context       map[string]string
	SourceControl json.RawMessage
	// Objects are each target's generated objects, in apply order, as JSON documents.
	Objects map[string][]json.RawMessage
}

// specMeta is the stored form of a spec's metadata.
type specMeta struct {
	Context       map[string]string `json:"context,omitempty"`
	SourceControl json.RawMessage   `json:"source_control,omitempty"`
}

func decodeState(p store.Pipeline) (*state, error) {
	var s state
	if err := json.Unmarshal(p.State, &s); err != nil {
		return nil, fmt.Errorf("decode state of pipeline %s: %w", p.ID, err)
	}
	return &s, nil
}

func (s *state) target(name string) *target {
	for _, tg := range s.Targets {
		if tg.Name == name {
			return tg
		}
	}
	return nil
}

// sealAD binds a sealed spec to its pipeline, so one pipeline's blob cannot be swapped into
// another's record (each of its two parts adds its own suffix).
func sealAD(t store.Tenant, id string) []byte { return []byte("pipeline:" + t.String() + ":" + id) }
