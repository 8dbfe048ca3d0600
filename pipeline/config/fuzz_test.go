package config

import (
	"errors"
	"testing"

	"github.com/sortie-dev/sortie/hub"
)

func FuzzParsePipeline(f *testing.F) {
	f.Add([]byte(fullPipeline))
	f.Add(encode(f, baseBody()))
	f.Add(encode(f, baseBody(), set("targetFilters", `[{"includeTarget": "prod"}]`)))
	f.Add(encode(f, baseBody(), set("targets.staging.constraints", `{"dependsOn": ["prod"]}`)))
	f.Add(encode(f, baseBody(), set("strategies.c1.canary.steps.2.setWeight.weight", `10`)))
	f.Add([]byte(`{"application": "web", "application": "web"}`))
	f.Add([]byte(`{"kind": "lambda"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, _, err := ParsePipeline(body)
		checkOutcome(t, req, err)
	})
}

func FuzzParseDeployment(f *testing.F) {
	f.Add(encode(f, baseStage()))
	f.Add(encode(f, baseStage(), del("canary"), set("blueGreen", `{"activeService": "web"}`)))
	f.Add([]byte(`{"account": "a", "canary": {"steps": [{"pause": {"duration": 0, "unit": "NONE", "untilApproved": true}}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, _, err := ParseDeployment(body)
		checkOutcome(t, req, err)
	})
}

// checkOutcome asserts the contract of both parsers: an error of one of the three types
// and no Request, or a Request the engine can run without checking anything again.
func checkOutcome(t *testing.T, req *Request, err error) {
	t.Helper()
	if err != nil {
		var ve *ValidationError
		var ue *UnsupportedError
		var se *SyntaxError
		if !errors.As(err, &ve) && !errors.As(err, &ue) && !errors.As(err, &se) {
			t.Fatalf("error of type %T: %v", err, err)
		}
		if req != nil {
			t.Fatalf("a Request beside the error %v", err)
		}
		if err.Error() == "" {
			t.Fatal("empty error message")
		}
		return
	}
	if req == nil || len(req.Targets) == 0 {
		t.Fatalf("accepted without targets: %+v", req)
	}
	if !validLabel(req.Application) || (req.InProgress != Reject && req.InProgress != EnqueueOne) || req.Timeout < 0 {
		t.Fatalf("accepted a bad header: %+v", req)
	}
	names := map[string]bool{}
	for i, tg := range req.Targets {
		if i > 0 && req.Targets[i-1].Name >= tg.Name {
			t.Fatalf("targets not sorted or not unique: %q then %q", req.Targets[i-1].Name, tg.Name)
		}
		names[tg.Name] = true
	}
	for _, tg := range req.Targets {
		if !hub.ValidIdentifier(tg.Account) {
			t.Fatalf("target %q: accepted account %q", tg.Name, tg.Account)
		}
		if tg.StrategyName == "" || (tg.Canary == nil) == (tg.BlueGreen == nil) {
			t.Fatalf("target %q: strategy %q, canary %v, blueGreen %v", tg.Name, tg.StrategyName, tg.Canary, tg.BlueGreen)
		}
		if len(tg.Documents) == 0 {
			t.Fatalf("target %q has no documents", tg.Name)
		}
		for _, d := range tg.Documents {
			if d.APIVersion == "" || d.Kind == "" || d.Name == "" || d.Source == "" || len(d.YAML) == 0 {
				t.Fatalf("target %q: incomplete document %+v", tg.Name, d)
			}
		}
		for _, dep := range tg.DependsOn {
			if dep == tg.Name || !names[dep] {
				t.Fatalf("target %q depends on %q", tg.Name, dep)
			}
		}
		for _, p := range append(append([]Pause(nil), tg.BeforeDeployment...), tg.AfterDeployment...) {
			checkPause(t, p)
		}
		if c := tg.Canary; c != nil {
			last := 0
			for _, s := range c.Steps {
				if (s.SetWeight == nil) == (s.Pause == nil) {
					t.Fatalf("target %q: canary step %+v", tg.Name, s)
				}
				if s.Pause != nil {
					checkPause(t, *s.Pause)
					continue
				}
				if w := *s.SetWeight; w < last || w > 100 {
					t.Fatalf("target %q: weight %d after %d", tg.Name, w, last)
				}
				last = *s.SetWeight
			}
		}
		if bg := tg.BlueGreen; bg != nil {
			if !hasService(tg.Documents, bg.ActiveService) || (bg.PreviewService != "" && !hasService(tg.Documents, bg.PreviewService)) {
				t.Fatalf("target %q: blue/green Services %q, %q not among its documents", tg.Name, bg.ActiveService, bg.PreviewService)
			}
			for _, p := range bg.RedirectTrafficAfter {
				checkPause(t, p)
			}
			for _, p := range bg.ShutDownOldVersionAfter {
				if checkPause(t, p); p.UntilApproved {
					t.Fatalf("target %q: approval in shutDownOldVersionAfter", tg.Name)
				}
			}
		}
	}
}

func checkPause(t *testing.T, p Pause) {
	t.Helper()
	if p.UntilApproved == (p.Duration > 0) || p.Duration > maxDuration || p.ApprovalExpiration < 0 ||
		(!p.UntilApproved && (p.ApprovalExpiration != 0 || len(p.RequiresRoles) > 0)) {
		t.Fatalf("bad pause %+v", p)
	}
}
