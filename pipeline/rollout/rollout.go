// Package rollout turns a target's Kubernetes manifests into the objects Sortie applies, with
// every apps/v1 Deployment rewritten as an Argo Rollout carrying the pipeline's strategy, and
// reads back the Rollouts the Argo Rollouts controller produced.
//
// Generate is a pure function of its Input: the same manifests and strategy always give the
// same objects, byte for byte, so the engine can repeat a server-side apply after an unknown
// outcome. It knows nothing of the deploy.yml syntax; the engine translates a validated config
// into an Input.
//
// # Generation rules
//
//   - An apps/v1 Deployment becomes an argoproj.io/v1alpha1 Rollout with the same name,
//     namespace, labels, annotations (minus kubectl's last-applied configuration and the
//     deployment.kubernetes.io/* annotations the Deployment controller owns), selector,
//     replicas, minReadySeconds, revisionHistoryLimit, progressDeadlineSeconds and the whole pod
//     template, moved as one value. The Deployment's spec.strategy is replaced by the Sortie
//     strategy. Deployments are decoded strictly, as the API server does by default: a field
//     the Kubernetes API does not know (a typo, or a field newer than this build) is an error,
//     because re-encoding through the typed structs would silently drop it.
//   - A pod template field the Rollout CRD's schema does not know is refused too: that
//     schema is as old as the Kubernetes API argo-rollouts v1.10 was built with (1.34), and
//     the API server silently prunes unknown fields from custom resources. The schema is
//     embedded (podtemplate-schema.json, written by go generate from the module's CRD).
//   - A Deployment with spec.paused: true is refused: a paused Rollout would never progress
//     and the pipeline would wait forever.
//   - ReplicaSets, bare Pods and Deployments of other API versions of the apps and extensions
//     groups are refused. A kind named Deployment in any other group is a custom resource and
//     passes through.
//   - Every other object passes through unchanged, except for Sortie's labels and, when
//     Input.Namespace is set, its namespace. Field references inside objects (a RoleBinding's
//     subjects, a webhook's service namespace) are not rewritten.
//   - A HorizontalPodAutoscaler whose scaleTargetRef names a Deployment that becomes a Rollout
//     is pointed at the Rollout instead: the Deployment will not exist. This is the one
//     change besides labels and namespace that a passed-through object gets.
//   - Every object gets the labels sortie.dev/application, sortie.dev/pipeline,
//     sortie.dev/target and app.kubernetes.io/managed-by: sortie on its own metadata only.
//     The pod template is never labelled: a label that changes every pipeline would change the
//     pod-template hash and start a new ReplicaSet for an unchanged image.
//   - Input.Namespace, when set, replaces the namespace of every namespaced object. Whether a
//     kind is cluster-scoped is decided by a fixed list of well-known cluster-scoped kinds
//     (clusterScoped in generate.go); a cluster-scoped custom resource not in that list gets
//     a namespace in its body and its Ref, which the API server clears on a request for a
//     cluster-scoped kind (the agent picks the scope from its REST mapping). When
//     Input.Namespace is empty each object keeps its own namespace, possibly none (then the
//     agent applies it into its default namespace).
//   - Two objects with the same API group, kind, namespace and name are refused, the version
//     ignored (apps/v1 and apps/v1beta2 name the same object). A Deployment and a
//     Rollout passed through with the same name collide too.
//   - Blue/green needs at most one Deployment (two Rollouts cannot share one active Service),
//     and its active and preview Services must be among the manifests, in the Rollout's
//     namespace.
//   - Objects are returned in apply order: Namespaces, CustomResourceDefinitions, then
//     ServiceAccounts, ConfigMaps, Secrets and Services, then everything else, and Rollouts
//     (generated or passed through) last; the order within a class is the input order.
//
// A Document holds one YAML or JSON document; a stream of documents separated by "---" lines
// is split as kubectl splits it. Documents holding only comments are skipped. Errors name a
// document by its source and its position in that source counted from 1 (a comment-only
// document counts, nothing between two separators does not), and YAML syntax errors give the
// line in the source.
//
// # Reading Rollouts
//
// Observe reads a Rollout object (as the agent reports it) into an Observation following the
// same rules as the Argo Rollouts kubectl plugin (utils/rollout GetRolloutPhase and
// CalculateRolloutPhase in argo-rollouts v1.10). PromotePatch, ResumePatch and AbortPatch are
// the idempotent merge patches the engine sends to approve a pause and to abort.
package rollout

//go:generate go run schema_gen.go

import (
	"fmt"
	"strings"
	"time"
)

// Labels Sortie puts on every object it applies, so a user can find them with kubectl get -l.
const (
	LabelApplication = "sortie.dev/application"
	LabelPipeline    = "sortie.dev/pipeline"
	LabelTarget      = "sortie.dev/target"
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy.
	ManagedByValue = "sortie"
)

// Input is everything Generate needs for one target of one pipeline.
type Input struct {
	// Application, PipelineID and Target become label values, so each must be a valid
	// Kubernetes label value.
	Application string
	PipelineID  string
	Target      string
	// Namespace, when set, replaces the namespace of every namespaced object. Empty keeps each
	// manifest's own namespace (none included: "default" is not assumed).
	Namespace string
	// Documents are the target's manifests in the order the user wrote them.
	Documents []Document
	// Exactly one of Canary and BlueGreen is set.
	Canary    *Canary
	BlueGreen *BlueGreen
}

// Document is one YAML (or JSON) document and where it came from, for error messages.
type Document struct {
	Source string
	YAML   []byte
}

// Canary is a canary strategy: its steps run in order, then the Rollout goes to 100%.
type Canary struct {
	Steps []Step
}

// Step is one canary step: exactly one of SetWeight and Pause is set.
type Step struct {
	// SetWeight is the percentage of replicas (0..100) to run the new version.
	SetWeight *int32
	Pause     *Pause
}

// Pause holds the rollout at its current step.
type Pause struct {
	// Duration is how long to wait, in whole seconds; 0 waits until approved (PromotePatch).
	Duration time.Duration
}

// BlueGreen is a blue/green strategy.
type BlueGreen struct {
	// ActiveService is the Service sending production traffic; the controller points its
	// selector at the new version on promotion. Required.
	ActiveService string
	// PreviewService, optional, reaches the new version before promotion.
	PreviewService string
	// AutoPromotion promotes as soon as the new version is available; false waits for an
	// approval (PromotePatch).
	AutoPromotion bool
	// ScaleDownDelay keeps the old version running after promotion (whole seconds; 0 leaves
	// the controller's default of 30 seconds).
	ScaleDownDelay time.Duration
}

// Ref names one Kubernetes object.
type Ref struct {
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
}

// String renders the reference as "apps/v1 Deployment shop/web" (no namespace: "kind name").
func (r Ref) String() string {
	if r.Namespace == "" {
		return fmt.Sprintf("%s %s %s", r.APIVersion, r.Kind, r.Name)
	}
	return fmt.Sprintf("%s %s %s/%s", r.APIVersion, r.Kind, r.Namespace, r.Name)
}

// Object is one object to apply: its reference and its JSON body for a server-side apply.
type Object struct {
	Ref  Ref
	JSON []byte
}

// Output is the result of Generate.
type Output struct {
	// Objects are in apply order.
	Objects []Object
	// Rollouts are the Rollouts generated from Deployments, in apply order: the objects whose
	// progress decides the target's outcome.
	Rollouts []Ref
}

// Problem is one thing wrong with an Input.
type Problem struct {
	// Source is the Document's source, or "input" for a problem with the Input's own fields.
	Source string
	// Message says what is wrong and, where it helps, what is accepted.
	Message string
}

// Error lists every problem Generate found; nothing is generated when there is one.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Source + ": " + p.Message
	}
	if len(parts) == 1 {
		return "generate rollout: " + parts[0]
	}
	return fmt.Sprintf("generate rollout: %d problems: %s", len(parts), strings.Join(parts, "; "))
}
