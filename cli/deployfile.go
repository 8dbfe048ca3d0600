package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// deployFile is a deploy.yml read and checked locally, ready to send.
type deployFile struct {
	path    string
	doc     map[string]any
	targets []string // the names under targets, sorted
	files   map[string][]string
}

// fileError is a problem at a place in the deploy file.
func fileError(path string, n *yaml.Node, format string, args ...any) error {
	where := path
	if n != nil && n.Line > 0 {
		where = fmt.Sprintf("%s:%d:%d", path, n.Line, n.Column)
	}
	return fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...))
}

// readDeployFile reads a deploy.yml, inlines the manifests its path entries name (relative to
// the deploy file's directory; a directory becomes all its .yaml and .yml files) and checks
// what only the CLI can check. Nothing is sent when it fails.
func readDeployFile(path string) (*deployFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, readError("deploy file", path, err)
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: the deploy file is empty", path)
		}
		return nil, yamlSyntaxError(path, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fileError(path, &extra, "a second YAML document: a deploy file holds one")
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlSyntaxError(path, data, err)
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, fileError(path, doc, "the deploy file must be a mapping of keys (application, targets, manifests, ...), not %s", kindName(doc))
	}
	var v any
	if err := doc.Decode(&v); err != nil {
		return nil, fileError(path, doc, "%v", err)
	}
	df := &deployFile{path: path, doc: normalize(v).(map[string]any), files: map[string][]string{}}

	if tn := mapValue(doc, "targets"); tn != nil && tn.Kind == yaml.MappingNode {
		for i := 0; i < len(tn.Content); i += 2 {
			df.targets = append(df.targets, tn.Content[i].Value)
		}
		sort.Strings(df.targets)
	}
	if existing, ok := df.doc["files"].(map[string]any); ok { // files the author inlined already
		for k, v := range existing {
			if list, ok := v.([]any); ok {
				for _, s := range list {
					if str, ok := s.(string); ok {
						df.files[k] = append(df.files[k], str)
					}
				}
			}
		}
	}
	mn := mapValue(doc, "manifests")
	if mn != nil && mn.Kind == yaml.SequenceNode {
		base := filepath.Dir(path)
		for i, item := range mn.Content {
			pn := mapValue(item, "path")
			if pn == nil {
				continue
			}
			if pn.Kind != yaml.ScalarNode || pn.Value == "" {
				return nil, fileError(path, pn, "manifests[%d].path must be a file or directory path", i)
			}
			if _, done := df.files[pn.Value]; done {
				continue
			}
			contents, err := readManifests(base, pn.Value)
			if err != nil {
				return nil, fileError(path, pn, "manifests[%d].path: %v", i, err)
			}
			df.files[pn.Value] = contents
		}
	}
	return df, nil
}

// readManifests reads the manifest file p (relative to base unless absolute), or every
// .yaml and .yml file under the directory p, in lexical order.
func readManifests(base, p string) ([]string, error) {
	full := p
	if !filepath.IsAbs(full) {
		full = filepath.Join(base, p)
	}
	info, err := os.Stat(full)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%q does not exist (looked for %s; paths are relative to the deploy file)", p, full)
		}
		return nil, readError("manifest", full, err)
	}
	if !info.IsDir() {
		data, err := os.ReadFile(full)
		if err != nil {
			return nil, readError("manifest", full, err)
		}
		return []string{string(data)}, nil
	}
	var out []string
	err = filepath.WalkDir(full, func(fp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && fp != full && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		if ext := filepath.Ext(fp); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		data, err := os.ReadFile(fp)
		if err != nil {
			return err
		}
		out = append(out, string(data))
		return nil
	})
	if err != nil {
		return nil, readError("manifest directory", full, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the directory %q holds no .yaml or .yml files", p)
	}
	return out, nil
}

// readError says why a file could not be read, without Go's wording.
func readError(what, path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("the %s %q does not exist", what, path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot read the %s %q: permission denied", what, path)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "is a directory") {
		return fmt.Errorf("the %s %q is a directory, not a file", what, path)
	}
	if errors.As(err, &pe) {
		return fmt.Errorf("cannot read the %s %q: %v", what, path, pe.Err)
	}
	return fmt.Errorf("cannot read the %s %q: %v", what, path, err)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlSyntaxError turns the YAML parser's error into path:line:column: message. The parser
// names only the line; the column is the shortest prefix of that line that fails the same
// way, which is where the parser met the problem.
func yamlSyntaxError(path string, data []byte, err error) error {
	msg := err.Error()
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Errorf("%s: invalid YAML: %s", path, strings.TrimPrefix(msg, "yaml: "))
	}
	line, _ := strconv.Atoi(m[1])
	if col := syntaxColumn(data, line, msg); col > 0 {
		return fmt.Errorf("%s:%d:%d: invalid YAML: %s", path, line, col, m[2])
	}
	return fmt.Errorf("%s:%d: invalid YAML: %s", path, line, m[2])
}

func syntaxColumn(data []byte, line int, msg string) int {
	lines := strings.SplitAfter(string(data), "\n")
	if line < 1 || line > len(lines) {
		return 0
	}
	prefix := strings.Join(lines[:line-1], "")
	text := strings.TrimRight(lines[line-1], "\r\n")
	for c := 1; c <= len(text); c++ {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(prefix+text[:c]), &n); err != nil && err.Error() == msg {
			return len([]rune(text[:c]))
		}
	}
	return 0
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "something else"
}

// mapValue is the value of key in a mapping node, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// normalize makes decoded YAML encodable as JSON (string map keys).
func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = normalize(x)
		}
		return t
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[fmt.Sprint(k)] = normalize(x)
		}
		return out
	case []any:
		for i, x := range t {
			t[i] = normalize(x)
		}
		return t
	}
	return v
}

// body is the request the Armory CLI sends: the deploy file as JSON plus files, context (the
// file's, with the --add-context values over it) and targetFilters (null, or one
// includeTarget per -t).
func (df *deployFile) body(only []string, context map[string]string) ([]byte, error) {
	for _, t := range only {
		if !slices.Contains(df.targets, t) {
			known := "it has none"
			if len(df.targets) > 0 {
				known = "its targets: " + strings.Join(df.targets, ", ")
			}
			return nil, usagef("-t %q: %s has no such target (%s)", t, df.path, known)
		}
	}
	out := make(map[string]any, len(df.doc)+3)
	for k, v := range df.doc {
		out[k] = v
	}
	out["files"] = df.files
	// As the Armory CLI does: the file's own context, then --add-context over it.
	merged := map[string]any{}
	if own, ok := df.doc["context"].(map[string]any); ok {
		maps.Copy(merged, own)
	}
	for k, v := range context {
		merged[k] = v
	}
	out["context"] = merged
	if len(only) == 0 {
		out["targetFilters"] = nil
	} else {
		filters := make([]map[string]string, 0, len(only))
		for _, t := range only {
			filters = append(filters, map[string]string{"includeTarget": t})
		}
		out["targetFilters"] = filters
	}
	data, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot be sent as JSON: %w", df.path, err)
	}
	return data, nil
}
