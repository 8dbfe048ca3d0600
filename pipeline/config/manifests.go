package config

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// manifestEntry is one parsed entry of manifests.
type manifestEntry struct {
	docs    []Document
	targets []string // nil: every target
	ok      bool     // false when the entry had a problem (its targets get no extra one)
}

// fileSet is the CLI's files: manifest path -> contents. A nil slice is a path the CLI sent
// null for; bad marks a value of the wrong type (already reported).
type fileSet map[string]fileEntry

type fileEntry struct {
	contents []string
	null     bool
	bad      bool
}

// files parses the CLI's files object.
func (p *parser) files(v any) fileSet {
	fs := fileSet{}
	o, ok := p.obj(v, "files")
	if !ok {
		return nil
	}
	for _, k := range o.keys {
		fp := key("files", k)
		val := o.vals[k]
		if val == nil {
			fs[k] = fileEntry{null: true}
			continue
		}
		l, ok := p.list(val, fp)
		if !ok {
			fs[k] = fileEntry{bad: true}
			continue
		}
		e := fileEntry{}
		for i, c := range l {
			if c == nil {
				e.contents = append(e.contents, "")
				e.null = true
				continue
			}
			s, ok := p.str(c, index(fp, i))
			if !ok {
				e.bad = true
				continue
			}
			e.contents = append(e.contents, s)
		}
		fs[k] = e
	}
	return fs
}

// manifests parses the manifests list. files is nil in the stage body, which sends only
// inline manifests. targetNames are the names manifests[i].targets may use.
func (p *parser) manifests(v any, files fileSet, stage bool, targetNames map[string]bool) []manifestEntry {
	l, ok := p.list(v, "manifests")
	if !ok {
		return nil
	}
	if len(l) == 0 {
		p.fail("manifests", "must list at least one manifest (%s)", manifestForms(stage))
		return nil
	}
	var out []manifestEntry
	for i, ev := range l {
		ep := index("manifests", i)
		o, ok := p.obj(ev, ep)
		if !ok {
			out = append(out, manifestEntry{})
			continue
		}
		if stage {
			p.unknown(o, ep, "inline")
		} else {
			p.unknown(o, ep, "path", "inline", "targets")
		}
		e := manifestEntry{ok: true}
		pv, hasPath := o.get("path")
		iv, hasInline := o.get("inline")
		if stage {
			hasPath = false
		}
		switch {
		case hasPath && hasInline:
			p.fail(ep, "sets both path and inline: an entry is exactly one of them")
			e.ok = false
		case !hasPath && !hasInline:
			p.fail(ep, "needs %s", manifestForms(stage))
			e.ok = false
		case hasPath:
			e.docs, e.ok = p.pathManifest(pv, key(ep, "path"), files)
		default:
			e.docs, e.ok = p.inlineManifest(iv, key(ep, "inline"))
		}
		if tv, ok := o.get("targets"); ok && !stage {
			names, ok := p.strings(tv, key(ep, "targets"))
			if !ok {
				e.ok = false
			}
			for j, n := range names {
				if !targetNames[n] {
					p.fail(index(key(ep, "targets"), j), "target %s is not defined: known targets are %s", quote(n), joinQuoted(sortedKeys(targetNames)))
					e.ok = false
				}
			}
			if len(names) > 0 {
				e.targets = names
			}
		}
		out = append(out, e)
	}
	return out
}

func manifestForms(stage bool) string {
	if stage {
		return `{"inline": {"value": "<YAML documents>"}}`
	}
	return `{"path": "<a key of files>"} or {"inline": "<YAML documents>"}`
}

func (p *parser) pathManifest(v any, path string, files fileSet) ([]Document, bool) {
	name, ok := p.str(v, path)
	if !ok {
		return nil, false
	}
	if name == "" {
		p.fail(path, "must not be empty: a path the CLI sends in files")
		return nil, false
	}
	f, ok := files[name]
	switch {
	case !ok:
		p.fail(path, "manifest %s is not in files: the CLI sends every manifest's contents in files, keyed by the path as written", quote(name))
		return nil, false
	case f.bad:
		return nil, false // files[...] already has its problem
	case f.null || len(f.contents) == 0:
		p.fail(path, "manifest %s has no content in files (null or empty): check that the path exists and is readable", quote(name))
		return nil, false
	}
	var docs []Document
	good := true
	for i, c := range f.contents {
		source := name
		if len(f.contents) > 1 {
			source = fmt.Sprintf("%s (file %d)", name, i+1)
		}
		d, ok := p.documents(c, source, path)
		docs = append(docs, d...)
		good = good && ok
	}
	if good && len(docs) == 0 {
		p.fail(path, "manifest %s holds no Kubernetes documents", quote(name))
		good = false
	}
	return docs, good
}

func (p *parser) inlineManifest(v any, path string) ([]Document, bool) {
	// The stage sends {"inline": {"value": "..."}}; deploy.yml has "inline: |".
	if o, ok := v.(*object); ok {
		p.unknown(o, path, "value")
		vv, ok := o.get("value")
		if !ok {
			p.fail(key(path, "value"), "is required: a string of one or more YAML documents")
			return nil, false
		}
		v, path = vv, key(path, "value")
	}
	s, ok := v.(string)
	if !ok {
		p.fail(path, "must be a string of one or more YAML documents, not %s", describe(v))
		return nil, false
	}
	source := strings.TrimSuffix(path, ".value")
	docs, ok := p.documents(s, source, path)
	if ok && len(docs) == 0 {
		p.fail(path, "holds no Kubernetes documents")
		return nil, false
	}
	return docs, ok
}

// documents splits content into its YAML documents, drops empty ones and reads each one's
// identity. Problems go to path and name the source and the document's number.
func (p *parser) documents(content, source, path string) ([]Document, bool) {
	var docs []Document
	good := true
	for i, raw := range splitDocuments(content) {
		where := fmt.Sprintf("%s, document %d", source, i+1)
		var v any
		// Strict: a key repeated in a mapping is an error, as kubectl makes it, not a
		// silent last-one-wins.
		j, err := yaml.YAMLToJSONStrict([]byte(raw))
		if err == nil {
			err = json.Unmarshal(j, &v)
		}
		if err != nil {
			p.fail(path, "%s is not valid YAML: %s", where, yamlError(err))
			good = false
			continue
		}
		if v == nil {
			continue // only blanks or comments
		}
		m, ok := v.(map[string]any)
		if !ok {
			p.fail(path, "%s is %s: a Kubernetes object is a YAML mapping with apiVersion, kind and metadata.name", where, yamlKind(v))
			good = false
			continue
		}
		d := Document{Source: source, YAML: []byte(raw)}
		d.APIVersion, _ = m["apiVersion"].(string)
		d.Kind, _ = m["kind"].(string)
		if md, ok := m["metadata"].(map[string]any); ok {
			d.Name, _ = md["name"].(string)
			d.Namespace, _ = md["namespace"].(string)
		}
		var missing []string
		if d.APIVersion == "" {
			missing = append(missing, "apiVersion")
		}
		if d.Kind == "" {
			missing = append(missing, "kind")
		}
		if d.Name == "" {
			missing = append(missing, "metadata.name")
		}
		if len(missing) > 0 {
			p.fail(path, "%s has no %s: every Kubernetes object needs apiVersion, kind and metadata.name (strings)", where, strings.Join(missing, ", "))
			good = false
			continue
		}
		switch {
		case d.Kind == "ReplicaSet" && strings.HasPrefix(d.APIVersion, "apps/"),
			d.Kind == "Pod" && d.APIVersion == "v1":
			p.fail(path, "%s is a bare %s (%s): Sortie rolls out Deployments; put the pod template in an apps/v1 Deployment", where, d.Kind, quote(d.Name))
			good = false
			continue
		}
		docs = append(docs, d)
	}
	return docs, good
}

// splitDocuments splits YAML text on "---" document separator lines.
func splitDocuments(s string) []string {
	var docs []string
	var cur strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		rest, isSep := strings.CutPrefix(line, "---")
		if isSep {
			t := strings.TrimRight(rest, "\r\n")
			switch {
			case t == "" || strings.HasPrefix(strings.TrimSpace(t), "#"):
				rest = ""
			case t[0] == ' ' || t[0] == '\t':
				rest = strings.TrimLeft(rest, " \t") // "--- {a: 1}": content after the marker
			default:
				isSep = false // "---foo" is not a separator
			}
		}
		if !isSep {
			cur.WriteString(line)
			continue
		}
		docs = append(docs, cur.String())
		cur.Reset()
		cur.WriteString(rest)
	}
	return append(docs, cur.String())
}

// yamlError keeps the useful part of a YAML error (the line and what is wrong).
func yamlError(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:")
	return strings.Join(strings.Fields(msg), " ") // one line, however many errors

}

func yamlKind(v any) string {
	switch v.(type) {
	case []any:
		return "a YAML list"
	case string:
		return "a YAML string"
	default:
		return "a YAML scalar"
	}
}

// service reports whether docs hold a Service named name.
func hasService(docs []Document, name string) bool {
	for _, d := range docs {
		if d.Kind == "Service" && d.APIVersion == "v1" && d.Name == name {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
