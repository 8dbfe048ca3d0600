// Package store persists Sortie's state behind small interfaces, one per aggregate.
//
// Two implementations exist and pass one conformance suite (storetest): the embedded
// single-file store (boltstore, the default for one process) and Redis (redisstore, shared by
// many server replicas). Every tenant-owned record is addressed by its Tenant, so a caller can
// never reach another tenant's data by id alone.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors every implementation returns (wrapped) for expected conditions.
var (
	// ErrNotFound means the record does not exist in the addressed tenant.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a record with the same identity already exists.
	ErrConflict = errors.New("already exists")
	// ErrUnavailable means the backing store cannot be reached right now; callers answer 503
	// and retry later.
	ErrUnavailable = errors.New("store unavailable")
)

// Tenant is an organization plus one of its environments: the unit of isolation.
type Tenant struct {
	OrgID string
	EnvID string
}

// String renders the tenant as "org/env" for logs and keys.
func (t Tenant) String() string { return t.OrgID + "/" + t.EnvID }

// Organization is the top-level owner of environments.
type Organization struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

// Environment belongs to one organization; with it, it forms a Tenant.
type Environment struct {
	ID        string
	OrgID     string
	Name      string // unique within the organization
	CreatedAt time.Time
}

// Tenant returns the tenant this environment forms.
func (e Environment) Tenant() Tenant { return Tenant{OrgID: e.OrgID, EnvID: e.ID} }

// Credential is a machine credential bound to one environment. The secret itself is never
// stored: only SecretHash, a keyed hash computed by the identity package.
type Credential struct {
	ClientID   string
	Tenant     Tenant
	Name       string
	SecretHash []byte
	Roles      []string
	CreatedAt  time.Time
}

// SigningKey is one token-signing key pair. The private half is stored encrypted.
type SigningKey struct {
	ID               string // the JWT "kid"
	Algorithm        string // "ES256"
	PublicKeyDER     []byte // PKIX
	EncryptedPrivate []byte // AES-256-GCM sealed PKCS#8
	CreatedAt        time.Time
	SignUntil        time.Time // a newer key takes over signing after this
	RetainUntil      time.Time // the public key may be dropped after this
}

// Organizations stores organizations.
type Organizations interface {
	// CreateOrganization stores o; ErrConflict if o.ID exists.
	CreateOrganization(ctx context.Context, o Organization) error
	// GetOrganization returns the organization or ErrNotFound.
	GetOrganization(ctx context.Context, id string) (Organization, error)
}

// Environments stores the environments of organizations.
type Environments interface {
	// CreateEnvironment stores e; ErrConflict if its ID or its Name already exists in the
	// organization.
	CreateEnvironment(ctx context.Context, e Environment) error
	// GetEnvironment returns the environment of that organization or ErrNotFound.
	GetEnvironment(ctx context.Context, orgID, envID string) (Environment, error)
	// ListEnvironments returns the organization's environments ordered by Name.
	ListEnvironments(ctx context.Context, orgID string) ([]Environment, error)
}

// Credentials stores machine credentials per tenant.
type Credentials interface {
	// CreateCredential stores c; ErrConflict if c.ClientID exists in any tenant.
	CreateCredential(ctx context.Context, c Credential) error
	// GetCredential returns the credential of that tenant or ErrNotFound (also when the
	// client id belongs to another tenant).
	GetCredential(ctx context.Context, t Tenant, clientID string) (Credential, error)
	// LookupCredential finds a credential by client id in any tenant; only the token
	// endpoint, which learns the tenant from the credential, uses it.
	LookupCredential(ctx context.Context, clientID string) (Credential, error)
	// ListCredentials returns the tenant's credentials ordered by CreatedAt, then ClientID.
	ListCredentials(ctx context.Context, t Tenant) ([]Credential, error)
	// DeleteCredential removes the credential or returns ErrNotFound.
	DeleteCredential(ctx context.Context, t Tenant, clientID string) error
	// SetCredentialRoles replaces the credential's roles and returns the updated credential,
	// or ErrNotFound.
	SetCredentialRoles(ctx context.Context, t Tenant, clientID string, roles []string) (Credential, error)
}

// SigningKeys stores the token-signing keys, which are global to the server.
type SigningKeys interface {
	// PutSigningKey stores k; ErrConflict if k.ID exists.
	PutSigningKey(ctx context.Context, k SigningKey) error
	// ListSigningKeys returns every stored key ordered by CreatedAt.
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	// DeleteSigningKey removes the key; deleting a missing key is not an error.
	DeleteSigningKey(ctx context.Context, id string) error
}

// Settings stores small server-wide values, such as the bootstrap marker.
type Settings interface {
	// SetSettingIfAbsent stores value under key unless the key exists, and reports whether
	// it stored it. Exactly one of several concurrent callers wins.
	SetSettingIfAbsent(ctx context.Context, key string, value []byte) (bool, error)
	// GetSetting returns the value or ErrNotFound.
	GetSetting(ctx context.Context, key string) ([]byte, error)
}

// Store is every aggregate store plus its lifecycle.
type Store interface {
	Organizations
	Environments
	Credentials
	SigningKeys
	Settings
	// Ping reports whether the store is reachable (ErrUnavailable if not).
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}
