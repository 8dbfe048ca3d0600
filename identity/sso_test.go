package identity_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/identity"
)

func TestParseGroupRoles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		want []identity.GroupRole
		err  string // a part of the error; empty: no error
	}{
		{name: "empty", in: ""},
		{name: "only separators", in: " ; ;"},
		{name: "one", in: "deployers=Deployments Full Access",
			want: []identity.GroupRole{{Group: "deployers", Role: "Deployments Full Access"}}},
		{name: "several with spaces and an environment", in: " deployers = Deployments Full Access ; admins=Organization Admin;qa=staging: Deployments Full Access ;",
			want: []identity.GroupRole{
				{Group: "deployers", Role: "Deployments Full Access"},
				{Group: "admins", Role: "Organization Admin"},
				{Group: "qa", Env: "staging", Role: "Deployments Full Access"},
			}},
		{name: "group with = and , (an LDAP DN)", in: "cn=ops,ou=groups=Organization Admin",
			want: []identity.GroupRole{{Group: "cn=ops,ou=groups", Role: "Organization Admin"}}},
		{name: "one group, two roles, a duplicate", in: "ops=Organization Admin;ops=Deployments Full Access;ops=Organization Admin",
			want: []identity.GroupRole{{Group: "ops", Role: "Organization Admin"}, {Group: "ops", Role: "Deployments Full Access"}}},
		{name: "no =", in: "deployers", err: `entry 1 "deployers": want group=Role or group=environment:Role`},
		{name: "empty group", in: "a=Organization Admin; =Organization Admin", err: `entry 2 "=Organization Admin": the group is empty`},
		{name: "unknown role", in: "ops=Admin", err: `unknown role "Admin" (roles: Deployments Full Access, Remote Network Agent, Organization Admin)`},
		{name: "empty role", in: "ops=", err: `unknown role ""`},
		{name: "wrong case", in: "ops=organization admin", err: `unknown role "organization admin"`},
		{name: "empty environment", in: "ops=:Organization Admin", err: "the environment before ':' is empty"},
		{name: "comma instead of semicolon", in: "a=Organization Admin,b=Deployments Full Access", err: `holds the role "Organization Admin": separate entries with ';'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := identity.ParseGroupRoles(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseGroupRoles(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseGroupRoles(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseGroupRoles(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}
