package config

import (
	"strings"
	"time"
)

// maxDuration bounds every duration: a pause or timeout longer than a year is a mistake.
const maxDuration = 365 * 24 * time.Hour

var units = map[string]time.Duration{"SECONDS": time.Second, "MINUTES": time.Minute, "HOURS": time.Hour}

const unitsAccepted = "seconds, minutes or hours (any case)"

// Step types that are recognized but not built yet, wherever steps are listed.
var stepsNotBuilt = []string{"analysis", "runWebhook", "exposeServices"}

// strategyDef is one parsed entry of strategies, before it is joined to targets.
type strategyDef struct {
	canary    *Canary
	blueGreen *BlueGreen
	path      string // strategies.<name>, or the stage body's key
	used      bool
}

// strategy parses {"canary": {...}} or {"blueGreen": {...}} at path; nil when unusable.
func (p *parser) strategy(v any, path string) *strategyDef {
	o, ok := p.obj(v, path)
	if !ok {
		return nil
	}
	p.unknown(o, path, "canary", "blueGreen")
	return p.strategyIn(o, path, path)
}

// strategyIn reads the canary or blueGreen key of o (a strategies entry, or the stage body
// where they sit beside other keys).
func (p *parser) strategyIn(o *object, path, where string) *strategyDef {
	cv, hasCanary := o.get("canary")
	bv, hasBlueGreen := o.get("blueGreen")
	switch {
	case hasCanary && hasBlueGreen:
		p.fail(where, "sets both canary and blueGreen: a strategy is exactly one of them")
		return nil
	case !hasCanary && !hasBlueGreen:
		p.fail(where, "needs exactly one of canary or blueGreen")
		return nil
	case hasCanary:
		c, ok := p.canary(cv, key(path, "canary"))
		if !ok {
			return nil
		}
		return &strategyDef{canary: c, path: path}
	default:
		bg, ok := p.blueGreen(bv, key(path, "blueGreen"))
		if !ok {
			return nil
		}
		return &strategyDef{blueGreen: bg, path: path}
	}
}

func (p *parser) canary(v any, path string) (*Canary, bool) {
	o, ok := p.obj(v, path)
	if !ok {
		return nil, false
	}
	p.unknown(o, path, "steps")
	c := &Canary{}
	sv, ok := o.get("steps")
	if !ok {
		return c, true // no steps: straight to 100%
	}
	steps, ok := p.list(sv, key(path, "steps"))
	if !ok {
		return nil, false
	}
	good := true
	last, lastPath := -1, ""
	for i, s := range steps {
		sp := index(key(path, "steps"), i)
		typ, val, ok := p.step(s, sp, "setWeight", "pause")
		if !ok {
			good = false
			continue
		}
		switch typ {
		case "setWeight":
			w, ok := p.setWeight(val, key(sp, "setWeight"))
			if !ok {
				good = false
				continue
			}
			if w < last {
				p.fail(key(key(sp, "setWeight"), "weight"),
					"weight %d is lower than %d at %s: weights must not decrease", w, last, lastPath)
				good = false
			}
			last, lastPath = w, sp
			c.Steps = append(c.Steps, CanaryStep{SetWeight: &w})
		case "pause":
			pause, ok := p.pause(val, key(sp, "pause"))
			if !ok {
				good = false
				continue
			}
			c.Steps = append(c.Steps, CanaryStep{Pause: &pause})
		}
	}
	return c, good
}

func (p *parser) setWeight(v any, path string) (int, bool) {
	o, ok := p.obj(v, path)
	if !ok {
		return 0, false
	}
	p.unknown(o, path, "weight")
	wv, ok := o.get("weight")
	if !ok {
		p.fail(key(path, "weight"), "is required: a whole number from 0 to 100")
		return 0, false
	}
	w, ok := p.integer(wv, key(path, "weight"))
	if !ok {
		return 0, false
	}
	if w < 0 || w > 100 {
		p.fail(key(path, "weight"), "weight %d is out of range: accepted 0 to 100", w)
		return 0, false
	}
	return int(w), true
}

func (p *parser) blueGreen(v any, path string) (*BlueGreen, bool) {
	o, ok := p.obj(v, path)
	if !ok {
		return nil, false
	}
	p.unknown(o, path, "activeService", "previewService", "redirectTrafficAfter", "shutDownOldVersionAfter")
	bg := &BlueGreen{}
	good := true
	if sv, ok := o.get("activeService"); !ok {
		p.fail(key(path, "activeService"), "is required: the name of a Service among the target's manifests")
		good = false
	} else if s, ok := p.str(sv, key(path, "activeService")); !ok {
		good = false
	} else if s == "" {
		p.fail(key(path, "activeService"), "must not be empty: the name of a Service among the target's manifests")
		good = false
	} else {
		bg.ActiveService = s
	}
	if sv, ok := o.get("previewService"); ok {
		if s, ok := p.str(sv, key(path, "previewService")); !ok {
			good = false
		} else {
			bg.PreviewService = s // "" means none
		}
	}
	if bg.PreviewService != "" && bg.PreviewService == bg.ActiveService {
		p.fail(key(path, "previewService"), "names the same Service as activeService (%s): the preview Service must be another one", quote(bg.ActiveService))
		good = false
	}
	var ok2 bool
	if bg.RedirectTrafficAfter, ok2 = p.pauses(o, "redirectTrafficAfter", path, false); !ok2 {
		good = false
	}
	if bg.ShutDownOldVersionAfter, ok2 = p.pauses(o, "shutDownOldVersionAfter", path, true); !ok2 {
		good = false
	}
	return bg, good
}

// pauses parses o[k], a list of steps that may only be pauses (blue/green conditions,
// beforeDeployment, afterDeployment). timedOnly refuses approvals as not built yet.
func (p *parser) pauses(o *object, k, path string, timedOnly bool) ([]Pause, bool) {
	lv, ok := o.get(k)
	if !ok {
		return nil, true
	}
	path = key(path, k)
	l, ok := p.list(lv, path)
	if !ok {
		return nil, false
	}
	var out []Pause
	good := true
	for i, s := range l {
		sp := index(path, i)
		_, val, ok := p.step(s, sp, "pause")
		if !ok {
			good = false
			continue
		}
		pause, ok := p.pause(val, key(sp, "pause"))
		if !ok {
			good = false
			continue
		}
		if timedOnly && pause.UntilApproved {
			p.notBuilt(key(key(sp, "pause"), "untilApproved"),
				"approval before shutting down the old version is not supported yet: use a timed pause (duration and unit)")
			good = false
			continue
		}
		out = append(out, pause)
	}
	return out, good
}

// step reads a one-key step object and returns its type and value. A type recognized but not
// built yet is reported as unsupported; an unknown type is a problem, since ignoring it
// would silently drop a step.
func (p *parser) step(v any, path string, allowed ...string) (string, any, bool) {
	o, ok := p.obj(v, path)
	if !ok {
		return "", nil, false
	}
	var types, others []string
	for _, k := range o.keys {
		if contains(allowed, k) || contains(stepsNotBuilt, k) {
			types = append(types, k)
		} else {
			others = append(others, k)
		}
	}
	switch len(types) {
	case 0:
		if len(others) == 0 {
			p.fail(path, "is an empty step: a step is an object with one key naming its type, accepted %s", strings.Join(allowed, ", "))
		} else {
			p.fail(path, "has no known step type (found %s): accepted %s", joinQuoted(others), strings.Join(allowed, ", "))
		}
		return "", nil, false
	case 1:
	default:
		p.fail(path, "sets %s in one step: a step has exactly one type, so list them as separate steps", strings.Join(types, " and "))
		return "", nil, false
	}
	typ := types[0]
	for _, k := range others {
		p.warn(key(path, k), "unknown key %s ignored (a step has one key naming its type: %s)", quote(k), typ)
	}
	if !contains(allowed, typ) {
		if contains(stepsNotBuilt, typ) {
			p.notBuilt(key(path, typ), "%s steps are not supported yet", typ)
		} else {
			p.fail(key(path, typ), "%s steps are not accepted here: accepted %s", typ, strings.Join(allowed, ", "))
		}
		return "", nil, false
	}
	return typ, o.vals[typ], true
}

// pause parses a pause: {duration, unit} or {untilApproved: true, requiresRoles,
// approvalExpiration}. The stage's forms carry all three keys: {0, NONE, true} is an
// approval and {600, SECONDS, false} a timed wait.
func (p *parser) pause(v any, path string) (Pause, bool) {
	o, ok := p.obj(v, path)
	if !ok {
		return Pause{}, false
	}
	p.unknown(o, path, "duration", "unit", "untilApproved", "requiresRoles", "approvalExpiration")
	good := true
	var pause Pause
	if av, ok := o.get("untilApproved"); ok {
		b, ok := p.boolean(av, key(path, "untilApproved"))
		good = good && ok
		pause.UntilApproved = b
	}
	dv, hasDuration := o.get("duration")
	uv, hasUnit := o.get("unit")
	var n int64
	nOK, unit, uOK := true, "", true
	if hasDuration {
		n, nOK = p.integer(dv, key(path, "duration"))
	}
	if hasUnit {
		unit, uOK = p.str(uv, key(path, "unit"))
		unit = strings.ToUpper(unit)
	}
	good = good && nOK && uOK
	if pause.UntilApproved {
		if hasDuration && nOK && n != 0 {
			p.fail(key(path, "duration"), "is set with untilApproved: true: a pause is either timed (duration and unit) or waits for approval, not both")
			good = false
		}
		if hasUnit && uOK && unit != "NONE" && units[unit] == 0 {
			p.fail(key(path, "unit"), "unit %s is not known: accepted %s", quote(unit), unitsAccepted)
			good = false
		}
		if rv, ok := o.get("requiresRoles"); ok {
			roles, ok := p.strings(rv, key(path, "requiresRoles"))
			good = good && ok
			if len(roles) > 0 {
				pause.RequiresRoles = roles
			}
		}
		if ev, ok := o.get("approvalExpiration"); ok {
			d, ok := p.durationObject(ev, key(path, "approvalExpiration"))
			good = good && ok
			pause.ApprovalExpiration = d
		}
		return pause, good
	}
	if !hasDuration && !hasUnit {
		p.fail(path, "needs duration and unit (%s) for a timed pause, or untilApproved: true to wait for approval", unitsAccepted)
		return pause, false
	}
	if !hasDuration {
		p.fail(key(path, "duration"), "is required with unit: a whole number above 0")
		good = false
	}
	if !hasUnit {
		p.fail(key(path, "unit"), "is required with duration: %s", unitsAccepted)
		good = false
	}
	for _, k := range []string{"requiresRoles", "approvalExpiration"} {
		if _, ok := o.get(k); ok {
			p.fail(key(path, k), "applies only to a pause with untilApproved: true")
			good = false
		}
	}
	if !good {
		return pause, false
	}
	d, ok := p.amount(n, unit, path)
	pause.Duration = d
	return pause, ok
}

// durationObject parses {duration, unit} (timeouts, approval expirations).
func (p *parser) durationObject(v any, path string) (time.Duration, bool) {
	o, ok := p.obj(v, path)
	if !ok {
		return 0, false
	}
	p.unknown(o, path, "duration", "unit")
	dv, hasDuration := o.get("duration")
	uv, hasUnit := o.get("unit")
	good := true
	var n int64
	var unit string
	if !hasDuration {
		p.fail(key(path, "duration"), "is required: a whole number above 0")
		good = false
	} else if n, ok = p.integer(dv, key(path, "duration")); !ok {
		good = false
	}
	if !hasUnit {
		p.fail(key(path, "unit"), "is required: %s", unitsAccepted)
		good = false
	} else if unit, ok = p.str(uv, key(path, "unit")); !ok {
		good = false
	}
	if !good {
		return 0, false
	}
	return p.amount(n, strings.ToUpper(unit), path)
}

// amount checks a duration and its upper-cased unit and multiplies them.
func (p *parser) amount(n int64, unit, path string) (time.Duration, bool) {
	u, known := units[unit]
	good := true
	switch {
	case unit == "NONE":
		p.fail(key(path, "unit"), "unit NONE is only for a pause with untilApproved: true: a timed value needs %s", unitsAccepted)
		good = false
	case !known:
		p.fail(key(path, "unit"), "unit %s is not known: accepted %s", quote(unit), unitsAccepted)
		good = false
	}
	if n <= 0 {
		p.fail(key(path, "duration"), "duration %d must be above 0", n)
		return 0, false
	}
	if !good {
		return 0, false
	}
	if n > int64(maxDuration/u) {
		p.fail(key(path, "duration"), "%d %s is longer than the limit of 365 days", n, strings.ToLower(unit))
		return 0, false
	}
	return time.Duration(n) * u, true
}

func (c *Canary) clone() *Canary {
	if c == nil {
		return nil
	}
	out := &Canary{Steps: make([]CanaryStep, len(c.Steps))}
	for i, s := range c.Steps {
		if s.SetWeight != nil {
			w := *s.SetWeight
			out.Steps[i].SetWeight = &w
		}
		if s.Pause != nil {
			p := s.Pause.clone()
			out.Steps[i].Pause = &p
		}
	}
	return out
}

func (b *BlueGreen) clone() *BlueGreen {
	if b == nil {
		return nil
	}
	out := *b
	out.RedirectTrafficAfter = clonePauses(b.RedirectTrafficAfter)
	out.ShutDownOldVersionAfter = clonePauses(b.ShutDownOldVersionAfter)
	return &out
}

func (p Pause) clone() Pause {
	p.RequiresRoles = append([]string(nil), p.RequiresRoles...)
	return p
}

func clonePauses(ps []Pause) []Pause {
	if ps == nil {
		return nil
	}
	out := make([]Pause, len(ps))
	for i, p := range ps {
		out[i] = p.clone()
	}
	return out
}
