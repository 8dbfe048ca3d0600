// Package rolloutsim simulates, in memory, the part of a Kubernetes cluster running the Argo
// Rollouts controller that Sortie's engine talks to: server-side apply of manifests, get,
// and merge patches of a Rollout's status (promote, abort), with Rollouts that move through
// their canary steps and blue/green pause the way the v1.10 controller does: the first
// revision becomes stable at once, later ones walk their steps, timed pauses end by
// themselves, indefinite ones wait for a promote. Pods are always ready at once.
//
// It backs the engine's unit tests and the simulated agents of the benchmarks. It is not the
// proof that the engine works against Argo Rollouts: the end-to-end tests run the real
// controller.
package rolloutsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Errors of the simulated API.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("the object has been modified")
	ErrInvalid  = errors.New("invalid")
)

// Ref names one object.
type Ref struct{ APIVersion, Kind, Namespace, Name string }

// Cluster is a simulated cluster. Its methods are safe for concurrent use.
type Cluster struct {
	now func() time.Time
	// OnChange, if set, is called (without locks held) with every object that changed.
	OnChange func(Ref, []byte)

	mu      sync.Mutex // guards objects and rv
	objects map[Ref][]byte
	rv      int64
}

// New returns an empty cluster using now as its clock.
func New(now func() time.Time) *Cluster {
	if now == nil {
		now = time.Now
	}
	return &Cluster{now: now, objects: map[Ref][]byte{}}
}

type meta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// Apply applies YAML or JSON documents separated by "---"; namespaced objects without a
// namespace go to namespace. It returns the stored objects.
func (c *Cluster) Apply(manifests []byte, namespace string) ([][]byte, error) {
	var out [][]byte
	var changed []Ref
	c.mu.Lock()
	for _, doc := range bytes.Split(manifests, []byte("\n---")) {
		doc = bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(doc), []byte("---")))
		if len(doc) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			c.mu.Unlock()
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		var m meta
		if err := json.Unmarshal(js, &m); err != nil || m.Kind == "" || m.Metadata.Name == "" {
			c.mu.Unlock()
			return nil, fmt.Errorf("%w: a document without kind or metadata.name", ErrInvalid)
		}
		ns := m.Metadata.Namespace
		if ns == "" && m.Kind != "Namespace" {
			ns = namespace
		}
		ref := Ref{m.APIVersion, m.Kind, ns, m.Metadata.Name}
		obj, err := c.applyLocked(ref, js)
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
		out = append(out, obj)
		changed = append(changed, ref)
	}
	c.mu.Unlock()
	c.notify(changed)
	return out, nil
}

func (c *Cluster) applyLocked(ref Ref, js []byte) ([]byte, error) {
	c.rv++
	if ref.Kind != "Rollout" {
		var m map[string]any
		_ = json.Unmarshal(js, &m)
		md, _ := m["metadata"].(map[string]any)
		if md == nil {
			md = map[string]any{}
			m["metadata"] = md
		}
		md["namespace"], md["resourceVersion"] = ref.Namespace, strconv.FormatInt(c.rv, 10)
		b, _ := json.Marshal(m)
		c.objects[ref] = b
		return b, nil
	}
	var ro v1alpha1.Rollout
	if err := json.Unmarshal(js, &ro); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	ro.Namespace = ref.Namespace
	if old, ok := c.objects[ref]; ok {
		var prev v1alpha1.Rollout
		_ = json.Unmarshal(old, &prev)
		ro.Status, ro.Generation, ro.CreationTimestamp = prev.Status, prev.Generation, prev.CreationTimestamp
		a, _ := json.Marshal(prev.Spec)
		b, _ := json.Marshal(ro.Spec)
		if !bytes.Equal(a, b) {
			ro.Generation++
		}
	} else {
		ro.Generation = 1
		ro.CreationTimestamp = metav1.NewTime(c.now())
	}
	ro.ResourceVersion = strconv.FormatInt(c.rv, 10)
	c.reconcileLocked(&ro)
	b, _ := json.Marshal(&ro)
	c.objects[ref] = b
	return b, nil
}

// podHash stands for the controller's pod-template hash.
func podHash(ro *v1alpha1.Rollout) string {
	b, _ := json.Marshal(ro.Spec.Template)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:5])
}

// reconcileLocked moves one Rollout as far as the controller would now.
func (c *Cluster) reconcileLocked(ro *v1alpha1.Rollout) {
	st := &ro.Status
	now := c.now()
	st.ObservedGeneration = strconv.FormatInt(ro.Generation, 10)
	replicas := int32(1)
	if ro.Spec.Replicas != nil {
		replicas = *ro.Spec.Replicas
	}
	st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas = replicas, replicas, replicas, replicas
	hash := podHash(ro)
	if st.Abort {
		st.Phase, st.Message = v1alpha1.RolloutPhaseDegraded, "RolloutAborted: Rollout aborted update to revision "+hash
		st.PauseConditions, st.ControllerPause = nil, false
		return
	}
	if st.CurrentPodHash != hash {
		st.CurrentPodHash = hash
		st.PauseConditions, st.ControllerPause = nil, false
		zero := int32(0)
		st.CurrentStepIndex = &zero
		if st.StableRS == "" {
			// The first revision is stable at once, as the controller does.
			c.promoteLocked(ro)
			return
		}
	}
	if st.StableRS == hash {
		c.promoteLocked(ro)
		return
	}
	if bg := ro.Spec.Strategy.BlueGreen; bg != nil {
		st.BlueGreen.PreviewSelector = hash
		auto := bg.AutoPromotionEnabled == nil || *bg.AutoPromotionEnabled
		switch {
		case auto:
			c.promoteLocked(ro)
		case len(st.PauseConditions) == 0 && !st.ControllerPause:
			st.PauseConditions = []v1alpha1.PauseCondition{{Reason: v1alpha1.PauseReasonBlueGreenPause, StartTime: metav1.NewTime(now)}}
			st.ControllerPause = true
			st.Phase, st.Message = v1alpha1.RolloutPhasePaused, "BlueGreenPause"
		case len(st.PauseConditions) == 0 && st.ControllerPause:
			c.promoteLocked(ro) // promoted
		}
		return
	}
	steps := ro.Spec.Strategy.Canary.Steps
	for st.CurrentStepIndex != nil && int(*st.CurrentStepIndex) < len(steps) {
		i := *st.CurrentStepIndex
		step := steps[i]
		if step.Pause != nil {
			switch {
			case len(st.PauseConditions) == 0 && !st.ControllerPause:
				st.PauseConditions = []v1alpha1.PauseCondition{{Reason: v1alpha1.PauseReasonCanaryPauseStep, StartTime: metav1.NewTime(now)}}
				st.ControllerPause = true
				st.Phase, st.Message = v1alpha1.RolloutPhasePaused, "CanaryPauseStep"
				return
			case len(st.PauseConditions) == 0:
				// promoted
			case step.Pause.Duration != nil && !now.Before(st.PauseConditions[0].StartTime.Add(time.Duration(step.Pause.DurationSeconds())*time.Second)):
				// the timed pause is over
			default:
				return
			}
			st.PauseConditions, st.ControllerPause = nil, false
		}
		next := i + 1
		st.CurrentStepIndex = &next
	}
	c.promoteLocked(ro)
}

func (c *Cluster) promoteLocked(ro *v1alpha1.Rollout) {
	st := &ro.Status
	st.StableRS = st.CurrentPodHash
	st.PauseConditions, st.ControllerPause = nil, false
	st.Phase, st.Message = v1alpha1.RolloutPhaseHealthy, ""
	if ro.Spec.Strategy.BlueGreen != nil {
		st.BlueGreen.ActiveSelector, st.BlueGreen.PreviewSelector = st.CurrentPodHash, st.CurrentPodHash
	}
	if c := ro.Spec.Strategy.Canary; c != nil {
		n := int32(len(c.Steps))
		st.CurrentStepIndex = &n
	}
}

// Tick lets the controller act on time: timed pauses end.
func (c *Cluster) Tick() {
	var changed []Ref
	c.mu.Lock()
	for ref, obj := range c.objects {
		if ref.Kind != "Rollout" {
			continue
		}
		var ro v1alpha1.Rollout
		_ = json.Unmarshal(obj, &ro)
		before, _ := json.Marshal(ro.Status)
		c.reconcileLocked(&ro)
		after, _ := json.Marshal(ro.Status)
		if !bytes.Equal(before, after) {
			c.rv++
			ro.ResourceVersion = strconv.FormatInt(c.rv, 10)
			b, _ := json.Marshal(&ro)
			c.objects[ref] = b
			changed = append(changed, ref)
		}
	}
	c.mu.Unlock()
	c.notify(changed)
}

// Get returns one object, or ErrNotFound.
func (c *Cluster) Get(ref Ref) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	obj, ok := c.objects[ref]
	if !ok {
		return nil, ErrNotFound
	}
	return obj, nil
}

// PatchStatus applies a JSON merge patch to a Rollout's status subresource: only
// metadata.resourceVersion (a precondition), status.pauseConditions (null clears them) and
// status.abort are understood, as Sortie sends.
func (c *Cluster) PatchStatus(ref Ref, patch []byte) ([]byte, error) {
	var p struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Status map[string]json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal(patch, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	c.mu.Lock()
	obj, ok := c.objects[ref]
	if !ok {
		c.mu.Unlock()
		return nil, ErrNotFound
	}
	var ro v1alpha1.Rollout
	_ = json.Unmarshal(obj, &ro)
	if rv := p.Metadata.ResourceVersion; rv != "" && rv != ro.ResourceVersion {
		c.mu.Unlock()
		return nil, ErrConflict
	}
	if v, ok := p.Status["pauseConditions"]; ok && string(v) == "null" {
		ro.Status.PauseConditions = nil
	}
	if v, ok := p.Status["abort"]; ok && string(v) == "true" {
		ro.Status.Abort = true
	}
	c.reconcileLocked(&ro)
	c.rv++
	ro.ResourceVersion = strconv.FormatInt(c.rv, 10)
	b, _ := json.Marshal(&ro)
	c.objects[ref] = b
	c.mu.Unlock()
	c.notify([]Ref{ref})
	return b, nil
}

// Put stores an object as is (a Deployment someone else created, for example).
func (c *Cluster) Put(ref Ref, obj []byte) {
	c.mu.Lock()
	c.objects[ref] = obj
	c.mu.Unlock()
	c.notify([]Ref{ref})
}

func (c *Cluster) notify(refs []Ref) {
	if c.OnChange == nil {
		return
	}
	for _, r := range refs {
		obj, err := c.Get(r)
		if err == nil {
			c.OnChange(r, obj)
		}
	}
}
