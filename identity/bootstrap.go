package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/uuid"

	"github.com/sortie-dev/sortie/store"
)

// bootstrapSetting marks a store that has been bootstrapped.
const bootstrapSetting = "bootstrap"

// BootstrapResult tells what Bootstrap did.
type BootstrapResult struct {
	// Created is true on the first start, when the admin credential was made.
	Created bool
	// Path is where the admin credential file is (or was written, by the first start).
	Path string
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
}

// Bootstrap prepares an empty store: organization "default", environment "default" and an
// admin credential with the Organization Admin role, whose secret is written once to path
// (mode 0600). On a store bootstrapped before it changes nothing. Of several replicas
// starting together on one Redis, exactly one bootstraps.
func (s *Service) Bootstrap(ctx context.Context, path string) (BootstrapResult, error) {
	won, err := s.st.SetSettingIfAbsent(ctx, bootstrapSetting, []byte(s.now().UTC().Format("2006-01-02T15:04:05Z07:00")))
	if err != nil {
		return BootstrapResult{}, fmt.Errorf("bootstrap: %w", err)
	}
	if !won {
		return BootstrapResult{Path: path}, nil
	}
	created, err := s.CreateOrganization(ctx, "default")
	if err != nil {
		return BootstrapResult{}, fmt.Errorf("bootstrap: %w", err)
	}
	org, env, cred, secret := created.Organization, created.Environment, created.Admin, created.Secret
	admin := AdminCredential{
		ClientID: cred.ClientID, ClientSecret: secret, OrgID: org.ID, EnvID: env.ID,
		TokenEndpoint: s.issuer + "/oauth/token", Audience: s.audiences[0],
	}
	data, err := json.MarshalIndent(admin, "", "  ")
	if err != nil {
		return BootstrapResult{}, err
	}
	if err := writePrivateFile(path, append(data, '\n')); err != nil {
		return BootstrapResult{}, fmt.Errorf("bootstrap: write %s: %w", path, err)
	}
	return BootstrapResult{Created: true, Path: path, Admin: admin}, nil
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

// writePrivateFile writes data to path readable by the owner only.
func writePrivateFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
