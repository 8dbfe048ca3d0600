package config

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// parser collects every problem, unsupported feature and warning of one body, so the caller
// hears about all of them at once.
type parser struct {
	problems    []Problem
	unsupported []Problem
	warnings    []Warning
}

func (p *parser) fail(path, format string, args ...any) {
	p.problems = append(p.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) notBuilt(path, format string, args ...any) {
	p.unsupported = append(p.unsupported, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) warn(path, format string, args ...any) {
	p.warnings = append(p.warnings, Warning{Path: path, Message: fmt.Sprintf(format, args...)})
}

// result turns what was collected into the error to return, or nil.
func (p *parser) result() error {
	switch {
	case len(p.problems) > 0:
		return &ValidationError{Problems: append(append([]Problem(nil), p.problems...), p.unsupported...),
			unsupported: len(p.unsupported)}
	case len(p.unsupported) > 0:
		return &UnsupportedError{Features: p.unsupported}
	}
	return nil
}

// unknown warns about every key of o that is not in known.
func (p *parser) unknown(o *object, path string, known ...string) {
	for _, k := range o.keys {
		if k == "exposeServices" {
			p.notBuilt(key(path, k), "exposeServices is not supported yet")
			continue
		}
		if !contains(known, k) {
			p.warn(key(path, k), "unknown key %s ignored (known keys here: %s)", quote(k), strings.Join(known, ", "))
		}
	}
}

// obj returns v as an object; a value of another type is a problem.
func (p *parser) obj(v any, path string) (*object, bool) {
	o, ok := v.(*object)
	if !ok {
		p.fail(path, "must be an object, not %s", describe(v))
	}
	return o, ok
}

// list returns v as an array; a value of another type is a problem.
func (p *parser) list(v any, path string) ([]any, bool) {
	l, ok := v.([]any)
	if !ok {
		p.fail(path, "must be an array, not %s", describe(v))
	}
	return l, ok
}

// str returns v as a string; a value of another type is a problem.
func (p *parser) str(v any, path string) (string, bool) {
	s, ok := v.(string)
	if !ok {
		p.fail(path, "must be a string, not %s", describe(v))
	}
	return s, ok
}

// boolean returns v as a boolean; a value of another type is a problem.
func (p *parser) boolean(v any, path string) (bool, bool) {
	b, ok := v.(bool)
	if !ok {
		p.fail(path, "must be true or false, not %s", describe(v))
	}
	return b, ok
}

// integer returns v as a whole number. 25.0 and 2.5e1 are whole numbers; 2.5 is not.
func (p *parser) integer(v any, path string) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		p.fail(path, "must be a whole number, not %s", describe(v))
		return 0, false
	}
	if i, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
		return i, true
	}
	f, err := strconv.ParseFloat(n.String(), 64)
	switch {
	case err != nil || math.Abs(f) > 1<<53:
		p.fail(path, "the number %s is too large", n)
		return 0, false
	case f != math.Trunc(f):
		p.fail(path, "must be a whole number, not %s", n)
		return 0, false
	}
	i := int64(f)
	return i, true
}

// strings returns v as an array of non-empty strings.
func (p *parser) strings(v any, path string) ([]string, bool) {
	l, ok := p.list(v, path)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(l))
	good := true
	for i, e := range l {
		s, ok := p.str(e, index(path, i))
		switch {
		case !ok:
			good = false
		case strings.TrimSpace(s) == "":
			p.fail(index(path, i), "must not be empty")
			good = false
		default:
			out = append(out, s)
		}
	}
	return out, good
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
