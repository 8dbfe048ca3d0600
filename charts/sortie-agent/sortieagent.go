// Package sortieagent renders the sortie-agent Helm chart without Helm, for the server's
// manifest route (GET /kubernetes/agent/manifest). The chart and the route share one
// template, templates/agent.yaml, and one set of defaults, values.yaml, embedded here, so
// what `helm install` creates and what the route returns cannot drift apart. The template
// uses only the few Helm functions this package provides; a test renders the chart with
// Helm and with Render and compares the objects.
package sortieagent

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"regexp"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

//go:embed Chart.yaml values.yaml templates/agent.yaml
var files embed.FS

// templateName is the chart's one template, as Helm names it in its errors.
const templateName = "sortie-agent/templates/agent.yaml"

// Release is what Helm's .Release holds for the template.
type Release struct {
	Name      string // base name of the objects (the route uses "sortie-agent")
	Namespace string // where the namespaced objects go
}

// FailError is the message of the template's own `fail`: values that cannot work. It says
// which value is wrong and why, and is safe to show to the caller.
type FailError struct{ Message string }

func (e *FailError) Error() string { return e.Message }

var agentTemplate = template.Must(template.New(templateName).Option("missingkey=zero").Funcs(funcs).
	ParseFS(files, "templates/agent.yaml")).Lookup("agent.yaml")

// Render writes the chart's objects for release, with values merged over the chart's
// values.yaml as Helm merges -f files (maps key by key, anything else replaced). A value
// the template refuses is a *FailError.
func Render(w io.Writer, release Release, values map[string]any) error {
	defaults, chart, err := chartFiles()
	if err != nil {
		return err
	}
	data := map[string]any{
		"Values":  merge(defaults, values),
		"Release": map[string]any{"Name": release.Name, "Namespace": release.Namespace, "Service": "Sortie"},
		"Chart":   map[string]any{"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
	}
	var buf bytes.Buffer
	if err := agentTemplate.Execute(&buf, data); err != nil {
		var fe *FailError
		if errors.As(err, &fe) {
			return fe
		}
		return fmt.Errorf("render %s: %w", templateName, err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// chartFiles returns values.yaml and Chart.yaml, decoded.
func chartFiles() (values, chart map[string]any, err error) {
	for name, out := range map[string]*map[string]any{"values.yaml": &values, "Chart.yaml": &chart} {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, nil, err
		}
		if err := yaml.Unmarshal(b, out); err != nil {
			return nil, nil, fmt.Errorf("sortie-agent chart %s: %w", name, err)
		}
	}
	return values, chart, nil
}

// merge returns over merged onto base: maps key by key, anything else replaced.
func merge(base, over map[string]any) map[string]any {
	out := maps.Clone(base)
	for k, v := range over {
		bm, bok := out[k].(map[string]any)
		om, ook := v.(map[string]any)
		if bok && ook {
			out[k] = merge(bm, om)
			continue
		}
		out[k] = v
	}
	return out
}

// funcs are the Helm (sprig) functions the template may use, with Helm's behaviour.
var funcs = template.FuncMap{
	"quote": func(args ...any) string {
		var parts []string
		for _, a := range args {
			if a != nil {
				parts = append(parts, fmt.Sprintf("%q", toString(a)))
			}
		}
		return strings.Join(parts, " ")
	},
	"default": func(def any, given ...any) any {
		if len(given) == 0 || isEmpty(given[0]) {
			return def
		}
		return given[0]
	},
	"toString":   toString,
	"fail":       func(msg string) (string, error) { return "", &FailError{Message: msg} },
	"regexMatch": func(re, s string) (bool, error) { return regexp.MatchString(re, s) },
	"toYaml": func(v any) string {
		b, err := yaml.Marshal(v)
		if err != nil {
			return "" // as Helm's toYaml
		}
		return strings.TrimSuffix(string(b), "\n")
	},
	"nindent": func(spaces int, s string) string {
		pad := strings.Repeat(" ", spaces)
		return "\n" + pad + strings.ReplaceAll(s, "\n", "\n"+pad)
	},
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return ""
	case []byte:
		return string(v)
	case error:
		return v.Error()
	case fmt.Stringer:
		return v.String()
	default:
		return fmt.Sprintf("%v", v)
	}
}

// isEmpty is sprig's notion of empty: nil or the zero value of its kind.
func isEmpty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return rv.Len() == 0
	case reflect.Bool:
		return !rv.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return rv.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return rv.Float() == 0
	case reflect.Pointer, reflect.Interface:
		return rv.IsNil()
	}
	return false
}
