package config

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// Manifests the tests deploy.
const (
	deploymentYAML = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n"
	servicesYAML   = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-active\n---\n" +
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: web-preview\n"
)

// baseBody is a small valid pipeline body the problem cases edit.
func baseBody() map[string]any {
	return js(`{
	  "application": "web",
	  "targets": {
	    "staging": {"account": "stage-1", "namespace": "web", "strategy": "c1"},
	    "prod": {"account": "prod-west", "strategy": "bg", "constraints": {"dependsOn": ["staging"]}}
	  },
	  "manifests": [
	    {"path": "k8s/web.yaml"},
	    {"inline": ` + strconv.Quote(servicesYAML) + `, "targets": ["prod"]}
	  ],
	  "strategies": {
	    "c1": {"canary": {"steps": [
	      {"setWeight": {"weight": 25}},
	      {"pause": {"duration": 1, "unit": "minutes"}},
	      {"setWeight": {"weight": 50}}]}},
	    "bg": {"blueGreen": {"activeService": "web-active", "previewService": "web-preview"}}
	  },
	  "files": {"k8s/web.yaml": [` + strconv.Quote(deploymentYAML) + `]}
	}`).(map[string]any)
}

// baseStage is a small valid stage body.
func baseStage() map[string]any {
	return js(`{
	  "account": "prod-west", "application": "web", "namespace": "web",
	  "manifests": [{"inline": {"value": ` + strconv.Quote(deploymentYAML) + `}}],
	  "canary": {"steps": [
	    {"setWeight": {"weight": 25}},
	    {"pause": {"duration": 0, "unit": "NONE", "untilApproved": true}},
	    {"setWeight": {"weight": 50}},
	    {"pause": {"duration": 600, "unit": "SECONDS", "untilApproved": false}}]}
	}`).(map[string]any)
}

// js decodes JSON text; the tests write values as JSON.
func js(s string) any {
	var v any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber() // keeps numbers such as 1e400 as written
	if err := dec.Decode(&v); err != nil {
		panic("bad test JSON: " + err.Error() + ": " + s)
	}
	return v
}

// edit changes a decoded body.
type edit func(m map[string]any)

// set puts v (JSON text) at a dotted path; numbers index arrays, and a path ending in a
// new key adds it.
func set(path, v string) edit {
	return func(m map[string]any) { put(m, path, js(v), false) }
}

// del removes the key or array element at a dotted path.
func del(path string) edit {
	return func(m map[string]any) { put(m, path, nil, true) }
}

func put(m map[string]any, path string, v any, remove bool) {
	parts := strings.Split(path, ".")
	var cur any = m
	for i, part := range parts {
		last := i == len(parts)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				if remove {
					delete(c, part)
				} else {
					c[part] = v
				}
				return
			}
			cur = c[part]
		case []any:
			n, err := strconv.Atoi(part)
			if err != nil || n >= len(c) {
				panic("bad test path " + path)
			}
			if last {
				if remove {
					panic("cannot delete array elements: " + path)
				}
				c[n] = v
				return
			}
			cur = c[n]
		default:
			panic("bad test path " + path)
		}
	}
}

func encode(t testing.TB, m map[string]any, edits ...edit) []byte {
	t.Helper()
	for _, e := range edits {
		e(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// problems returns what kind of error err is and the problems it lists.
func problems(t *testing.T, err error) (string, []Problem) {
	t.Helper()
	var ve *ValidationError
	var ue *UnsupportedError
	var se *SyntaxError
	switch {
	case err == nil:
		return "", nil
	case errors.As(err, &ve):
		return "invalid", ve.Problems
	case errors.As(err, &ue):
		return "unsupported", ue.Features
	case errors.As(err, &se):
		return "syntax", []Problem{{Path: se.Path, Message: se.Message}}
	}
	t.Fatalf("error of unexpected type %T: %v", err, err)
	return "", nil
}

// want is one expected problem: its exact path and a part of its message.
type want struct{ path, msg string }

func checkProblems(t *testing.T, err error, wantKind string, wants []want) {
	t.Helper()
	kind, got := problems(t, err)
	if kind != wantKind {
		t.Fatalf("error kind = %q, want %q; error: %v", kind, wantKind, err)
	}
	if len(got) != len(wants) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(wants), joinProblems(got))
	}
	for i, w := range wants {
		if got[i].Path != w.path || !strings.Contains(got[i].Message, w.msg) {
			t.Errorf("problem %d = %s\nwant path %q and a message containing %q", i, got[i], w.path, w.msg)
		}
	}
}
