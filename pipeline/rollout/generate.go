package rollout

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// sourceInput is the Problem.Source of problems with the Input's own fields.
const sourceInput = "input"

// rolloutAPIVersion is the API version of the Rollouts Generate writes.
const rolloutAPIVersion = "argoproj.io/v1alpha1"

// class orders objects for apply: a class is applied after every lower one.
type class int

const (
	classNamespace class = iota
	classCRD
	classConfig // ServiceAccounts, ConfigMaps, Secrets, Services: what workloads refer to
	classOther
	classRollout
)

type groupKind struct{ group, kind string }

// clusterScoped lists the well-known cluster-scoped kinds: objects of these kinds never get
// Input.Namespace. Everything else is treated as namespaced.
var clusterScoped = map[groupKind]bool{
	{"", "Namespace"}:                                                    true,
	{"", "Node"}:                                                         true,
	{"", "PersistentVolume"}:                                             true,
	{"", "ComponentStatus"}:                                              true,
	{"rbac.authorization.k8s.io", "ClusterRole"}:                         true,
	{"rbac.authorization.k8s.io", "ClusterRoleBinding"}:                  true,
	{"apiextensions.k8s.io", "CustomResourceDefinition"}:                 true,
	{"apiregistration.k8s.io", "APIService"}:                             true,
	{"storage.k8s.io", "StorageClass"}:                                   true,
	{"storage.k8s.io", "CSIDriver"}:                                      true,
	{"storage.k8s.io", "CSINode"}:                                        true,
	{"storage.k8s.io", "VolumeAttachment"}:                               true,
	{"storage.k8s.io", "VolumeAttributesClass"}:                          true,
	{"scheduling.k8s.io", "PriorityClass"}:                               true,
	{"node.k8s.io", "RuntimeClass"}:                                      true,
	{"networking.k8s.io", "IngressClass"}:                                true,
	{"networking.k8s.io", "IPAddress"}:                                   true,
	{"networking.k8s.io", "ServiceCIDR"}:                                 true,
	{"admissionregistration.k8s.io", "ValidatingWebhookConfiguration"}:   true,
	{"admissionregistration.k8s.io", "MutatingWebhookConfiguration"}:     true,
	{"admissionregistration.k8s.io", "ValidatingAdmissionPolicy"}:        true,
	{"admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"}: true,
	{"admissionregistration.k8s.io", "MutatingAdmissionPolicy"}:          true,
	{"admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"}:   true,
	{"certificates.k8s.io", "CertificateSigningRequest"}:                 true,
	{"certificates.k8s.io", "ClusterTrustBundle"}:                        true,
	{"flowcontrol.apiserver.k8s.io", "FlowSchema"}:                       true,
	{"flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"}:       true,
	{"resource.k8s.io", "DeviceClass"}:                                   true,
	{"argoproj.io", "ClusterAnalysisTemplate"}:                           true,
	{"cert-manager.io", "ClusterIssuer"}:                                 true,
}

func classOf(gk groupKind) class {
	switch gk {
	case groupKind{"", "Namespace"}:
		return classNamespace
	case groupKind{"apiextensions.k8s.io", "CustomResourceDefinition"}:
		return classCRD
	case groupKind{"", "ServiceAccount"}, groupKind{"", "ConfigMap"}, groupKind{"", "Secret"}, groupKind{"", "Service"}:
		return classConfig
	case groupKind{"argoproj.io", "Rollout"}:
		return classRollout
	}
	return classOther
}

// item is one object on its way out of Generate.
type item struct {
	where string // "document 2 (Deployment web)", for messages
	src   string // the Document.Source
	class class
	gk    groupKind
	ref   Ref
	// Exactly one of obj (passed through) and rollout (generated) is set.
	obj       map[string]any
	rollout   *v1alpha1.Rollout
	generated bool
	body      []byte // the apply body, once encoded
}

type generator struct {
	in       Input
	labels   map[string]string
	strategy v1alpha1.RolloutStrategy
	items    []*item
	problems []Problem
}

// Generate turns a target's manifests into the objects to apply, every apps/v1 Deployment
// rewritten as a Rollout with the Input's strategy. On any problem it returns an *Error
// listing all of them and no objects.
func Generate(in Input) (Output, error) {
	g := &generator{in: in}
	g.checkInput()
	for _, d := range in.Documents {
		g.parse(d)
	}
	if len(in.Documents) > 0 && len(g.items) == 0 && len(g.problems) == 0 {
		g.problem(sourceInput, "the manifests hold no objects")
	}
	g.checkBlueGreen()
	g.checkDuplicates()
	g.retargetAutoscalers()
	for _, it := range g.items {
		g.encode(it)
	}
	if len(g.problems) > 0 {
		return Output{}, &Error{Problems: g.problems}
	}

	slices.SortStableFunc(g.items, func(a, b *item) int { return int(a.class) - int(b.class) })
	var out Output
	for _, it := range g.items {
		out.Objects = append(out.Objects, Object{Ref: it.ref, JSON: it.body})
		if it.generated {
			out.Rollouts = append(out.Rollouts, it.ref)
		}
	}
	return out, nil
}

func (g *generator) problem(source, format string, args ...any) {
	g.problems = append(g.problems, Problem{Source: source, Message: fmt.Sprintf(format, args...)})
}

// checkInput checks the Input's own fields and builds the labels and the strategy.
func (g *generator) checkInput() {
	in := g.in
	for _, f := range []struct{ name, value string }{
		{"application", in.Application}, {"pipeline id", in.PipelineID}, {"target", in.Target},
	} {
		if f.value == "" {
			g.problem(sourceInput, "%s is required", f.name)
			continue
		}
		if errs := validation.IsValidLabelValue(f.value); len(errs) > 0 {
			g.problem(sourceInput, "%s %q is not a valid label value: %s", f.name, f.value, strings.Join(errs, "; "))
		}
	}
	g.labels = map[string]string{
		LabelApplication: in.Application,
		LabelPipeline:    in.PipelineID,
		LabelTarget:      in.Target,
		LabelManagedBy:   ManagedByValue,
	}
	if in.Namespace != "" {
		if errs := validation.IsDNS1123Label(in.Namespace); len(errs) > 0 {
			g.problem(sourceInput, "namespace %q is not a valid namespace name: %s", in.Namespace, strings.Join(errs, "; "))
		}
	}
	if len(in.Documents) == 0 {
		g.problem(sourceInput, "no manifests: a target needs at least one document")
	}

	switch {
	case in.Canary == nil && in.BlueGreen == nil:
		g.problem(sourceInput, "a strategy is required: canary or blueGreen")
	case in.Canary != nil && in.BlueGreen != nil:
		g.problem(sourceInput, "canary and blueGreen are exclusive: set one strategy")
	case in.Canary != nil:
		g.strategy.Canary = g.canary(in.Canary)
	default:
		g.strategy.BlueGreen = g.blueGreen(in.BlueGreen)
	}
}

func (g *generator) canary(c *Canary) *v1alpha1.CanaryStrategy {
	s := &v1alpha1.CanaryStrategy{}
	for i, st := range c.Steps {
		path := fmt.Sprintf("canary.steps[%d]", i)
		switch {
		case st.SetWeight != nil && st.Pause != nil:
			g.problem(sourceInput, "%s sets both setWeight and pause: a step is one of them", path)
		case st.SetWeight != nil:
			w := *st.SetWeight
			if w < 0 || w > 100 {
				g.problem(sourceInput, "%s.setWeight is %d: a weight is 0 to 100", path, w)
				continue
			}
			s.Steps = append(s.Steps, v1alpha1.CanaryStep{SetWeight: &w})
		case st.Pause != nil:
			p := &v1alpha1.RolloutPause{}
			if st.Pause.Duration != 0 {
				d, err := durationString(st.Pause.Duration)
				if err != nil {
					g.problem(sourceInput, "%s.pause.duration %s", path, err)
					continue
				}
				v := intstr.FromString(d)
				p.Duration = &v
			}
			s.Steps = append(s.Steps, v1alpha1.CanaryStep{Pause: p})
		default:
			g.problem(sourceInput, "%s is empty: set setWeight or pause", path)
		}
	}
	return s
}

func (g *generator) blueGreen(b *BlueGreen) *v1alpha1.BlueGreenStrategy {
	s := &v1alpha1.BlueGreenStrategy{
		ActiveService:        b.ActiveService,
		PreviewService:       b.PreviewService,
		AutoPromotionEnabled: new(b.AutoPromotion),
	}
	if b.ActiveService == "" {
		g.problem(sourceInput, "blueGreen.activeService is required")
	} else if errs := validation.IsDNS1035Label(b.ActiveService); len(errs) > 0 {
		g.problem(sourceInput, "blueGreen.activeService %q is not a Service name: %s", b.ActiveService, strings.Join(errs, "; "))
	}
	if b.PreviewService != "" {
		if errs := validation.IsDNS1035Label(b.PreviewService); len(errs) > 0 {
			g.problem(sourceInput, "blueGreen.previewService %q is not a Service name: %s", b.PreviewService, strings.Join(errs, "; "))
		} else if b.PreviewService == b.ActiveService {
			g.problem(sourceInput, "blueGreen.previewService must differ from activeService %q", b.ActiveService)
		}
	}
	if b.ScaleDownDelay != 0 {
		secs, err := wholeSeconds(b.ScaleDownDelay)
		if err != nil {
			g.problem(sourceInput, "blueGreen.scaleDownDelay %s", err)
		} else {
			s.ScaleDownDelaySeconds = &secs
		}
	}
	return s
}

// wholeSeconds converts a positive duration of whole seconds that fits Argo's int32 fields.
func wholeSeconds(d time.Duration) (int32, error) {
	switch {
	case d < 0:
		return 0, fmt.Errorf("is negative (%s)", d)
	case d%time.Second != 0:
		return 0, fmt.Errorf("%s is not a whole number of seconds", d)
	case d/time.Second > math.MaxInt32:
		return 0, fmt.Errorf("%s is too long", d)
	}
	return int32(d / time.Second), nil
}

// durationString writes a pause duration the way people write it: in the largest unit that
// divides it exactly ("90s", "5m", "1h").
func durationString(d time.Duration) (string, error) {
	if _, err := wholeSeconds(d); err != nil {
		return "", err
	}
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour), nil
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute), nil
	}
	return fmt.Sprintf("%ds", d/time.Second), nil
}

// parse splits one Document into its YAML documents and turns each into an item.
func (g *generator) parse(d Document) {
	chunks, err := splitDocuments(d.YAML)
	if err != nil {
		g.problem(d.Source, "%v", err)
		return
	}
	for i, c := range chunks {
		g.parseOne(d.Source, i+1, c)
	}
}

// chunk is one YAML document of a stream and the line of the stream it starts on.
type chunk struct {
	line int
	data []byte
}

// splitDocuments splits a YAML stream at its "---" lines, as kubectl does: a separator may be
// followed by a comment only, and no document is made of nothing between two separators.
func splitDocuments(b []byte) ([]chunk, error) {
	var (
		out  []chunk
		cur  chunk
		line = 0
	)
	flush := func() {
		if len(cur.data) > 0 {
			out = append(out, cur)
		}
		cur = chunk{}
	}
	for len(b) > 0 {
		line++
		l := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			l, b = b[:i+1], b[i+1:]
		} else {
			b = nil
		}
		if rest, ok := bytes.CutPrefix(l, []byte("---")); ok {
			rest = bytes.TrimSpace(rest)
			if len(rest) > 0 && rest[0] != '#' {
				return nil, fmt.Errorf("line %d: a document separator \"---\" must stand alone on its line", line)
			}
			flush()
			continue
		}
		if len(cur.data) == 0 {
			cur.line = line
		}
		cur.data = append(cur.data, l...)
	}
	flush()
	return out, nil
}

// yamlLine finds the line number in a YAML parser's message.
var yamlLine = regexp.MustCompile(`\bline (\d+)\b`)

func (g *generator) parseOne(src string, n int, c chunk) {
	j, err := yaml.YAMLToJSONStrict(c.data)
	if err != nil {
		// The parser counts lines from the document's start; the user counts from the file's.
		msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
		msg = strings.ReplaceAll(strings.ReplaceAll(msg, ":\n  ", ": "), "\n  ", "; ")
		msg = yamlLine.ReplaceAllStringFunc(msg, func(m string) string {
			k, _ := strconv.Atoi(yamlLine.FindStringSubmatch(m)[1])
			return fmt.Sprintf("line %d", c.line+k-1)
		})
		g.problem(src, "document %d is not valid YAML: %s", n, msg)
		return
	}
	var v any
	if err := utiljson.Unmarshal(j, &v); err != nil {
		g.problem(src, "document %d is not valid JSON: %v", n, err)
		return
	}
	if v == nil {
		return // an empty document, or one holding only comments
	}
	obj, ok := v.(map[string]any)
	if !ok {
		g.problem(src, "document %d is not an object: found %s, want a mapping with apiVersion, kind and metadata", n, jsonType(v))
		return
	}

	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	where := fmt.Sprintf("document %d", n)
	switch {
	case kind != "" && name != "":
		where = fmt.Sprintf("document %d (%s %s)", n, kind, name)
	case kind != "":
		where = fmt.Sprintf("document %d (%s)", n, kind)
	}
	if apiVersion == "v1" && kind == "List" {
		g.problem(src, "%s: a List is not supported: write each of its items as its own document", where)
		return
	}
	var missing []string
	for _, f := range []struct{ name, value string }{{"apiVersion", apiVersion}, {"kind", kind}, {"metadata.name", name}} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		g.problem(src, "%s lacks %s: every object needs a string apiVersion, kind and metadata.name", where, strings.Join(missing, ", "))
		return
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		g.problem(src, "%s: apiVersion %q is not group/version or version", where, apiVersion)
		return
	}
	gk := groupKind{gv.Group, kind}
	var bad []string
	if _, _, err := unstructured.NestedStringMap(obj, "metadata", "labels"); err != nil {
		bad = append(bad, "metadata.labels must map strings to strings")
	}
	if _, _, err := unstructured.NestedString(obj, "metadata", "namespace"); err != nil {
		bad = append(bad, "metadata.namespace must be a string")
	}
	if len(bad) > 0 {
		g.problem(src, "%s: %s", where, strings.Join(bad, "; "))
		return
	}
	legacy := gk.group == "apps" || gk.group == "extensions"
	switch {
	case legacy && kind == "ReplicaSet":
		g.problem(src, "%s: a ReplicaSet is not deployed by Sortie: write an apps/v1 Deployment, which becomes a Rollout", where)
		return
	case gk == groupKind{"", "Pod"}:
		g.problem(src, "%s: a bare Pod cannot be rolled out: put its spec in an apps/v1 Deployment's pod template", where)
		return
	case legacy && kind == "Deployment" && apiVersion != "apps/v1":
		g.problem(src, "%s: apiVersion %s is not supported: only apps/v1 Deployments become Rollouts", where, apiVersion)
		return
	case legacy && kind == "Deployment":
		g.deployment(src, where, j)
		return
	}

	it := &item{where: where, src: src, class: classOf(gk), gk: gk, obj: obj}
	u := unstructured.Unstructured{Object: obj}
	if g.in.Namespace != "" && !clusterScoped[gk] {
		u.SetNamespace(g.in.Namespace)
	}
	u.SetLabels(g.withLabels(u.GetLabels()))
	it.ref = Ref{APIVersion: apiVersion, Kind: kind, Namespace: u.GetNamespace(), Name: name}
	g.items = append(g.items, it)
}

func jsonType(v any) string {
	switch v.(type) {
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "a number"
}

// withLabels returns own plus Sortie's labels (Sortie's win).
func (g *generator) withLabels(own map[string]string) map[string]string {
	out := make(map[string]string, len(own)+len(g.labels))
	for k, v := range own {
		out[k] = v
	}
	for k, v := range g.labels {
		out[k] = v
	}
	return out
}

// deploymentDecoder decodes Deployments the way the API server does by default: case
// sensitive, unknown and duplicate fields refused.
var deploymentDecoder = sync.OnceValue(func() runtime.Decoder {
	s := runtime.NewScheme()
	if err := appsv1.AddToScheme(s); err != nil {
		panic(err) // static registration; cannot fail
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s, kjson.SerializerOptions{Strict: true})
})

// deployment turns one apps/v1 Deployment (as JSON) into a Rollout item.
func (g *generator) deployment(src, where string, j []byte) {
	var d appsv1.Deployment
	if _, _, err := deploymentDecoder().Decode(j, nil, &d); err != nil {
		if strict, ok := runtime.AsStrictDecodingError(err); ok {
			var fields []string
			for _, e := range strict.Errors() {
				fields = append(fields, e.Error())
			}
			g.problem(src, "%s: %s: the Kubernetes API does not know these fields (a typo?)", where, strings.Join(fields, ", "))
			return
		}
		g.problem(src, "%s: not a valid apps/v1 Deployment: %v", where, err)
		return
	}
	var bad []string
	if d.Spec.Paused {
		bad = append(bad, "spec.paused is true: a paused Deployment would never progress; remove it")
	}
	switch sel := d.Spec.Selector; {
	case sel == nil:
		bad = append(bad, "spec.selector is required")
	case len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0:
		bad = append(bad, "spec.selector is empty: it would select every pod in the namespace")
	default:
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			bad = append(bad, "spec.selector: "+err.Error())
		} else if !s.Matches(labels.Set(d.Spec.Template.Labels)) {
			bad = append(bad, fmt.Sprintf("spec.selector (%s) does not match spec.template.metadata.labels: the Rollout would never find its pods", s))
		}
	}
	if len(d.Spec.Template.Spec.Containers) == 0 {
		bad = append(bad, "spec.template.spec.containers is empty")
	}
	if len(bad) > 0 {
		g.problem(src, "%s: %s", where, strings.Join(bad, "; "))
		return
	}

	ns := d.Namespace
	if g.in.Namespace != "" {
		ns = g.in.Namespace
	}
	var annotations map[string]string
	for k, v := range d.Annotations {
		if k == "kubectl.kubernetes.io/last-applied-configuration" || strings.HasPrefix(k, "deployment.kubernetes.io/") {
			continue
		}
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[k] = v
	}
	ro := &v1alpha1.Rollout{
		TypeMeta: metav1.TypeMeta{APIVersion: rolloutAPIVersion, Kind: "Rollout"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        d.Name,
			Namespace:   ns,
			Labels:      g.withLabels(d.Labels),
			Annotations: annotations,
		},
		Spec: v1alpha1.RolloutSpec{
			Replicas:                d.Spec.Replicas,
			Selector:                d.Spec.Selector,
			Template:                d.Spec.Template,
			MinReadySeconds:         d.Spec.MinReadySeconds,
			RevisionHistoryLimit:    d.Spec.RevisionHistoryLimit,
			ProgressDeadlineSeconds: d.Spec.ProgressDeadlineSeconds,
			Strategy:                *g.strategy.DeepCopy(),
		},
	}
	g.items = append(g.items, &item{
		where:     where,
		src:       src,
		class:     classRollout,
		gk:        groupKind{"argoproj.io", "Rollout"},
		ref:       Ref{APIVersion: rolloutAPIVersion, Kind: "Rollout", Namespace: ns, Name: d.Name},
		rollout:   ro,
		generated: true,
	})
}

// checkBlueGreen checks that a blue/green strategy has one Rollout and that its Services
// are among the manifests, next to it.
func (g *generator) checkBlueGreen() {
	b := g.in.BlueGreen
	if b == nil || g.in.Canary != nil {
		return
	}
	var rollouts []*item
	for _, it := range g.items {
		if it.generated {
			rollouts = append(rollouts, it)
		}
	}
	if len(rollouts) > 1 {
		names := make([]string, len(rollouts))
		for i, it := range rollouts {
			names[i] = it.src + " " + it.where
		}
		g.problem(sourceInput, "blueGreen needs one Deployment, found %d (%s): two Rollouts cannot share one active Service",
			len(rollouts), strings.Join(names, ", "))
		return
	}
	for _, ro := range rollouts {
		for _, svc := range []struct{ field, name string }{{"activeService", b.ActiveService}, {"previewService", b.PreviewService}} {
			if svc.name == "" || g.hasService(ro.ref.Namespace, svc.name) {
				continue
			}
			where := "namespace " + ro.ref.Namespace
			if ro.ref.Namespace == "" {
				where = "no namespace"
			}
			g.problem(sourceInput, "blueGreen.%s %q is not among the manifests: add a v1 Service of that name (%s, next to Rollout %s)",
				svc.field, svc.name, where, ro.ref.Name)
		}
	}
}

func (g *generator) hasService(ns, name string) bool {
	for _, it := range g.items {
		if it.gk == (groupKind{"", "Service"}) && it.ref.Name == name && it.ref.Namespace == ns {
			return true
		}
	}
	return false
}

func (g *generator) checkDuplicates() {
	type key struct {
		gk       groupKind
		ns, name string
	}
	first := map[key]*item{}
	for _, it := range g.items {
		k := key{it.gk, it.ref.Namespace, it.ref.Name}
		if prev, ok := first[k]; ok {
			g.problem(it.src, "%s is the same object as %s %s: each object may appear once", it.describe(), prev.src, prev.describe())
			continue
		}
		first[k] = it
	}
}

// retargetAutoscalers points HorizontalPodAutoscalers that scale a Deployment Generate turned
// into a Rollout at that Rollout: the Deployment will not exist, and the Rollout has the
// scale subresource an autoscaler needs.
func (g *generator) retargetAutoscalers() {
	rollouts := map[[2]string]bool{}
	for _, it := range g.items {
		if it.generated {
			rollouts[[2]string{it.ref.Namespace, it.ref.Name}] = true
		}
	}
	for _, it := range g.items {
		if it.gk != (groupKind{"autoscaling", "HorizontalPodAutoscaler"}) {
			continue
		}
		ref, ok, err := unstructured.NestedMap(it.obj, "spec", "scaleTargetRef")
		if !ok || err != nil {
			continue
		}
		apiVersion, _ := ref["apiVersion"].(string)
		kind, _ := ref["kind"].(string)
		name, _ := ref["name"].(string)
		gv, err := schema.ParseGroupVersion(apiVersion)
		if err != nil || (gv.Group != "apps" && gv.Group != "extensions") || kind != "Deployment" ||
			!rollouts[[2]string{it.ref.Namespace, name}] {
			continue
		}
		ref["apiVersion"], ref["kind"] = rolloutAPIVersion, "Rollout"
		_ = unstructured.SetNestedMap(it.obj, ref, "spec", "scaleTargetRef") // a map of JSON values
	}
}

// describe names the item's document, and the Rollout it becomes.
func (it *item) describe() string {
	if it.generated {
		return it.where + ", which becomes Rollout " + it.ref.Name
	}
	return it.where
}

// encode writes the item's apply body. A generated Rollout's pod template must survive the
// Rollout CRD's pruning: the CRD's schema is as old as the Kubernetes API argo-rollouts was
// built with, and the API server silently drops fields it does not know.
func (g *generator) encode(it *item) {
	var err error
	if it.rollout == nil {
		if it.body, err = marshal(it.obj); err != nil {
			// Only values decoded from JSON a moment ago are encoded here.
			g.problem(it.src, "%s: encode: %v", it.where, err)
		}
		return
	}
	// Through a map, to drop what a client must not apply: the empty status (the controller
	// owns it) and the null creationTimestamps the typed structs write.
	m, err := toMap(it.rollout)
	if err != nil {
		g.problem(it.src, "%s: encode: %v", it.where, err)
		return
	}
	delete(m, "status")
	dropNullTimestamp(m, "metadata")
	dropNullTimestamp(m, "spec", "template", "metadata")
	tmpl, _, _ := unstructured.NestedFieldNoCopy(m, "spec", "template")
	if lost := pruned(tmpl, podTemplateSchema(), "spec.template"); len(lost) > 0 {
		slices.Sort(lost)
		g.problem(it.src, "%s: the Argo Rollouts CRD (%s) does not know %s: the API server would drop %s from the Rollout; remove %s or wait for a Sortie built with a newer Argo Rollouts",
			it.where, argoRolloutsVersion, strings.Join(lost, ", "), plural(len(lost), "it", "them"), plural(len(lost), "it", "them"))
		return
	}
	if it.body, err = marshal(m); err != nil {
		g.problem(it.src, "%s: encode: %v", it.where, err)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func toMap(v any) (map[string]any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := utiljson.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// argoRolloutsVersion is the argo-rollouts version podtemplate-schema.json comes from.
const argoRolloutsVersion = "v1.10"

// podTemplateSchemaJSON is the structural schema of spec.template in the Rollout CRD of the
// argo-rollouts version in go.mod, stripped to what pruning looks at (go generate writes it).
//
//go:embed podtemplate-schema.json
var podTemplateSchemaJSON []byte

var podTemplateSchema = sync.OnceValue(func() map[string]any {
	var m map[string]any
	if err := json.Unmarshal(podTemplateSchemaJSON, &m); err != nil {
		panic("rollout: embedded podtemplate-schema.json: " + err.Error()) // a build defect
	}
	return m
})

// pruned lists the paths under v that a structural schema does not allow, as the API server
// prunes a custom resource: unknown fields under properties go, unless
// x-kubernetes-preserve-unknown-fields or additionalProperties lets them stay.
func pruned(v any, schema map[string]any, path string) []string {
	if keep, _ := schema["x-kubernetes-preserve-unknown-fields"].(bool); keep {
		return nil
	}
	var out []string
	switch v := v.(type) {
	case map[string]any:
		props, _ := schema["properties"].(map[string]any)
		for k, c := range v {
			if s, ok := props[k].(map[string]any); ok {
				out = append(out, pruned(c, s, path+"."+k)...)
			} else if ap, ok := schema["additionalProperties"].(map[string]any); ok {
				out = append(out, pruned(c, ap, path+"."+k)...)
			} else if ap, _ := schema["additionalProperties"].(bool); !ap {
				out = append(out, path+"."+k)
			}
		}
	case []any:
		items, _ := schema["items"].(map[string]any)
		for i, c := range v {
			if items == nil {
				return []string{path}
			}
			out = append(out, pruned(c, items, fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return out
}

func dropNullTimestamp(m map[string]any, path ...string) {
	meta, ok, _ := unstructured.NestedMap(m, path...)
	if !ok {
		return
	}
	if v, ok := meta["creationTimestamp"]; ok && v == nil {
		unstructured.RemoveNestedField(m, append(path, "creationTimestamp")...)
	}
}

// marshal writes compact JSON without HTML escaping, so bodies read like the manifests.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
