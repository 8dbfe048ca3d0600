package identity_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
)

const userPassword = "correct horse battery staple"

func addUser(t *testing.T, fx *fixture, login string, roles ...string) store.User {
	t.Helper()
	u, err := fx.svc.CreateLocalUser(t.Context(), identity.NewLocalUser{
		OrgID: fx.org.Organization.ID, Login: login, Password: userPassword,
		Memberships: []store.Membership{{EnvID: fx.org.Environment.ID, Roles: roles}},
	})
	if err != nil {
		t.Fatalf("CreateLocalUser: %v", err)
	}
	return u
}

func TestCreateLocalUserRefusesBadInput(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	addUser(t, fx, "Ada", identity.RoleOrganizationAdmin)
	for _, tt := range []struct {
		name string
		nu   identity.NewLocalUser
		want string
	}{
		{"short password", identity.NewLocalUser{Login: "bob", Password: "short"}, "password: must be at least 12 characters long"},
		{"no login", identity.NewLocalUser{Password: userPassword}, "login: is required"},
		{"login with a space", identity.NewLocalUser{Login: "b ob", Password: userPassword}, "login: must not contain spaces"},
		{"unknown role", identity.NewLocalUser{Login: "bob", Password: userPassword,
			Memberships: []store.Membership{{EnvID: "e", Roles: []string{"Root"}}}}, `unknown role "Root"`},
		{"login taken, in another case", identity.NewLocalUser{Login: "ADA", Password: userPassword}, `a user with login "ada" exists already`},
	} {
		tt.nu.OrgID = fx.org.Organization.ID
		_, err := fx.svc.CreateLocalUser(t.Context(), tt.nu)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	users, err := fx.st.ListUsers(t.Context(), fx.org.Organization.ID)
	if err != nil || len(users) != 1 {
		t.Errorf("users = %v, %v; want only ada", users, err)
	}
}

// TestBearerUserToken: a token without a session (the device grant's) lives TokenTTL, has
// no sid or csrf, and follows the user's membership at every check.
func TestBearerUserToken(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	u := addUser(t, fx, "ada", identity.RoleDeploymentsFullAccess)
	tok, err := fx.svc.IssueUserToken(t.Context(), u, fx.org.Environment.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ExpiresIn != testTTL || tok.Scope != "manage:deploy read:deploy read:infrastructure:data" {
		t.Errorf("token = %v %q, want %v and the role's scopes", tok.ExpiresIn, tok.Scope, testTTL)
	}
	p, err := fx.svc.Verify(t.Context(), tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if p.Type != identity.PrincipalUser || p.Subject != u.ID || p.Name != "ada" || p.SessionID != "" || p.CSRF != "" {
		t.Errorf("principal = %+v", p)
	}
	if _, err := fx.svc.IssueUserToken(t.Context(), u, "elsewhere", nil); !errors.Is(err, identity.ErrNotMember) {
		t.Errorf("token for a non-member environment: %v, want ErrNotMember", err)
	}
	// Roles changed in the store: the same token carries the new ones at once.
	u.Memberships = []store.Membership{{EnvID: fx.org.Environment.ID, Roles: []string{identity.RoleRemoteNetworkAgent}}}
	if u, err = fx.st.UpdateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	p, err = fx.svc.Verify(t.Context(), tok.Token)
	if err != nil || len(p.Scopes) != 1 || p.Scopes[0] != identity.ScopeConnectAgentHub {
		t.Errorf("after the role change: %+v, %v; want only connect:agentHub", p, err)
	}
	u.Memberships = nil
	if _, err = fx.st.UpdateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.svc.Verify(t.Context(), tok.Token); !errors.Is(err, identity.ErrInvalidToken) {
		t.Errorf("after the membership was removed: %v, want ErrInvalidToken", err)
	}
}

func TestSessionEndsAndExpires(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	u := addUser(t, fx, "ada", identity.RoleOrganizationAdmin)
	sess, err := fx.svc.StartSession(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := fx.svc.IssueUserToken(t.Context(), u, fx.org.Environment.ID, &sess)
	if err != nil {
		t.Fatal(err)
	}
	p, err := fx.svc.Verify(t.Context(), tok.Token)
	if err != nil || p.SessionID != sess.ID || p.CSRF != sess.CSRF || tok.ExpiresIn != identity.DefaultSessionTTL {
		t.Fatalf("session token: %+v %v %v", p, tok.ExpiresIn, err)
	}
	// Renewed until the session's maximum age: the last token ends with the session.
	fx.clock.Advance(identity.DefaultSessionMaxAge - 5*time.Minute)
	p.ExpiresAt = fx.clock.Now().Add(time.Minute) // as if renewed all along
	last, err := fx.svc.RenewSession(t.Context(), p)
	if err != nil || last.ExpiresIn != 5*time.Minute {
		t.Errorf("renewal near the end: %v %v, want a token of 5m", last.ExpiresIn, err)
	}
	fx.clock.Advance(5 * time.Minute)
	if _, err := fx.svc.RenewSession(t.Context(), p); !errors.Is(err, identity.ErrInvalidToken) {
		t.Errorf("renewal past the maximum age: %v, want ErrInvalidToken", err)
	}

	sess2, err := fx.svc.StartSession(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := fx.svc.IssueUserToken(t.Context(), u, fx.org.Environment.ID, &sess2)
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.svc.EndSession(t.Context(), sess2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.svc.Verify(t.Context(), tok2.Token); !errors.Is(err, identity.ErrInvalidToken) {
		t.Errorf("token of an ended session: %v, want ErrInvalidToken", err)
	}
}

func TestChangePassword(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	u := addUser(t, fx, "ada", identity.RoleOrganizationAdmin)
	tok, err := fx.svc.IssueUserToken(t.Context(), u, fx.org.Environment.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := fx.svc.Verify(t.Context(), tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	const newPassword = "a much better passphrase"
	for _, tt := range []struct{ current, next, want string }{
		{"wrong current password", newPassword, "currentPassword: is wrong"},
		{userPassword, "short", "newPassword: must be at least 12 characters long"},
		{userPassword, userPassword, "newPassword: must differ from the current password"},
	} {
		var verr *identity.ValidationError
		if err := fx.svc.ChangePassword(t.Context(), p, tt.current, tt.next); !errors.As(err, &verr) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ChangePassword(%q, %q) = %v, want a validation error %q", tt.current, tt.next, err, tt.want)
		}
	}
	if _, err := fx.svc.CheckPassword(t.Context(), "ada", userPassword, testAddr); err != nil {
		t.Fatalf("refused changes changed the password: %v", err)
	}
	// Two console sessions: the one changing the password goes on, the other ends.
	var sessions [2]identity.Principal
	for i := range sessions {
		sess, err := fx.svc.StartSession(t.Context(), u)
		if err != nil {
			t.Fatal(err)
		}
		st, err := fx.svc.IssueUserToken(t.Context(), u, fx.org.Environment.ID, &sess)
		if err != nil {
			t.Fatal(err)
		}
		if sessions[i], err = fx.svc.Verify(t.Context(), st.Token); err != nil {
			t.Fatal(err)
		}
	}
	if err := fx.svc.ChangePassword(t.Context(), sessions[0], userPassword, newPassword); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.svc.RenewSession(t.Context(), sessions[0]); err != nil {
		t.Errorf("the session that changed the password ended: %v", err)
	}
	if _, err := fx.svc.RenewSession(t.Context(), sessions[1]); !errors.Is(err, identity.ErrInvalidToken) {
		t.Errorf("another session after the password change: %v, want it ended", err)
	}
	// The bearer token (the CLI's, from the device grant) issued before the change ends too;
	// one issued after it works.
	if _, err := fx.svc.Verify(t.Context(), tok.Token); !errors.Is(err, identity.ErrTokenEnded) || !errors.Is(err, identity.ErrInvalidToken) {
		t.Errorf("a bearer token issued before the password change: %v, want ErrTokenEnded", err)
	}
	fx.clock.Advance(time.Second)
	if tok, err = fx.svc.IssueUserToken(t.Context(), u, fx.org.Environment.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.svc.Verify(t.Context(), tok.Token); err != nil {
		t.Errorf("a bearer token issued after the password change: %v", err)
	}
	if _, err := fx.svc.CheckPassword(t.Context(), "ada", userPassword, testAddr); !errors.Is(err, identity.ErrWrongPassword) {
		t.Errorf("old password after the change: %v", err)
	}
	if _, err := fx.svc.CheckPassword(t.Context(), "ada", newPassword, testAddr); err != nil {
		t.Errorf("new password: %v", err)
	}
	machine := identity.Principal{Type: identity.PrincipalMachine, Subject: fx.org.Admin.ClientID, OrgID: fx.org.Organization.ID}
	if err := fx.svc.ChangePassword(t.Context(), machine, "x", newPassword); err == nil {
		t.Error("a machine changed a password")
	}
}
