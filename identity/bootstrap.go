package identity

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/sortie-dev/sortie/store"
)

// bootstrapSetting marks a store that has been bootstrapped.
const bootstrapSetting = "bootstrap"

// BootstrapResult tells what Bootstrap did.
type BootstrapResult struct {
	// Created is true on the first start, when the admin credential was made.
	Created bool
	// Path is where the admin credential file is: where this start wrote it, or where the
	// first start (perhaps another replica, on another machine) did; empty when a store
	// bootstrapped by an older version did not record it.
	Path string
	// Host is the machine the first start ran on (Config.Host), when it recorded one.
	Host string
	// Admin is the admin credential file's content; set only when Created.
	Admin AdminCredential
}

// AdminCredential is the content of admin-credentials.json.
type AdminCredential struct {
	ClientID      string `json:"clientId"`
	ClientSecret  string `json:"clientSecret"`
	OrgID         string `json:"orgId"`
	EnvID         string `json:"envId"`
	TokenEndpoint string `json:"tokenEndpoint"`
	Audience      string `json:"audience"`
	// AdminLogin and AdminPassword sign the admin user in to the console.
	AdminLogin    string `json:"adminLogin"`
	AdminPassword string `json:"adminPassword"`
}

// AdminLogin is the login of the user Bootstrap creates.
const AdminLogin = "admin"

// Bootstrap prepares an empty store: organization "default", environment "default", an
// admin credential with the Organization Admin role and the local user "admin" with that role
// there and a generated password; the secret and the password are written once to path
// (mode 0600). On a store bootstrapped before it changes nothing. Of several replicas
// starting together on one Redis, exactly one bootstraps and the others wait for it. A first
// start that died half-way is reported, never silently taken as done.
func (s *Service) Bootstrap(ctx context.Context, path string) (BootstrapResult, error) {
	won, err := s.st.SetSettingIfAbsent(ctx, bootstrapSetting, []byte(s.now().UTC().Format(time.RFC3339)))
	if err != nil {
		return BootstrapResult{}, fmt.Errorf("bootstrap: %w", err)
	}
	if !won {
		done, err := s.waitBootstrapped(ctx)
		if err != nil {
			return BootstrapResult{}, err
		}
		if err := s.rememberBootstrap(ctx); err != nil {
			return BootstrapResult{}, err
		}
		return BootstrapResult{Path: done.Path, Host: done.Host}, nil
	}
	created, err := s.CreateOrganization(ctx, "default")
	if err != nil {
		return BootstrapResult{}, fmt.Errorf("bootstrap: %w", err)
	}
	password := generatedPassword()
	if _, err := s.CreateLocalUser(ctx, NewLocalUser{
		OrgID: created.Organization.ID, Login: AdminLogin, Name: "Administrator", Password: password,
		Memberships: []store.Membership{{EnvID: created.Environment.ID, Roles: []string{RoleOrganizationAdmin}}},
	}); err != nil {
		return BootstrapResult{}, fmt.Errorf("bootstrap: create the admin user: %w", err)
	}
	admin := AdminCredential{
		ClientID: created.Admin.ClientID, ClientSecret: created.Secret,
		OrgID: created.Organization.ID, EnvID: created.Environment.ID,
		TokenEndpoint: s.issuer + "/oauth/token", Audience: s.audiences[0],
		AdminLogin: AdminLogin, AdminPassword: password,
	}
	data, err := json.MarshalIndent(admin, "", "  ")
	if err != nil {
		return BootstrapResult{}, err
	}
	if err := writePrivateFile(path, append(data, '\n')); err != nil {
		return BootstrapResult{}, fmt.Errorf("bootstrap: save the admin credential: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	done, err := json.Marshal(bootstrapDone{ClientID: created.Admin.ClientID, Path: abs, Host: s.host, OrgID: created.Organization.ID})
	if err != nil {
		return BootstrapResult{}, err
	}
	if _, err := s.st.SetSettingIfAbsent(ctx, bootstrapDoneSetting, done); err != nil {
		return BootstrapResult{}, fmt.Errorf("bootstrap: %w", err)
	}
	if err := s.rememberBootstrap(ctx); err != nil {
		return BootstrapResult{}, err
	}
	return BootstrapResult{Created: true, Path: path, Host: s.host, Admin: admin}, nil
}

// bootstrapDoneSetting is set once the admin credential has been saved, to a bootstrapDone
// (older versions stored the bare client id).
const bootstrapDoneSetting = "bootstrap-done"

// bootstrapDone records where the first start saved the admin credential, so that every
// later start, on any replica, can say where it really is.
type bootstrapDone struct {
	ClientID string `json:"clientId"`
	Path     string `json:"path"`
	Host     string `json:"host,omitempty"`
	OrgID    string `json:"orgId,omitempty"` // the bootstrap organization (single sign-on creates users there)
}

// defaultBootstrapWait is how long a replica waits for another one's bootstrap.
const defaultBootstrapWait = 15 * time.Second

// ErrBootstrapIncomplete means an earlier first start stopped before it saved the admin
// credential.
var ErrBootstrapIncomplete = errors.New("an earlier first start stopped before it saved the admin credential; " +
	"start over with an empty store (a new --data-dir, or an empty Redis database)")

func (s *Service) waitBootstrapped(ctx context.Context) (bootstrapDone, error) {
	deadline := time.Now().Add(s.bootstrapWait)
	for {
		raw, err := s.st.GetSetting(ctx, bootstrapDoneSetting)
		switch {
		case err == nil:
			var done bootstrapDone
			if json.Unmarshal(raw, &done) != nil {
				done = bootstrapDone{ClientID: string(raw)} // an older version's record
			}
			return done, nil
		case !errors.Is(err, store.ErrNotFound):
			return bootstrapDone{}, fmt.Errorf("bootstrap: %w", err)
		case time.Now().After(deadline):
			return bootstrapDone{}, ErrBootstrapIncomplete
		}
		select {
		case <-ctx.Done():
			return bootstrapDone{}, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// NewOrganization is a created organization with its first environment, named "default", and
// an Organization Admin credential in it.
type NewOrganization struct {
	Organization store.Organization
	Environment  store.Environment
	Admin        store.Credential
	Secret       string
}

// CreateOrganization creates an organization, its "default" environment and an admin
// credential. No API offers it: the first start calls it through Bootstrap, and operators
// of several organizations call it from Go.
func (s *Service) CreateOrganization(ctx context.Context, name string) (NewOrganization, error) {
	org := store.Organization{ID: uuid.NewString(), Name: name, CreatedAt: s.now().UTC()}
	if err := s.st.CreateOrganization(ctx, org); err != nil {
		return NewOrganization{}, fmt.Errorf("organization %q: %w", name, err)
	}
	env := store.Environment{ID: uuid.NewString(), OrgID: org.ID, Name: "default", CreatedAt: s.now().UTC()}
	if err := s.st.CreateEnvironment(ctx, env); err != nil {
		return NewOrganization{}, fmt.Errorf("environment of organization %q: %w", name, err)
	}
	cred, secret, err := s.createCredential(ctx, env.Tenant(), "admin", []string{RoleOrganizationAdmin})
	if err != nil {
		return NewOrganization{}, fmt.Errorf("admin credential of organization %q: %w", name, err)
	}
	return NewOrganization{Organization: org, Environment: env, Admin: cred, Secret: secret}, nil
}

// generatedPassword returns a random password of 24 characters (144 bits), easy to copy.
func generatedPassword() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// writePrivateFile writes data to path, readable by the owner only, atomically: a crash
// leaves either no file or the whole file.
func writePrivateFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".admin-credentials-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
