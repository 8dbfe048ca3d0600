package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	identityv1 "github.com/sortie-dev/sortie/gen/sortie/identity/v1"
	"github.com/sortie-dev/sortie/gen/sortie/identity/v1/identityv1connect"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redistest"
)

// onBothStores runs test against a server on each store backend: bbolt and Redis.
func onBothStores(t *testing.T, test func(*testing.T, *testServer)) {
	t.Parallel()
	t.Run("bolt", func(t *testing.T) {
		t.Parallel()
		test(t, startServer(t, serverOptions{}))
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		test(t, startServer(t, serverOptions{redisURL: redistest.New(t).URL()}))
	})
}

// identityClient is a generated IdentityService client sending token (none when empty).
func identityClient(ts *testServer, token string) identityv1connect.IdentityServiceClient {
	if token == "" {
		return identityv1connect.NewIdentityServiceClient(h2cClient(), ts.URL)
	}
	return identityv1connect.NewIdentityServiceClient(h2cClient(), ts.URL, connect.WithInterceptors(bearerAll(token)))
}

// wantCode asserts that err is a Connect error with code and a message containing msg.
func wantCode(t *testing.T, what string, err error, code connect.Code, msg string) {
	t.Helper()
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != code || !strings.Contains(cerr.Message(), msg) {
		t.Fatalf("%s: got %v, want %v containing %q", what, err, code, msg)
	}
}

// inviteSecret returns the secret of an invitation link.
func inviteSecret(t *testing.T, ts *testServer, link string) string {
	t.Helper()
	secret, ok := strings.CutPrefix(link, ts.URL+"/console/invite#token=")
	if !ok || len(secret) < 43 {
		t.Fatalf("invitation link %q is not %s/console/invite#token=<256-bit secret>", link, ts.URL)
	}
	return secret
}

// inviteUser invites login with roles through admin and accepts the invitation with password.
func inviteUser(t *testing.T, ts *testServer, admin identityv1connect.IdentityServiceClient, login string, roles ...string) store.User {
	t.Helper()
	ctx := context.Background()
	inv, err := admin.CreateInvitation(ctx, connect.NewRequest(&identityv1.CreateInvitationRequest{Email: login, Roles: roles}))
	if err != nil {
		t.Fatalf("invite %s: %v", login, err)
	}
	if _, err := identityClient(ts, "").AcceptInvitation(ctx, connect.NewRequest(&identityv1.AcceptInvitationRequest{
		Token: inviteSecret(t, ts, inv.Msg.GetUrl()), Name: login, Password: "correct horse battery",
	})); err != nil {
		t.Fatalf("accept the invitation of %s: %v", login, err)
	}
	u, err := ts.st.LookupUser(ctx, strings.ToLower(login))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// userToken signs a bearer token for u in envID, as a completed sign-in does.
func userToken(t *testing.T, ts *testServer, u store.User, envID string) string {
	t.Helper()
	tok, err := ts.svc.IssueUserToken(context.Background(), u, envID, nil)
	if err != nil {
		t.Fatalf("issue a user token: %v", err)
	}
	return tok.Token
}

func TestInvitationNewUser(t *testing.T) { onBothStores(t, testInvitationNewUser) }

func testInvitationNewUser(t *testing.T, ts *testServer) {
	ctx := context.Background()
	admin := identityClient(ts, ts.adminToken(t))
	anon := identityClient(ts, "")
	envID := ts.admin.Environment.ID

	created, err := admin.CreateInvitation(ctx, connect.NewRequest(&identityv1.CreateInvitationRequest{
		Email: "Jane.Doe@Example.com", Roles: []string{identity.RoleDeploymentsFullAccess},
	}))
	if err != nil {
		t.Fatalf("create invitation: %v", err)
	}
	secret := inviteSecret(t, ts, created.Msg.GetUrl())
	inv := created.Msg.GetInvitation()
	if inv.GetEmail() != "jane.doe@example.com" || inv.GetEnvId() != envID || inv.GetExpireTime().AsTime().Sub(inv.GetCreateTime().AsTime()) != identity.DefaultInvitationTTL {
		t.Errorf("invitation %v: want the lower-cased email, this environment and a 72h link", inv)
	}
	listed, err := admin.ListInvitations(ctx, connect.NewRequest(&identityv1.ListInvitationsRequest{}))
	if err != nil || len(listed.Msg.GetInvitations()) != 1 || listed.Msg.GetInvitations()[0].GetId() != inv.GetId() {
		t.Fatalf("list invitations: %v %v", listed, err)
	}
	if strings.Contains(listed.Msg.String(), secret) {
		t.Error("the invitation list shows the link's secret")
	}

	info, err := anon.GetInvitation(ctx, connect.NewRequest(&identityv1.GetInvitationRequest{Token: secret}))
	if err != nil {
		t.Fatalf("get invitation: %v", err)
	}
	if info.Msg.GetEmail() != "jane.doe@example.com" || info.Msg.GetOrgName() != "acme" || info.Msg.GetEnvName() != ts.admin.Environment.Name ||
		info.Msg.GetExistingUser() || !slices.Equal(info.Msg.GetRoles(), []string{identity.RoleDeploymentsFullAccess}) {
		t.Errorf("get invitation: %v", info.Msg)
	}

	// A short password changes nothing: the link still works.
	_, err = anon.AcceptInvitation(ctx, connect.NewRequest(&identityv1.AcceptInvitationRequest{Token: secret, Name: "Jane", Password: "too-short"}))
	wantCode(t, "accept with a short password", err, connect.CodeInvalidArgument, "at least 12 characters")
	if _, err := ts.st.LookupUser(ctx, "jane.doe@example.com"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused acceptance created the user: %v", err)
	}
	accepted, err := anon.AcceptInvitation(ctx, connect.NewRequest(&identityv1.AcceptInvitationRequest{Token: secret, Name: "Jane Doe", Password: testPassword}))
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	if accepted.Msg.GetLogin() != "jane.doe@example.com" || accepted.Msg.GetEnvId() != envID {
		t.Errorf("accept: %v", accepted.Msg)
	}
	u, err := ts.st.LookupUser(ctx, "jane.doe@example.com")
	if err != nil || !strings.HasPrefix(u.PasswordHash, "$argon2id$") || u.Name != "Jane Doe" {
		t.Fatalf("stored user %+v, %v: want an argon2id hash", u, err)
	}

	_, err = anon.AcceptInvitation(ctx, connect.NewRequest(&identityv1.AcceptInvitationRequest{Token: secret, Password: "correct horse battery"}))
	wantCode(t, "accept twice", err, connect.CodeNotFound, "This invitation link was already used or has expired.")
	_, err = anon.GetInvitation(ctx, connect.NewRequest(&identityv1.GetInvitationRequest{Token: secret}))
	wantCode(t, "get a used invitation", err, connect.CodeNotFound, "already used or has expired")
	if listed, err := admin.ListInvitations(ctx, connect.NewRequest(&identityv1.ListInvitationsRequest{})); err != nil || len(listed.Msg.GetInvitations()) != 0 {
		t.Errorf("a used invitation is still listed: %v %v", listed, err)
	}

	users, err := admin.ListUsers(ctx, connect.NewRequest(&identityv1.ListUsersRequest{}))
	if err != nil || len(users.Msg.GetUsers()) != 1 {
		t.Fatalf("list users: %v %v", users, err)
	}
	if got := users.Msg.GetUsers()[0]; got.GetLogin() != "jane.doe@example.com" || got.GetId() != u.ID ||
		!slices.Equal(got.GetRoles(), []string{identity.RoleDeploymentsFullAccess}) || got.GetExternal() {
		t.Errorf("listed user %v", got)
	}

	// The new user signs in on the sign-in page with the password just set...
	c := newConsole(t, ts)
	c.signIn("jane.doe@example.com")
	if who := c.mustWhoAmI(); who.Principal.Type != "PRINCIPAL_TYPE_USER" || who.Principal.Subject != u.ID {
		t.Errorf("whoami of the signed-in new user: %+v", who.Principal)
	}
	// ...and gets a bearer token through the device flow.
	tok := deviceLoginAs(t, ts, u)
	who, err := identityClient(ts, tok).WhoAmI(ctx, connect.NewRequest(&identityv1.WhoAmIRequest{}))
	if err != nil {
		t.Fatalf("whoami with the new user's token: %v", err)
	}
	if p := who.Msg.GetPrincipal(); p.GetType() != identityv1.PrincipalType_PRINCIPAL_TYPE_USER || p.GetSubject() != u.ID || p.GetEnvId() != envID ||
		!slices.Contains(p.GetScopes(), identity.ScopeManageDeploy) || slices.Contains(p.GetScopes(), identity.ScopeManageTenant) {
		t.Errorf("whoami: %v", p)
	}
}

func TestInvitationExistingUserProvesPassword(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	ctx := context.Background()
	admin := identityClient(ts, ts.adminToken(t))
	anon := identityClient(ts, "")
	jane := inviteUser(t, ts, admin, "jane@example.com", identity.RoleDeploymentsFullAccess)

	staging, err := admin.CreateEnvironment(ctx, connect.NewRequest(&identityv1.CreateEnvironmentRequest{Name: "staging"}))
	if err != nil {
		t.Fatal(err)
	}
	stagingAdmin := identityClient(ts, ts.token(t, staging.Msg.GetAdminCredential().GetClientId(), staging.Msg.GetAdminClientSecret(), ""))
	created, err := stagingAdmin.CreateInvitation(ctx, connect.NewRequest(&identityv1.CreateInvitationRequest{
		Email: "jane@example.com", Roles: []string{identity.RoleOrganizationAdmin}, Ttl: durationpb.New(time.Hour),
	}))
	if err != nil {
		t.Fatal(err)
	}
	secret := inviteSecret(t, ts, created.Msg.GetUrl())
	info, err := anon.GetInvitation(ctx, connect.NewRequest(&identityv1.GetInvitationRequest{Token: secret}))
	if err != nil || !info.Msg.GetExistingUser() || info.Msg.GetEnvName() != "staging" {
		t.Fatalf("get invitation: %v %v", info, err)
	}
	_, err = anon.AcceptInvitation(ctx, connect.NewRequest(&identityv1.AcceptInvitationRequest{Token: secret, Password: "not the password"}))
	wantCode(t, "accept with a wrong password", err, connect.CodePermissionDenied, "not the password of jane@example.com")
	if u, _ := ts.st.GetUser(ctx, jane.OrgID, jane.ID); len(u.Memberships) != 1 {
		t.Fatalf("a refused acceptance changed the memberships: %v", u.Memberships)
	}
	if _, err := anon.AcceptInvitation(ctx, connect.NewRequest(&identityv1.AcceptInvitationRequest{Token: secret, Password: "correct horse battery"})); err != nil {
		t.Fatalf("accept with the password: %v", err)
	}
	u, err := ts.st.GetUser(ctx, jane.OrgID, jane.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := u.Member(staging.Msg.GetEnvironment().GetId()); !ok || !slices.Equal(m.Roles, []string{identity.RoleOrganizationAdmin}) || len(u.Memberships) != 2 {
		t.Errorf("memberships after accepting: %+v", u.Memberships)
	}
	if u.PasswordHash != jane.PasswordHash {
		t.Error("accepting as an existing user changed the password")
	}

	// Jane, Organization Admin of staging, creates an environment and becomes its admin.
	janeStaging := identityClient(ts, userToken(t, ts, u, staging.Msg.GetEnvironment().GetId()))
	prod, err := janeStaging.CreateEnvironment(ctx, connect.NewRequest(&identityv1.CreateEnvironmentRequest{Name: "prod"}))
	if err != nil {
		t.Fatalf("create environment as a user: %v", err)
	}
	u, _ = ts.st.GetUser(ctx, jane.OrgID, jane.ID)
	if m, ok := u.Member(prod.Msg.GetEnvironment().GetId()); !ok || !slices.Equal(m.Roles, []string{identity.RoleOrganizationAdmin}) {
		t.Errorf("the creator is not an Organization Admin of the new environment: %+v", u.Memberships)
	}
}

func TestInvitationExpiredAndRevoked(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	ctx := context.Background()
	admin := identityClient(ts, ts.adminToken(t))
	anon := identityClient(ts, "")

	invite := func(email string, ttl time.Duration) (string, string) {
		t.Helper()
		created, err := admin.CreateInvitation(ctx, connect.NewRequest(&identityv1.CreateInvitationRequest{
			Email: email, Roles: []string{identity.RoleDeploymentsFullAccess}, Ttl: durationpb.New(ttl),
		}))
		if err != nil {
			t.Fatal(err)
		}
		return created.Msg.GetInvitation().GetId(), inviteSecret(t, ts, created.Msg.GetUrl())
	}
	revokedID, revoked := invite("rev@example.com", time.Hour)
	if _, err := admin.RevokeInvitation(ctx, connect.NewRequest(&identityv1.RevokeInvitationRequest{Id: revokedID})); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	_, err := anon.AcceptInvitation(ctx, connect.NewRequest(&identityv1.AcceptInvitationRequest{Token: revoked, Password: "correct horse battery"}))
	wantCode(t, "accept a revoked invitation", err, connect.CodeNotFound, "This invitation link was already used or has expired.")
	_, err = admin.RevokeInvitation(ctx, connect.NewRequest(&identityv1.RevokeInvitationRequest{Id: revokedID}))
	wantCode(t, "revoke twice", err, connect.CodeNotFound, "is not pending in this environment")

	_, expiring := invite("late@example.com", time.Hour)
	ts.clock.Advance(time.Hour + time.Second)
	_, err = anon.GetInvitation(ctx, connect.NewRequest(&identityv1.GetInvitationRequest{Token: expiring}))
	wantCode(t, "get an expired invitation", err, connect.CodeNotFound, "already used or has expired")
	_, err = anon.AcceptInvitation(ctx, connect.NewRequest(&identityv1.AcceptInvitationRequest{Token: expiring, Password: "correct horse battery"}))
	wantCode(t, "accept an expired invitation", err, connect.CodeNotFound, "This invitation link was already used or has expired.")
	admin = identityClient(ts, ts.adminToken(t)) // the first token expired with the link
	if listed, err := admin.ListInvitations(ctx, connect.NewRequest(&identityv1.ListInvitationsRequest{})); err != nil || len(listed.Msg.GetInvitations()) != 0 {
		t.Errorf("revoked or expired invitations listed: %v %v", listed, err)
	}
	if _, err := ts.st.LookupUser(ctx, "late@example.com"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an expired invitation created a user: %v", err)
	}
}

func TestInvitationBadInput(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	ctx := context.Background()
	admin := identityClient(ts, ts.adminToken(t))
	for _, tc := range []struct {
		name  string
		req   *identityv1.CreateInvitationRequest
		token string
		code  connect.Code
		msg   string
	}{
		{"not an email", &identityv1.CreateInvitationRequest{Email: "Jane <jane@example.com>", Roles: []string{identity.RoleDeploymentsFullAccess}}, "", connect.CodeInvalidArgument, "is not an email address"},
		{"no role", &identityv1.CreateInvitationRequest{Email: "jane@example.com"}, "", connect.CodeInvalidArgument, "at least one role"},
		{"unknown role", &identityv1.CreateInvitationRequest{Email: "jane@example.com", Roles: []string{"Janitor"}}, "", connect.CodeInvalidArgument, `unknown role "Janitor"`},
		{"ttl too long", &identityv1.CreateInvitationRequest{Email: "jane@example.com", Roles: []string{identity.RoleDeploymentsFullAccess}, Ttl: durationpb.New(31 * 24 * time.Hour)}, "", connect.CodeInvalidArgument, "between 1 minute and 30 days"},
		{"ttl zero", &identityv1.CreateInvitationRequest{Email: "jane@example.com", Roles: []string{identity.RoleDeploymentsFullAccess}, Ttl: durationpb.New(0)}, "", connect.CodeInvalidArgument, "between 1 minute and 30 days"},
		// A token narrowed to manage:tenant may invite, but not grant deployment scopes.
		{"role the inviter may not grant", &identityv1.CreateInvitationRequest{Email: "jane@example.com", Roles: []string{identity.RoleDeploymentsFullAccess}},
			ts.token(t, ts.admin.Admin.ClientID, ts.admin.Secret, identity.ScopeManageTenant), connect.CodePermissionDenied, "which your token does not carry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := admin
			if tc.token != "" {
				client = identityClient(ts, tc.token)
			}
			_, err := client.CreateInvitation(ctx, connect.NewRequest(tc.req))
			wantCode(t, tc.name, err, tc.code, tc.msg)
		})
	}
	if listed, err := admin.ListInvitations(ctx, connect.NewRequest(&identityv1.ListInvitationsRequest{})); err != nil || len(listed.Msg.GetInvitations()) != 0 {
		t.Errorf("refused invitations were stored: %v %v", listed, err)
	}
	_, err := admin.CreateInvitation(ctx, connect.NewRequest(&identityv1.CreateInvitationRequest{Email: "bob@example.com", Roles: []string{identity.RoleDeploymentsFullAccess}}))
	if err != nil {
		t.Fatal(err)
	}
	inviteUser(t, ts, admin, "jane@example.com", identity.RoleDeploymentsFullAccess)
	_, err = admin.CreateInvitation(ctx, connect.NewRequest(&identityv1.CreateInvitationRequest{Email: "jane@example.com", Roles: []string{identity.RoleDeploymentsFullAccess}}))
	wantCode(t, "invite a member", err, connect.CodeAlreadyExists, "already a member")
}

func TestRemoveUser(t *testing.T) { onBothStores(t, testRemoveUser) }

func testRemoveUser(t *testing.T, ts *testServer) {
	ctx := context.Background()
	admin := identityClient(ts, ts.adminToken(t))
	envID := ts.admin.Environment.ID
	boss := inviteUser(t, ts, admin, "boss@example.com", identity.RoleOrganizationAdmin)
	jane := inviteUser(t, ts, admin, "jane@example.com", identity.RoleDeploymentsFullAccess)
	bossClient := identityClient(ts, userToken(t, ts, boss, envID))
	janeClient := identityClient(ts, userToken(t, ts, jane, envID))
	if _, err := janeClient.WhoAmI(ctx, connect.NewRequest(&identityv1.WhoAmIRequest{})); err != nil {
		t.Fatalf("whoami before removal: %v", err)
	}

	_, err := bossClient.RemoveUser(ctx, connect.NewRequest(&identityv1.RemoveUserRequest{Id: boss.ID}))
	wantCode(t, "remove yourself", err, connect.CodePermissionDenied, "you cannot remove yourself")
	_, err = bossClient.RemoveUser(ctx, connect.NewRequest(&identityv1.RemoveUserRequest{Id: "no-such-user"}))
	wantCode(t, "remove an unknown user", err, connect.CodeNotFound, `user "no-such-user" is not a member of this environment`)
	_, err = janeClient.RemoveUser(ctx, connect.NewRequest(&identityv1.RemoveUserRequest{Id: boss.ID}))
	wantCode(t, "remove without manage:tenant", err, connect.CodePermissionDenied, "")

	if _, err := bossClient.RemoveUser(ctx, connect.NewRequest(&identityv1.RemoveUserRequest{Id: jane.ID})); err != nil {
		t.Fatalf("remove jane: %v", err)
	}
	_, err = janeClient.WhoAmI(ctx, connect.NewRequest(&identityv1.WhoAmIRequest{}))
	wantCode(t, "whoami after removal", err, connect.CodeUnauthenticated, "")
	if _, err := ts.st.GetUser(ctx, jane.OrgID, jane.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a user with no membership left was kept: %v", err)
	}
	users, err := admin.ListUsers(ctx, connect.NewRequest(&identityv1.ListUsersRequest{}))
	if err != nil || len(users.Msg.GetUsers()) != 1 || users.Msg.GetUsers()[0].GetId() != boss.ID {
		t.Errorf("users after removal: %v %v", users, err)
	}
}

func TestWatchIdentity(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := identityClient(ts, ts.adminToken(t))
	envID := ts.admin.Environment.ID
	jane := inviteUser(t, ts, admin, "jane@example.com", identity.RoleOrganizationAdmin)
	stream, err := identityClient(ts, userToken(t, ts, jane, envID)).WatchIdentity(ctx, connect.NewRequest(&identityv1.WatchIdentityRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() {
		t.Fatalf("no first snapshot: %v", stream.Err())
	}
	first := stream.Msg()
	if len(first.GetUsers()) != 1 || first.GetUsers()[0].GetLogin() != "jane@example.com" ||
		len(first.GetMemberships()) != 1 || first.GetMemberships()[0].GetId() != envID || len(first.GetCredentials()) != 1 {
		t.Fatalf("first snapshot: %v", first)
	}

	created, err := admin.CreateCredential(ctx, connect.NewRequest(&identityv1.CreateCredentialRequest{Name: "ci", Roles: []string{identity.RoleDeploymentsFullAccess}}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatalf("no snapshot after a credential was created: %v", stream.Err())
	}
	if !slices.ContainsFunc(stream.Msg().GetCredentials(), func(c *identityv1.Credential) bool { return c.GetId() == created.Msg.GetCredential().GetId() }) {
		t.Fatalf("the next snapshot lacks the new credential: %v", stream.Msg())
	}
	if strings.Contains(stream.Msg().String(), created.Msg.GetClientSecret()) {
		t.Error("a snapshot carries a client secret")
	}

	if _, err := admin.RemoveUser(ctx, connect.NewRequest(&identityv1.RemoveUserRequest{Id: jane.ID})); err != nil {
		t.Fatal(err)
	}
	for stream.Receive() {
	}
	wantCode(t, "the stream of a removed user", stream.Err(), connect.CodeUnauthenticated, "")
}

// deviceReply is a reply of the device authorization or token endpoint.
type deviceReply struct {
	Status int
	Body   map[string]any
}

func postForm(t *testing.T, ts *testServer, path string, form url.Values) deviceReply {
	t.Helper()
	resp, err := http.PostForm(ts.URL+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := jsonDecode(resp, &body); err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return deviceReply{Status: resp.StatusCode, Body: body}
}

func startDevice(t *testing.T, ts *testServer) (deviceCode, userCode string) {
	t.Helper()
	r := postForm(t, ts, "/oauth/device_authorization", url.Values{"client_id": {identity.DeviceClientID}})
	if r.Status != http.StatusOK {
		t.Fatalf("device authorization: %d %v", r.Status, r.Body)
	}
	userCode, _ = r.Body["user_code"].(string)
	deviceCode, _ = r.Body["device_code"].(string)
	if !regexp.MustCompile(`^[A-Z]{4}-[A-Z]{4}$`).MatchString(userCode) || len(deviceCode) < 43 ||
		r.Body["verification_uri"] != ts.URL+"/console/device" ||
		r.Body["verification_uri_complete"] != ts.URL+"/console/device?user_code="+userCode ||
		r.Body["expires_in"] != float64(600) || r.Body["interval"] != float64(5) {
		t.Fatalf("device authorization reply %v", r.Body)
	}
	return deviceCode, userCode
}

func pollDevice(t *testing.T, ts *testServer, deviceCode string) deviceReply {
	t.Helper()
	return postForm(t, ts, "/oauth/token", url.Values{
		"grant_type": {identity.GrantDeviceCode}, "client_id": {identity.DeviceClientID}, "device_code": {deviceCode},
	})
}

func wantOAuth(t *testing.T, what string, r deviceReply, status int, code string) {
	t.Helper()
	if r.Status != status || r.Body["error"] != code {
		t.Fatalf("%s: %d %v, want %d %s", what, r.Status, r.Body, status, code)
	}
}

// deviceLoginAs runs the device flow approved by u and returns the bearer token it yields.
func deviceLoginAs(t *testing.T, ts *testServer, u store.User) string {
	t.Helper()
	deviceCode, userCode := startDevice(t, ts)
	approver := identityClient(ts, userToken(t, ts, u, u.Memberships[0].EnvID))
	if _, err := approver.ApproveDevice(context.Background(), connect.NewRequest(&identityv1.ApproveDeviceRequest{UserCode: userCode})); err != nil {
		t.Fatalf("approve: %v", err)
	}
	r := pollDevice(t, ts, deviceCode)
	tok, _ := r.Body["access_token"].(string)
	if r.Status != http.StatusOK || tok == "" || r.Body["token_type"] != "Bearer" {
		t.Fatalf("device token: %d %v", r.Status, r.Body)
	}
	return tok
}

func TestDeviceFlow(t *testing.T) { onBothStores(t, testDeviceFlow) }

func testDeviceFlow(t *testing.T, ts *testServer) {
	ctx := context.Background()
	adminToken := ts.adminToken(t)
	admin := identityClient(ts, adminToken)
	envID := ts.admin.Environment.ID
	jane := inviteUser(t, ts, admin, "jane@example.com", identity.RoleDeploymentsFullAccess)
	janeClient := identityClient(ts, userToken(t, ts, jane, envID))

	disc := decode[map[string]any](t, ts.do(t, "GET", "/.well-known/openid-configuration", "", nil).Body)
	if disc["device_authorization_endpoint"] != ts.URL+"/oauth/device_authorization" ||
		!slices.Contains(disc["grant_types_supported"].([]any), any(identity.GrantDeviceCode)) {
		t.Errorf("discovery: %v", disc)
	}

	t.Run("approved", func(t *testing.T) {
		deviceCode, userCode := startDevice(t, ts)
		wantOAuth(t, "first poll", pollDevice(t, ts, deviceCode), 400, "authorization_pending")
		wantOAuth(t, "poll at once again", pollDevice(t, ts, deviceCode), 400, "slow_down")
		ts.clock.Advance(6 * time.Second) // the interval is now 10 s
		wantOAuth(t, "poll after 6 s", pollDevice(t, ts, deviceCode), 400, "slow_down")
		ts.clock.Advance(15 * time.Second) // the interval is now 15 s
		wantOAuth(t, "poll after the interval", pollDevice(t, ts, deviceCode), 400, "authorization_pending")

		_, err := admin.ApproveDevice(ctx, connect.NewRequest(&identityv1.ApproveDeviceRequest{UserCode: userCode}))
		wantCode(t, "approve with a machine token", err, connect.CodePermissionDenied, "only a signed-in person")
		_, err = janeClient.ApproveDevice(ctx, connect.NewRequest(&identityv1.ApproveDeviceRequest{UserCode: userCode, EnvId: "other-env"}))
		wantCode(t, "approve for an environment one is not a member of", err, connect.CodeNotFound, "not a member")
		// People type codes in lower case, without the dash.
		typed := strings.ToLower(strings.ReplaceAll(userCode, "-", ""))
		if _, err := janeClient.ApproveDevice(ctx, connect.NewRequest(&identityv1.ApproveDeviceRequest{UserCode: typed})); err != nil {
			t.Fatalf("approve: %v", err)
		}
		_, err = janeClient.ApproveDevice(ctx, connect.NewRequest(&identityv1.ApproveDeviceRequest{UserCode: userCode}))
		wantCode(t, "approve twice", err, connect.CodeNotFound, "no sign-in is waiting for code "+userCode)

		r := pollDevice(t, ts, deviceCode)
		tok, _ := r.Body["access_token"].(string)
		if r.Status != 200 || tok == "" || r.Body["token_type"] != "Bearer" || r.Body["expires_in"] != float64(testTTL/time.Second) {
			t.Fatalf("token after approval: %d %v", r.Status, r.Body)
		}
		who, err := identityClient(ts, tok).WhoAmI(ctx, connect.NewRequest(&identityv1.WhoAmIRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if p := who.Msg.GetPrincipal(); p.GetType() != identityv1.PrincipalType_PRINCIPAL_TYPE_USER || p.GetSubject() != jane.ID || p.GetName() != "jane@example.com" || p.GetEnvId() != envID {
			t.Errorf("whoami with the device token: %v", p)
		}
		if envs := who.Msg.GetEnvironments(); len(envs) != 1 || envs[0].GetId() != envID {
			t.Errorf("whoami environments %v: want jane's one membership", envs)
		}
		ts.clock.Advance(time.Minute)
		wantOAuth(t, "the device code used twice", pollDevice(t, ts, deviceCode), 400, "invalid_grant")
	})

	t.Run("denied", func(t *testing.T) {
		deviceCode, userCode := startDevice(t, ts)
		if _, err := janeClient.ApproveDevice(ctx, connect.NewRequest(&identityv1.ApproveDeviceRequest{UserCode: userCode, Deny: true})); err != nil {
			t.Fatal(err)
		}
		wantOAuth(t, "poll after denial", pollDevice(t, ts, deviceCode), 400, "access_denied")
	})

	t.Run("expired", func(t *testing.T) {
		deviceCode, userCode := startDevice(t, ts)
		ts.clock.Advance(identity.DeviceCodeTTL + time.Second)
		wantOAuth(t, "poll after expiry", pollDevice(t, ts, deviceCode), 400, "expired_token")
		_, err := janeClient.ApproveDevice(ctx, connect.NewRequest(&identityv1.ApproveDeviceRequest{UserCode: userCode}))
		wantCode(t, "approve an expired code", err, connect.CodeNotFound, "no sign-in is waiting")
	})

	t.Run("bad input", func(t *testing.T) {
		wantOAuth(t, "unknown client", postForm(t, ts, "/oauth/device_authorization", url.Values{"client_id": {"someone"}}), 401, "invalid_client")
		wantOAuth(t, "unknown device code", pollDevice(t, ts, "no-such-code"), 400, "invalid_grant")
		wantOAuth(t, "device grant for another client", postForm(t, ts, "/oauth/token", url.Values{
			"grant_type": {identity.GrantDeviceCode}, "client_id": {"someone"}, "device_code": {"x"},
		}), 401, "invalid_client")
		_, err := janeClient.ApproveDevice(ctx, connect.NewRequest(&identityv1.ApproveDeviceRequest{UserCode: "AEIO-U015"}))
		wantCode(t, "a malformed code", err, connect.CodeInvalidArgument, "is not a code such as")
	})
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

// TestOnceUnderRace holds an invitation link and an approved device code to one use when
// several clients race for them.
func TestOnceUnderRace(t *testing.T) { onBothStores(t, testOnceUnderRace) }

func testOnceUnderRace(t *testing.T, ts *testServer) {
	ctx := context.Background()
	admin := identityClient(ts, ts.adminToken(t))
	anon := identityClient(ts, "")
	const racers = 4

	created, err := admin.CreateInvitation(ctx, connect.NewRequest(&identityv1.CreateInvitationRequest{
		Email: "race@example.com", Roles: []string{identity.RoleDeploymentsFullAccess},
	}))
	if err != nil {
		t.Fatal(err)
	}
	secret := inviteSecret(t, ts, created.Msg.GetUrl())
	errs := make(chan error, racers)
	for range racers {
		go func() {
			_, err := anon.AcceptInvitation(ctx, connect.NewRequest(&identityv1.AcceptInvitationRequest{Token: secret, Password: testPassword}))
			errs <- err
		}()
	}
	accepted := 0
	for range racers {
		if err := <-errs; err == nil {
			accepted++
		} else {
			wantCode(t, "a losing acceptance", err, connect.CodeNotFound, "This invitation link was already used or has expired.")
		}
	}
	if accepted != 1 {
		t.Fatalf("%d acceptances of one link succeeded, want 1", accepted)
	}

	u, err := ts.st.LookupUser(ctx, "race@example.com")
	if err != nil {
		t.Fatal(err)
	}
	deviceCode, userCode := startDevice(t, ts)
	approver := identityClient(ts, userToken(t, ts, u, ts.admin.Environment.ID))
	if _, err := approver.ApproveDevice(ctx, connect.NewRequest(&identityv1.ApproveDeviceRequest{UserCode: userCode})); err != nil {
		t.Fatal(err)
	}
	replies := make(chan deviceReply, racers)
	for range racers {
		go func() {
			resp, err := http.PostForm(ts.URL+"/oauth/token", url.Values{
				"grant_type": {identity.GrantDeviceCode}, "client_id": {identity.DeviceClientID}, "device_code": {deviceCode},
			})
			if err != nil {
				replies <- deviceReply{}
				return
			}
			defer resp.Body.Close()
			var body map[string]any
			_ = jsonDecode(resp, &body)
			replies <- deviceReply{Status: resp.StatusCode, Body: body}
		}()
	}
	tokens := 0
	for range racers {
		switch r := <-replies; {
		case r.Status == http.StatusOK:
			tokens++
		case r.Status != http.StatusBadRequest || r.Body["error"] != "invalid_grant":
			t.Errorf("a losing poll: %d %v, want 400 invalid_grant", r.Status, r.Body)
		}
	}
	if tokens != 1 {
		t.Fatalf("%d polls of one approved device code got a token, want 1", tokens)
	}
}

func TestChangePassword(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	ctx := context.Background()
	admin := identityClient(ts, ts.adminToken(t))
	jane := inviteUser(t, ts, admin, "jane@example.com", identity.RoleDeploymentsFullAccess)
	janeClient := identityClient(ts, userToken(t, ts, jane, ts.admin.Environment.ID))
	const newPassword = "a brand new passphrase"

	_, err := janeClient.ChangePassword(ctx, connect.NewRequest(&identityv1.ChangePasswordRequest{CurrentPassword: "correct horse battery", NewPassword: "short"}))
	wantCode(t, "a short new password", err, connect.CodeInvalidArgument, "new_password")
	_, err = janeClient.ChangePassword(ctx, connect.NewRequest(&identityv1.ChangePasswordRequest{CurrentPassword: "not my password", NewPassword: newPassword}))
	wantCode(t, "a wrong current password", err, connect.CodeInvalidArgument, "currentPassword: is wrong")
	if _, err := janeClient.ChangePassword(ctx, connect.NewRequest(&identityv1.ChangePasswordRequest{CurrentPassword: "correct horse battery", NewPassword: newPassword})); err != nil {
		t.Fatalf("change password: %v", err)
	}
	// The bearer token that changed it (as a 'sortie login' holds) was issued before the
	// change, so it ends with it.
	_, err = janeClient.WhoAmI(ctx, connect.NewRequest(&identityv1.WhoAmIRequest{}))
	wantCode(t, "a bearer token issued before the change", err, connect.CodeUnauthenticated, "issued before the password changed")
	c := newConsole(t, ts)
	_, challenge := pkcePair()
	if resp, body := c.submit(c.openSignIn(challenge), "jane@example.com", newPassword); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-in with the new password: %d %s", resp.StatusCode, body)
	}
	if resp, _ := c.submit(c.openSignIn(challenge), "jane@example.com", "correct horse battery"); resp.StatusCode == http.StatusSeeOther {
		t.Error("the old password still signs in")
	}
}
