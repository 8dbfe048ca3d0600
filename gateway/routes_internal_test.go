package gateway

import (
	"net/http"
	"strings"
	"testing"
)

// TestRouteMuxRefusesUndeclared proves that a route cannot be mounted without a declared
// requirement, nor declared with one the auth layer does not know.
func TestRouteMuxRefusesUndeclared(t *testing.T) {
	t.Parallel()
	noop := func(http.ResponseWriter, *http.Request) {}
	tests := []struct {
		name string
		do   func(m *routeMux)
		want string
	}{
		{name: "undeclared pattern", do: func(m *routeMux) { m.HandleFunc("GET /static/", noop) }, want: "GET /static/ declares no requirement"},
		{name: "undeclared Connect service", do: func(m *routeMux) { m.Handle("/sortie.x.v1.New/", http.HandlerFunc(noop)) }, want: "/sortie.x.v1.New/ declares no requirement"},
		{name: "unknown requirement", do: func(m *routeMux) { m.declare("GET /x", "read:everything") }, want: `unknown requirement "read:everything"`},
		{name: "empty requirement", do: func(m *routeMux) { m.declare("GET /x", "") }, want: `unknown requirement ""`},
		{name: "declared twice", do: func(m *routeMux) { m.declare("GET /x", Public); m.declare("GET /x", Public) }, want: "declared twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newRouteMux()
			defer func() {
				r := recover()
				msg, _ := r.(string)
				if !strings.Contains(msg, tt.want) {
					t.Errorf("panic %v, want one containing %q", r, tt.want)
				}
				if len(m.routes) != 0 {
					t.Errorf("routes %v were mounted, want none", m.routes)
				}
			}()
			tt.do(m)
		})
	}
}

func TestRouteMuxRecordsDeclared(t *testing.T) {
	t.Parallel()
	m := newRouteMux()
	m.declare("GET /a", Public)
	m.declare("/svc/", PerProcedure)
	m.declare("GET /never", Public)
	m.HandleFunc("GET /a", func(http.ResponseWriter, *http.Request) {})
	m.Handle("/svc/", http.NotFoundHandler())
	if got := m.routes; len(got) != 2 || got[0] != (Route{"GET /a", Public}) || got[1] != (Route{"/svc/", PerProcedure}) {
		t.Errorf("routes = %v, want GET /a public and /svc/ per procedure", got)
	}
	if got := m.unregistered(); len(got) != 1 || got[0] != "GET /never" {
		t.Errorf("unregistered = %v, want [GET /never]", got)
	}
}
