package config

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"

	"github.com/sortie-dev/sortie/hub"
)

// ParsePipeline parses and validates the body of POST /pipelines and POST
// /pipelines/kubernetes: a deploy.yml as JSON plus the keys the Armory CLI adds (files,
// context, targetFilters, sourceControl).
//
// It returns the Request and its warnings, or the warnings and a *SyntaxError,
// *ValidationError or *UnsupportedError (see the package doc for which HTTP status each
// means). The Request is nil whenever the error is not.
func ParsePipeline(body []byte) (*Request, []Warning, error) {
	root, err := decodeBody(body)
	if err != nil {
		return nil, nil, err
	}
	p := &parser{}
	req := p.pipeline(root, body)
	if err := p.result(); err != nil {
		return nil, p.warnings, err
	}
	return req, p.warnings, nil
}

const (
	maxNameLength = 63
	accountRule   = "^[a-zA-Z0-9_-]+$, at most 63 characters (an agent identifier)"
	labelRule     = "at most 63 characters: letters, digits, '-', '_' or '.', starting and ending with a letter or digit (a Kubernetes label value)"
	namespaceRule = "at most 63 characters: lower-case letters, digits or '-', starting and ending with a letter or digit (a DNS-1123 label)"
)

func validLabel(s string) bool { return s != "" && len(content.IsLabelValue(s)) == 0 }

// target is a target being parsed; def is its strategy when that parsed.
type target struct {
	Target
	path      string
	def       *strategyDef
	dependsOn []string // valid names, in the order written
	depPaths  map[string]string
}

var pipelineKeys = []string{"version", "kind", "application", "targets", "manifests", "strategies",
	"deploymentConfig", "webhooks", "analysis", "trafficManagement",
	"files", "context", "targetFilters", "sourceControl"}

func (p *parser) pipeline(root *object, body []byte) *Request {
	p.unknown(root, "", pipelineKeys...)
	req := &Request{Version: "v1", Kind: "kubernetes", InProgress: Reject}
	if !p.header(root, req) {
		return nil // a kind not built yet: the rest of its format is not ours to judge
	}
	for _, k := range []string{"webhooks", "analysis", "trafficManagement"} {
		if v, ok := root.get(k); ok && !isEmpty(v) {
			p.notBuilt(k, "%s is not supported yet: remove it, or wait for a Sortie release that runs it", k)
		}
	}
	if v, ok := root.get("context"); ok {
		req.Context = p.context(v)
	}
	if v, ok := root.get("sourceControl"); ok {
		if _, ok := p.obj(v, "sourceControl"); ok {
			req.SourceControl = rawMember(body, "sourceControl")
		}
	}
	var files fileSet
	if v, ok := root.get("files"); ok {
		files = p.files(v)
	}

	defs := map[string]*strategyDef{}
	if v, ok := root.get("strategies"); ok {
		if o, ok := p.obj(v, "strategies"); ok {
			for _, name := range o.keys {
				defs[name] = p.strategy(o.vals[name], key("strategies", name))
			}
		}
	}

	targets := p.targets(root, defs)
	names := map[string]bool{}
	for _, t := range targets {
		names[t.Name] = true
	}

	var entries []manifestEntry
	if v, ok := root.get("manifests"); !ok {
		p.fail("manifests", "is required: a list of {\"path\": ...} or {\"inline\": ...} entries")
	} else {
		entries = p.manifests(v, files, false, names)
	}
	p.assign(targets, entries)
	p.checkDependencies(targets)
	for _, name := range sortedKeys(defs) {
		if def := defs[name]; def != nil && !def.used {
			p.warn(def.path, "strategy %s is not used by any target", quote(name))
		}
	}

	if v, ok := root.get("deploymentConfig"); ok {
		p.deploymentConfig(v, req)
	}
	keep := p.targetFilters(root, names)
	if len(p.problems) > 0 {
		return nil
	}
	for _, t := range targets {
		if keep != nil && !keep[t.Name] {
			continue
		}
		for _, dep := range t.dependsOn {
			if keep != nil && !keep[dep] {
				p.warn(t.depPaths[dep], "target %s is not deployed in this run (targetFilters), so %s does not wait for it", quote(dep), quote(t.Name))
				continue
			}
			t.DependsOn = append(t.DependsOn, dep)
		}
		sort.Strings(t.DependsOn)
		// Targets sharing a strategy get copies, so the engine may keep per-target state
		// in them; documents share their read-only YAML bytes.
		t.Canary, t.BlueGreen = t.Canary.clone(), t.BlueGreen.clone()
		t.Documents = append([]Document(nil), t.Documents...)
		req.Targets = append(req.Targets, t.Target)
	}
	sort.Slice(req.Targets, func(i, j int) bool { return req.Targets[i].Name < req.Targets[j].Name })
	return req
}

// header reads version, kind and application. It returns false for a kind that is
// recognized but not built.
func (p *parser) header(root *object, req *Request) bool {
	if v, ok := root.get("version"); ok {
		if s, ok := p.str(v, "version"); ok && strings.ToLower(s) != "v1" {
			p.fail("version", "version %s is not known: accepted v1 (the default)", quote(s))
		}
	}
	if v, ok := root.get("kind"); ok {
		if s, ok := p.str(v, "kind"); ok {
			switch strings.ToLower(s) {
			case "kubernetes":
			case "lambda":
				p.notBuilt("kind", "kind lambda is not supported yet: Sortie deploys kind kubernetes")
				return false
			default:
				p.fail("kind", "kind %s is not known: accepted kubernetes (the default)", quote(s))
			}
		}
	}
	if v, ok := root.get("application"); !ok {
		p.fail("application", "is required: the application's name, %s", labelRule)
	} else if s, ok := p.str(v, "application"); ok {
		if !validLabel(s) {
			p.fail("application", "application %s is not valid: %s", quote(s), labelRule)
		}
		req.Application = s
	}
	return true
}

// isEmpty reports whether v asks for nothing: [] or {}.
func isEmpty(v any) bool {
	switch t := v.(type) {
	case []any:
		return len(t) == 0
	case *object:
		return len(t.keys) == 0
	}
	return false
}

func (p *parser) context(v any) map[string]string {
	o, ok := p.obj(v, "context")
	if !ok {
		return nil
	}
	m := make(map[string]string, len(o.keys))
	for _, k := range o.keys {
		if s, ok := p.str(o.vals[k], key("context", k)); ok {
			m[k] = s
		}
	}
	return m
}

// rawMember returns the compacted JSON of a top-level member of a body already decoded.
func rawMember(body []byte, name string) json.RawMessage {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, members[name]); err != nil {
		return nil
	}
	return b.Bytes()
}

// targets parses the targets map in the order written.
func (p *parser) targets(root *object, defs map[string]*strategyDef) []*target {
	v, ok := root.get("targets")
	if !ok {
		p.fail("targets", "is required: a map of target name to {account, namespace, strategy}")
		return nil
	}
	o, ok := p.obj(v, "targets")
	if !ok {
		return nil
	}
	if len(o.keys) == 0 {
		p.fail("targets", "must define at least one target")
		return nil
	}
	var out []*target
	for _, name := range o.keys {
		tp := key("targets", name)
		if !validLabel(name) {
			p.fail(tp, "target name %s is not valid: %s", quote(name), labelRule)
		}
		to, ok := p.obj(o.vals[name], tp)
		if !ok {
			continue
		}
		t := &target{Target: Target{Name: name}, path: tp, depPaths: map[string]string{}}
		p.unknown(to, tp, "account", "namespace", "strategy", "constraints")
		t.Account = p.account(to, tp)
		t.Namespace = p.namespace(to, tp)
		if sv, ok := to.get("strategy"); !ok {
			p.fail(key(tp, "strategy"), "is required: the name of a strategy under strategies (defined: %s)", listOrNone(sortedKeys(defs)))
		} else if s, ok := p.str(sv, key(tp, "strategy")); ok {
			def, defined := defs[s]
			switch {
			case !defined:
				p.fail(key(tp, "strategy"), "strategy %s is not defined under strategies (defined: %s)", quote(s), listOrNone(sortedKeys(defs)))
			case def != nil:
				def.used = true
				t.def = def
				t.StrategyName = s
				t.Canary = def.canary
				t.BlueGreen = def.blueGreen
			}
		}
		if cv, ok := to.get("constraints"); ok {
			p.constraints(cv, key(tp, "constraints"), t)
		}
		out = append(out, t)
	}
	return out
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return joinQuoted(names)
}

func (p *parser) account(o *object, path string) string {
	path = key(path, "account")
	v, ok := o.get("account")
	if !ok {
		p.fail(path, "is required: the identifier of the agent of the cluster to deploy to, %s", accountRule)
		return ""
	}
	s, ok := p.str(v, path)
	if !ok {
		return ""
	}
	// The rule of an agent identifier is declared once, on the agent's Hello in hub.proto.
	if err := hub.CheckIdentifier(s); err != nil {
		p.fail(path, "account %s is not valid: %s (an agent identifier)", quote(s),
			strings.TrimPrefix(err.Error(), "hello.agent_identifier: "))
	}
	return s
}

func (p *parser) namespace(o *object, path string) string {
	path = key(path, "namespace")
	v, ok := o.get("namespace")
	if !ok {
		return ""
	}
	s, ok := p.str(v, path)
	if !ok || s == "" {
		return ""
	}
	if len(content.IsDNS1123Label(s)) > 0 {
		p.fail(path, "namespace %s is not valid: %s", quote(s), namespaceRule)
	}
	return s
}

func (p *parser) constraints(v any, path string, t *target) {
	o, ok := p.obj(v, path)
	if !ok {
		return
	}
	p.unknown(o, path, "dependsOn", "beforeDeployment", "afterDeployment")
	if dv, ok := o.get("dependsOn"); ok {
		dp := key(path, "dependsOn")
		if names, ok := p.list(dv, dp); ok {
			for i, nv := range names {
				np := index(dp, i)
				n, ok := p.str(nv, np)
				if !ok {
					continue
				}
				if _, dup := t.depPaths[n]; dup {
					p.warn(np, "target %s is listed twice", quote(n))
					continue
				}
				t.dependsOn = append(t.dependsOn, n)
				t.depPaths[n] = np
			}
		}
	}
	t.BeforeDeployment, _ = p.pauses(o, "beforeDeployment", path, false)
	t.AfterDeployment, _ = p.pauses(o, "afterDeployment", path, false)
}

// assign gives each target its documents and checks each target has some, and that a
// blue/green target's Services are among them.
func (p *parser) assign(targets []*target, entries []manifestEntry) {
	if len(entries) == 0 {
		return // manifests itself has the problem
	}
	for _, t := range targets {
		applies, complete := false, true
		for _, e := range entries {
			if e.targets != nil && !contains(e.targets, t.Name) {
				continue
			}
			applies = true
			complete = complete && e.ok
			t.Documents = append(t.Documents, e.docs...)
		}
		if !applies {
			p.fail(t.path, "no manifests entry applies to target %s: add it to an entry's targets, or leave an entry's targets out to apply it everywhere", quote(t.Name))
			continue
		}
		if t.BlueGreen == nil || !complete {
			continue
		}
		bgPath := key(t.def.path, "blueGreen")
		p.checkService(t, t.BlueGreen.ActiveService, key(bgPath, "activeService"))
		if t.BlueGreen.PreviewService != "" {
			p.checkService(t, t.BlueGreen.PreviewService, key(bgPath, "previewService"))
		}
	}
}

func (p *parser) checkService(t *target, name, path string) {
	if name == "" || hasService(t.Documents, name) {
		return
	}
	var found []string
	for _, d := range t.Documents {
		if d.Kind == "Service" {
			found = append(found, d.Name)
		}
	}
	p.fail(path, "Service %s is not among the manifests of target %s (Services there: %s): add a v1 Service of that name or name one of those",
		quote(name), quote(t.Name), listOrNone(found))
}

// checkDependencies reports unknown names, self-dependencies and cycles in dependsOn; it
// leaves only valid names in each target's dependsOn.
func (p *parser) checkDependencies(targets []*target) {
	byName := map[string]*target{}
	for _, t := range targets {
		byName[t.Name] = t
	}
	for _, t := range targets {
		var valid []string
		for _, dep := range t.dependsOn {
			switch {
			case dep == t.Name:
				p.fail(t.depPaths[dep], "target %s depends on itself: dependsOn names other targets", quote(dep))
			case byName[dep] == nil:
				p.fail(t.depPaths[dep], "target %s is not defined: known targets are %s", quote(dep), joinQuoted(sortedKeys(byName)))
			default:
				valid = append(valid, dep)
			}
		}
		t.dependsOn = valid
	}
	// Depth-first search in name order; a grey node reached again closes a cycle.
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	seen := map[string]bool{}
	var visit func(n string)
	visit = func(n string) {
		color[n] = grey
		stack = append(stack, n)
		for _, dep := range byName[n].dependsOn {
			switch color[dep] {
			case white:
				visit(dep)
			case grey:
				at := len(stack) - 1
				for stack[at] != dep {
					at--
				}
				p.reportCycle(append(append([]string(nil), stack[at:]...), dep), byName, seen)
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
	}
	for _, n := range sortedKeys(byName) {
		if color[n] == white {
			visit(n)
		}
	}
}

// reportCycle reports cycle (first name repeated at the end) once, starting at its
// smallest name.
func (p *parser) reportCycle(cycle []string, byName map[string]*target, seen map[string]bool) {
	ring := cycle[:len(cycle)-1]
	start := 0
	for i, n := range ring {
		if n < ring[start] {
			start = i
		}
	}
	ordered := append(append([]string(nil), ring[start:]...), ring[:start]...)
	ordered = append(ordered, ordered[0])
	id := strings.Join(ordered, "\x00")
	if seen[id] {
		return
	}
	seen[id] = true
	first := byName[ordered[0]]
	p.fail(first.depPaths[ordered[1]], "dependency cycle %s: a target cannot wait, directly or through others, for itself",
		strings.Join(ordered, " -> "))
}

func (p *parser) deploymentConfig(v any, req *Request) {
	const path = "deploymentConfig"
	o, ok := p.obj(v, path)
	if !ok {
		return
	}
	p.unknown(o, path, "timeout", "ifDeploymentInProgress", "keepDeploymentObject")
	if tv, ok := o.get("timeout"); ok {
		req.Timeout, _ = p.durationObject(tv, key(path, "timeout"))
	}
	if iv, ok := o.get("ifDeploymentInProgress"); ok {
		ip := key(path, "ifDeploymentInProgress")
		if io, ok := p.obj(iv, ip); ok {
			p.unknown(io, ip, "strategy")
			if sv, ok := io.get("strategy"); ok {
				if s, ok := p.str(sv, key(ip, "strategy")); ok {
					switch strings.ToLower(s) {
					case "reject":
						req.InProgress = Reject
					case "enqueueone":
						req.InProgress = EnqueueOne
					default:
						p.fail(key(ip, "strategy"), "strategy %s is not known: accepted reject (the default) or enqueueOne", quote(s))
					}
				}
			}
		}
	}
	if kv, ok := o.get("keepDeploymentObject"); ok {
		req.KeepDeploymentObject, _ = p.boolean(kv, key(path, "keepDeploymentObject"))
	}
}

// targetFilters returns the names to keep, or nil to keep every target.
func (p *parser) targetFilters(root *object, names map[string]bool) map[string]bool {
	v, ok := root.get("targetFilters")
	if !ok {
		return nil
	}
	l, ok := p.list(v, "targetFilters")
	if !ok || len(l) == 0 {
		return nil
	}
	keep := map[string]bool{}
	for i, fv := range l {
		fp := index("targetFilters", i)
		o, ok := p.obj(fv, fp)
		if !ok {
			continue
		}
		p.unknown(o, fp, "includeTarget")
		nv, ok := o.get("includeTarget")
		if !ok {
			p.fail(key(fp, "includeTarget"), "is required: the name of a target to deploy")
			continue
		}
		n, ok := p.str(nv, key(fp, "includeTarget"))
		if !ok {
			continue
		}
		if !names[n] {
			p.fail(key(fp, "includeTarget"), "target %s is not defined: known targets are %s", quote(n), listOrNone(sortedKeys(names)))
			continue
		}
		keep[n] = true
	}
	return keep
}
