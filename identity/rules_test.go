package identity_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sortie-dev/sortie/identity"
)

// TestNameRules checks environment and credential names against the rules declared in
// identity.proto: each bad name is refused with a Problem naming the field and the rule,
// and changes nothing.
func TestNameRules(t *testing.T) {
	fx := newFixture(t)
	ctx := t.Context()
	p := fx.adminPrincipal()
	envsBefore, err := fx.svc.ListEnvironments(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	credsBefore, err := fx.svc.ListCredentials(ctx, p)
	if err != nil {
		t.Fatal(err)
	}

	envCases := []struct {
		name, want string // want: "" for valid, else a fragment of the Problem's message
	}{
		{"staging", ""},
		{"a", ""},
		{"0_prod-eu", ""},
		{strings.Repeat("e", 63), ""},
		{"", "at least 1 characters"},
		{strings.Repeat("e", 64), "at most 63 characters"},
		{"-staging", "does not match regex pattern"},
		{"_staging", "does not match regex pattern"},
		{"stag ing", "does not match regex pattern"},
		{"stäging", "does not match regex pattern"},
	}
	for _, c := range envCases {
		_, err := fx.svc.CreateEnvironment(ctx, p, c.name)
		checkProblem(t, "CreateEnvironment", c.name, err, c.want)
	}

	credCases := []struct{ name, want string }{
		{"deploy bot", ""},
		{"Jürgen's CI (eu-west) #3 ✓", ""},
		{strings.Repeat("é", 128), ""},
		{"", "at least 1 characters"},
		{strings.Repeat("é", 129), "at most 128 characters"},
		{"tab\there", "does not match regex pattern"},
		{"new\nline", "does not match regex pattern"},
		{"nul\x00", "does not match regex pattern"},
		{"zero\u200bwidth", "does not match regex pattern"},
		{"bad\xffutf8", "must be valid UTF-8"},
	}
	for _, c := range credCases {
		_, _, err := fx.svc.CreateCredential(ctx, p, c.name, nil)
		checkProblem(t, "CreateCredential", c.name, err, c.want)
	}

	envsAfter, _ := fx.svc.ListEnvironments(ctx, p)
	credsAfter, _ := fx.svc.ListCredentials(ctx, p)
	// Each valid environment also made its admin credential.
	if got, want := len(envsAfter)-len(envsBefore), 4; got != want {
		t.Errorf("%d environments created, want %d (the valid names only)", got, want)
	}
	if got, want := len(credsAfter)-len(credsBefore), 3; got != want {
		t.Errorf("%d credentials created in the caller's environment, want %d (the valid names only)", got, want)
	}
}

func checkProblem(t *testing.T, op, name string, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("%s(%q) = %v, want it created", op, name, err)
		}
		return
	}
	var verr *identity.ValidationError
	if !errors.As(err, &verr) {
		t.Errorf("%s(%q) error = %v, want a ValidationError", op, name, err)
		return
	}
	found := false
	for _, pr := range verr.Problems {
		if pr.Field != "name" {
			t.Errorf("%s(%q) problem %+v, want every problem on field name", op, name, pr)
		}
		found = found || strings.Contains(pr.Message, want)
	}
	if !found {
		t.Errorf("%s(%q) problems = %+v, want one containing %q", op, name, verr.Problems, want)
	}
}
