// Package config turns the two deployment request bodies Sortie accepts into one validated
// [Request] the pipeline engine runs:
//
//   - [ParsePipeline] reads the deploy.yml of the Armory CLI as JSON (POST /pipelines and
//     POST /pipelines/kubernetes) with the keys the CLI adds: files, context, targetFilters and
//     sourceControl.
//   - [ParseDeployment] reads the single-target body of the Spinnaker "Kubernetes Progressive"
//     stage (POST /deployments/kubernetes) and makes it a Request with one target named after
//     its account.
//
// Both report every problem at once, each with its JSON path (targets.prod.strategy,
// strategies.c1.canary.steps[2].setWeight.weight) and a sentence saying what is wrong and
// what is accepted. The errors map onto HTTP statuses in one way:
//
//   - [*SyntaxError] (400): the body is not JSON, is not one object, repeats a key in an
//     object, or nests deeper than 100 levels. It says where (line, column, path).
//   - [*ValidationError] (422): the body is JSON but unacceptable, including a wrong JSON type
//     for a known key (weight: "x"). Its Problems list every problem, unsupported features
//     included, and errors.As also finds an [*UnsupportedError] holding just those features.
//   - [*UnsupportedError] (422): nothing is wrong except features that are recognized but not
//     built yet (webhooks, analysis, trafficManagement, runWebhook and analysis steps,
//     exposeServices, kind: lambda, untilApproved in shutDownOldVersionAfter). Features are
//     refused, never ignored: a skipped gate would deploy what the user meant to hold.
//
// Warnings never fail a request: unknown keys ("unknown key ... ignored"), a strategy no
// target uses, and dependencies dropped by targetFilters. Warnings come back with errors too.
//
// Decisions where the spec is silent:
//
//   - A JSON null counts as an absent key (YAML turns "strategy:" into null; the CLI sends
//     null for keys it has nothing for). Empty webhooks/analysis/trafficManagement values
//     ([] or {}) ask for nothing and are accepted; anything else there is refused.
//   - The key of a step or strategy object names its type. An unknown type (a typo such as
//     "pasue") is a problem, not a warning: ignoring it would drop a gate silently. Other
//     unknown keys are warnings.
//   - application and target names must be Kubernetes label values (at most 63 characters,
//     letters, digits, '-', '_', '.', starting and ending with a letter or digit), because
//     Sortie labels everything it applies with them. Accounts follow the agent identifier
//     rule: ^[a-zA-Z0-9_-]+$, at most 63 characters. Namespaces are DNS-1123 labels.
//   - Units (seconds, minutes, hours) and ifDeploymentInProgress strategies (reject,
//     enqueueOne) are accepted in any case. A duration is a whole number above 0 and at
//     most 365 days. NONE is a unit only in the stage's approval form
//     {"duration": 0, "unit": "NONE", "untilApproved": true}, which ParsePipeline accepts
//     too because it means exactly an approval.
//   - A canary may have no steps: the rollout goes straight to 100%. Weights are whole numbers
//     0..100 that never decrease.
//   - A manifests entry without targets, or with targets: [], applies to every target; a
//     target no entry applies to is a problem, and so is an entry that yields no documents.
//     Documents are split on "---" lines; empty ones (only blanks or comments) are dropped.
//     Each document must be a YAML mapping with apiVersion, kind and metadata.name, read
//     strictly (a key repeated in a mapping is a problem, as kubectl makes it); ReplicaSets
//     and bare Pods are refused here already (they cannot become a Rollout). Problems in a
//     document name its source and number ("k8s/web.yaml, document 2") and never quote its
//     content, which may hold Secrets.
//   - Every target is validated, also those targetFilters leaves out; then only the kept
//     targets remain. A kept target's dependency on a left-out target is dropped with a
//     warning, because the CLI deploys just the chosen targets. targetFilters: [] keeps all.
//   - Dependency cycles are reported once each, with the cycle spelled out (a -> b -> a).
//   - Targets that share a strategy get their own copies of it; their Documents share the
//     YAML bytes, which are read-only.
package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Request is one validated deployment, the same shape whichever body it came from.
type Request struct {
	Version     string // "v1"
	Kind        string // "kubernetes"
	Application string
	// Targets are sorted by name; with targetFilters, only the kept ones.
	Targets []Target
	// Timeout is deploymentConfig.timeout; 0 means none.
	Timeout    time.Duration
	InProgress InProgressStrategy
	// KeepDeploymentObject is deploymentConfig.keepDeploymentObject.
	KeepDeploymentObject bool
	Context              map[string]string
	// SourceControl is the CLI's sourceControl object, compacted, or nil.
	SourceControl json.RawMessage
}

// InProgressStrategy says what a new pipeline does while another of the same application
// is still in progress.
type InProgressStrategy string

// The strategies of deploymentConfig.ifDeploymentInProgress.
const (
	// Reject refuses the new pipeline (409). It is the default.
	Reject InProgressStrategy = "reject"
	// EnqueueOne queues the new pipeline; a newer queued one replaces it.
	EnqueueOne InProgressStrategy = "enqueueOne"
)

// Target is one environment the application is deployed to.
type Target struct {
	Name    string
	Account string // the agent identifier
	// Namespace overrides the manifests' namespaces; "" keeps their own.
	Namespace string
	// DependsOn names targets that must succeed first, sorted.
	DependsOn        []string
	BeforeDeployment []Pause
	AfterDeployment  []Pause
	// StrategyName is the key in strategies (in a stage body: "canary" or "blueGreen").
	StrategyName string
	// Exactly one of Canary and BlueGreen is set.
	Canary    *Canary
	BlueGreen *BlueGreen
	// Documents are this target's manifest documents in the order the manifests list them.
	Documents []Document
}

// Document is one YAML document of a target's manifests.
type Document struct {
	// Source says where it came from: a path of files, or "manifests[i].inline".
	Source string
	// YAML is the document as written, without its "---" separator.
	YAML []byte
	// APIVersion, Kind, Name and Namespace (empty when not set) are read from the document.
	APIVersion, Kind, Name, Namespace string
}

// Canary is a canary strategy. After the last step the rollout goes to 100% by itself.
type Canary struct {
	Steps []CanaryStep
}

// CanaryStep is one canary step: exactly one of SetWeight and Pause is set.
type CanaryStep struct {
	SetWeight *int // 0..100, never lower than an earlier step's
	Pause     *Pause
}

// Pause is a timed wait or a wait for approval.
type Pause struct {
	// Duration is how long a timed pause (UntilApproved false) lasts.
	Duration      time.Duration
	UntilApproved bool
	// RequiresRoles are the roles of which an approver needs one; empty means any caller
	// allowed to approve.
	RequiresRoles []string
	// ApprovalExpiration is how long an approval may take before the pipeline fails;
	// 0 means never.
	ApprovalExpiration time.Duration
}

// BlueGreen is a blue/green strategy.
type BlueGreen struct {
	// ActiveService names a Service among the target's documents; PreviewService too, when
	// set.
	ActiveService, PreviewService string
	// RedirectTrafficAfter gates the switch of the active Service to the new version.
	RedirectTrafficAfter []Pause
	// ShutDownOldVersionAfter gates scaling the old version down; timed pauses only.
	ShutDownOldVersionAfter []Pause
}

// Warning is something the request asked for that is ignored; it never fails a request.
type Warning struct {
	Path, Message string
}

// Problem is one thing wrong with a request.
type Problem struct {
	// Path is the JSON path of the offending value: targets.prod.strategy,
	// strategies.c1.canary.steps[2].setWeight.weight, files["k8s/web.yaml"].
	Path string
	// Message says what is wrong and what is accepted.
	Message string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// ValidationError lists every problem of a well-formed body (HTTP 422, one entry each).
type ValidationError struct {
	// Problems are all problems, with unsupported features at the end.
	Problems []Problem

	unsupported int // how many of Problems, at the end, are unsupported features
}

func (e *ValidationError) Error() string {
	return "invalid deployment config: " + joinProblems(e.Problems)
}

// Unwrap gives the unsupported features among the problems as an [*UnsupportedError], or nil.
func (e *ValidationError) Unwrap() error {
	if e.unsupported == 0 {
		return nil
	}
	return &UnsupportedError{Features: e.Problems[len(e.Problems)-e.unsupported:]}
}

// UnsupportedError names features that are recognized but not built yet (HTTP 422).
type UnsupportedError struct {
	Features []Problem
}

func (e *UnsupportedError) Error() string {
	return "unsupported deployment config: " + joinProblems(e.Features)
}

// SyntaxError says why a body is not a usable JSON object (HTTP 400).
type SyntaxError struct {
	// Path is the JSON path where decoding stopped, "" at the top.
	Path string
	// Line and Column (1-based) locate the problem in the body; 0 when it is the whole body.
	Line, Column int
	Message      string
}

func (e *SyntaxError) Error() string {
	var b strings.Builder
	b.WriteString("malformed request body")
	if e.Line > 0 {
		fmt.Fprintf(&b, " at line %d, column %d", e.Line, e.Column)
	}
	if e.Path != "" {
		fmt.Fprintf(&b, " (%s)", e.Path)
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	return b.String()
}

func joinProblems(ps []Problem) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "; ")
}
