package identity_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
)

func TestBootstrap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
	}{
		{
			name: "new file in a new directory",
		},
		{
			name: "stale file with a wider mode is replaced",
			prepare: func(t *testing.T, path string) {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte("stale content that is longer than nothing"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newEmptyFixture(t)
			path := filepath.Join(t.TempDir(), "secrets", "admin-credentials.json")
			if tt.prepare != nil {
				tt.prepare(t, path)
			}

			res, err := fx.svc.Bootstrap(t.Context(), path)
			if err != nil {
				t.Fatalf("Bootstrap: %v", err)
			}
			admin := res.Admin
			if admin.ClientID == "" || admin.ClientSecret == "" || admin.OrgID == "" || admin.EnvID == "" || len(admin.AdminPassword) < identity.MinPasswordLength {
				t.Fatalf("Bootstrap returned an incomplete admin credential: %+v", admin)
			}
			want := identity.BootstrapResult{Created: true, Path: path, Admin: identity.AdminCredential{
				ClientID: admin.ClientID, ClientSecret: admin.ClientSecret, OrgID: admin.OrgID, EnvID: admin.EnvID,
				TokenEndpoint: testIssuer + "/oauth/token", Audience: testAudience,
				AdminLogin: "admin", AdminPassword: admin.AdminPassword,
			}}
			if diff := cmp.Diff(want, res); diff != "" {
				t.Errorf("Bootstrap result mismatch (-want +got):\n%s", diff)
			}

			// The file, as the operator reads it.
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := info.Mode().Perm(); got != 0o600 {
				t.Errorf("credential file mode = %v, want 0600", got)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var file map[string]string
			if err := json.Unmarshal(data, &file); err != nil {
				t.Fatalf("credential file is not a JSON object of strings: %v\n%s", err, data)
			}
			wantFile := map[string]string{
				"clientId": admin.ClientID, "clientSecret": admin.ClientSecret, "orgId": admin.OrgID, "envId": admin.EnvID,
				"tokenEndpoint": testIssuer + "/oauth/token", "audience": testAudience,
				"adminLogin": "admin", "adminPassword": admin.AdminPassword,
			}
			if diff := cmp.Diff(wantFile, file); diff != "" {
				t.Errorf("credential file mismatch (-want +got):\n%s", diff)
			}

			// What the store holds.
			org, err := fx.st.GetOrganization(t.Context(), admin.OrgID)
			if err != nil || org.Name != "default" {
				t.Errorf("GetOrganization = %+v, %v; want the organization \"default\"", org, err)
			}
			envs, err := fx.st.ListEnvironments(t.Context(), admin.OrgID)
			if err != nil {
				t.Fatal(err)
			}
			if len(envs) != 1 || envs[0].ID != admin.EnvID || envs[0].Name != "default" {
				t.Errorf("environments = %+v, want only %q named \"default\"", envs, admin.EnvID)
			}
			creds, err := fx.st.ListCredentials(t.Context(), store.Tenant{OrgID: admin.OrgID, EnvID: admin.EnvID})
			if err != nil {
				t.Fatal(err)
			}
			if len(creds) != 1 {
				t.Fatalf("credentials = %+v, want one", creds)
			}
			if diff := cmp.Diff([]string{identity.RoleOrganizationAdmin}, creds[0].Roles); creds[0].ClientID != admin.ClientID || diff != "" {
				t.Errorf("credential %s has roles %v, want %s with roles mismatch (-want +got):\n%s", creds[0].ClientID, creds[0].Roles, admin.ClientID, diff)
			}
			if bytes.Contains(creds[0].SecretHash, []byte(admin.ClientSecret)) {
				t.Error("the store holds the client secret in clear")
			}

			// The admin user: Organization Admin of the default environment, with the password
			// of the file (hashed, never in clear).
			u, err := fx.svc.CheckPassword(t.Context(), file["adminLogin"], file["adminPassword"], testAddr)
			if err != nil {
				t.Fatalf("CheckPassword with the bootstrap admin password: %v", err)
			}
			wantMembers := []store.Membership{{EnvID: admin.EnvID, Roles: []string{identity.RoleOrganizationAdmin}}}
			if diff := cmp.Diff(wantMembers, u.Memberships); u.OrgID != admin.OrgID || u.Login != "admin" || diff != "" {
				t.Errorf("admin user = %s in %s, memberships mismatch (-want +got):\n%s", u.Login, u.OrgID, diff)
			}
			if !strings.HasPrefix(u.PasswordHash, "$argon2id$") || strings.Contains(u.PasswordHash, admin.AdminPassword) {
				t.Errorf("admin password hash %q is not an argon2id hash of the password", u.PasswordHash)
			}

			// The secret in the file works at the token endpoint.
			resp, oerr := fx.svc.Token(t.Context(), identity.TokenRequest{GrantType: identity.GrantClientCredentials,
				ClientID: file["clientId"], ClientSecret: file["clientSecret"], Audience: file["audience"]}, testAddr)
			if oerr != nil {
				t.Fatalf("Token with the bootstrap credential: %v", oerr)
			}
			got, err := fx.svc.Verifier().Verify(t.Context(), resp.AccessToken)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			wantPrincipal := identity.Principal{
				Type: identity.PrincipalMachine, Subject: admin.ClientID, Name: "admin",
				OrgID: admin.OrgID, OrgName: "default", EnvID: admin.EnvID,
				Roles: []string{identity.RoleOrganizationAdmin}, Scopes: allScopes, ExpiresAt: t0.Add(testTTL), IssuedAt: t0,
			}
			if diff := cmp.Diff(wantPrincipal, got, equateEmpty); diff != "" {
				t.Errorf("principal mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBootstrapAgain(t *testing.T) {
	t.Parallel()
	const edited = "the operator moved the secret to a vault\n"
	tests := []struct {
		name string
		// again returns the service that bootstraps the second time.
		again func(t *testing.T, fx *fixture) *identity.Service
		// edit changes the file between the two calls; nil leaves it.
		edit       func(t *testing.T, path string)
		wantFile   string // "" means the file of the first call
		wantAbsent bool
	}{
		{
			name:  "same service",
			again: func(t *testing.T, fx *fixture) *identity.Service { return fx.svc },
		},
		{
			name: "new service on the same store",
			again: func(t *testing.T, fx *fixture) *identity.Service {
				return newService(t, fx.st, fx.config())
			},
		},
		{
			name: "new service after reopening the store file",
			again: func(t *testing.T, fx *fixture) *identity.Service {
				if err := fx.st.Close(); err != nil {
					t.Fatal(err)
				}
				return newService(t, openStore(t, fx.path), fx.config())
			},
		},
		{
			name:  "edited file is left alone",
			again: func(t *testing.T, fx *fixture) *identity.Service { return newService(t, fx.st, fx.config()) },
			edit: func(t *testing.T, path string) {
				if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantFile: edited,
		},
		{
			name:  "deleted file is not recreated",
			again: func(t *testing.T, fx *fixture) *identity.Service { return newService(t, fx.st, fx.config()) },
			edit: func(t *testing.T, path string) {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			},
			wantAbsent: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newEmptyFixture(t)
			path := filepath.Join(t.TempDir(), "admin-credentials.json")
			if _, err := fx.svc.Bootstrap(t.Context(), path); err != nil {
				t.Fatalf("first Bootstrap: %v", err)
			}
			first, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			wantFile := string(first)
			if tt.wantFile != "" {
				wantFile = tt.wantFile
			}
			if tt.edit != nil {
				tt.edit(t, path)
			}
			svc := tt.again(t, fx)
			fx.clock.Advance(testTTL)

			res, err := svc.Bootstrap(t.Context(), path)
			if err != nil {
				t.Fatalf("second Bootstrap: %v", err)
			}
			if diff := cmp.Diff(identity.BootstrapResult{Path: path}, res); diff != "" {
				t.Errorf("second Bootstrap result mismatch (-want +got):\n%s", diff)
			}
			data, err := os.ReadFile(path)
			if tt.wantAbsent {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("credential file after the second Bootstrap: %v, want it still absent", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantFile, string(data)); diff != "" {
				t.Errorf("second Bootstrap changed the credential file (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBootstrapConcurrent(t *testing.T) {
	t.Parallel()
	const callers = 8
	fx := newEmptyFixture(t)
	dir := t.TempDir()
	results := make([]identity.BootstrapResult, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			results[i], errs[i] = fx.svc.Bootstrap(t.Context(), filepath.Join(dir, string(rune('a'+i))+".json"))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	var created []string
	for _, r := range results {
		if r.Created {
			created = append(created, filepath.Base(r.Path))
		}
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var written []string
	for _, f := range files {
		written = append(written, f.Name())
	}
	if len(created) != 1 {
		t.Fatalf("%d of %d concurrent Bootstraps created the admin, want exactly 1", len(created), callers)
	}
	if diff := cmp.Diff(created, written); diff != "" {
		t.Errorf("written credential files mismatch (-want +got):\n%s", diff)
	}
}

func TestBootstrapIncomplete(t *testing.T) {
	t.Parallel()
	fx := newEmptyFixture(t)
	dir := t.TempDir()
	// A regular file where the credential's directory should be makes the first start fail
	// after it has claimed the bootstrap.
	blocker := filepath.Join(dir, "not-a-directory")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.svc.Bootstrap(t.Context(), filepath.Join(blocker, "admin-credentials.json")); err == nil {
		t.Fatal("Bootstrap into an unwritable path succeeded, want an error")
	}

	path := filepath.Join(dir, "admin-credentials.json")
	cfg := fx.config()
	cfg.BootstrapWait = 300 * time.Millisecond
	res, err := newService(t, fx.st, cfg).Bootstrap(t.Context(), path)
	if !errors.Is(err, identity.ErrBootstrapIncomplete) {
		t.Errorf("Bootstrap after a failed first start: error = %v, want ErrBootstrapIncomplete", err)
	}
	if res.Created {
		t.Error("Bootstrap after a failed first start reports Created")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("credential file after the second Bootstrap: %v, want none", err)
	}
}

// TestBootstrapOtherReplica: a replica starting after another one bootstrapped the store
// learns where the admin credential really is (the other's machine and path), and writes no
// file of its own.
func TestBootstrapOtherReplica(t *testing.T) {
	t.Parallel()
	fx := newEmptyFixture(t)
	cfgA, cfgB := fx.config(), fx.config()
	cfgA.Host, cfgB.Host = "node-a", "node-b"
	first := filepath.Join(t.TempDir(), "admin-credentials.json")
	if _, err := newService(t, fx.st, cfgA).Bootstrap(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(t.TempDir(), "admin-credentials.json")
	res, err := newService(t, fx.st, cfgB).Bootstrap(t.Context(), mine)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(identity.BootstrapResult{Path: first, Host: "node-a"}, res); diff != "" {
		t.Errorf("second replica's result (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(mine); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the second replica wrote %s: %v", mine, err)
	}
}

// TestBootstrapOlderRecord: a store bootstrapped by a version that did not record where the
// credential went says so (no path) instead of pointing at a file that was never written.
func TestBootstrapOlderRecord(t *testing.T) {
	t.Parallel()
	fx := newEmptyFixture(t)
	for key, value := range map[string]string{"bootstrap": "2030-01-02T03:04:05Z", "bootstrap-done": "someclientid"} {
		if _, err := fx.st.SetSettingIfAbsent(t.Context(), key, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := fx.svc.Bootstrap(t.Context(), filepath.Join(t.TempDir(), "admin-credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(identity.BootstrapResult{}, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
}
