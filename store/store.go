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
	// SignFrom is when the key starts signing: later than CreatedAt by a publication lead, so
	// every replica publishes the key before any signs with it. Zero means CreatedAt.
	SignFrom    time.Time
	SignUntil   time.Time // a newer key takes over signing after this
	RetainUntil time.Time // the public key may be dropped after this
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
	// CreateCredential stores c; ErrConflict if c.ClientID exists in any tenant or c.Name
	// exists in c's tenant. The name check and the insert are one atomic step, so of two
	// concurrent creations of one name (on any replica) exactly one succeeds.
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
	Pipelines
	Leases
	Users
	Tickets
	// Ping reports whether the store is reachable (ErrUnavailable if not).
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

// Pipeline statuses the store reasons about (the one status enum of api.md section 4). The store
// treats a pipeline as active while its status is not terminal: it is in progress (NOT_STARTED,
// RUNNING, PAUSED, AWAITING_APPROVAL) or waiting in line (QUEUED).
const (
	StatusNotStarted       = "NOT_STARTED"
	StatusQueued           = "QUEUED"
	StatusRunning          = "RUNNING"
	StatusPaused           = "PAUSED"
	StatusAwaitingApproval = "AWAITING_APPROVAL"
	StatusSucceeded        = "SUCCEEDED"
	StatusFailed           = "FAILED"
	StatusCancelled        = "CANCELLED"
	StatusRejected         = "REJECTED"
)

// TerminalStatus reports whether a pipeline in status s is finished.
func TerminalStatus(s string) bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusCancelled, StatusRejected:
		return true
	}
	return false
}

// Pipeline is one deployment pipeline of a tenant. The store indexes it by tenant, by
// application and by status; State and Sealed are the engine's, stored as given.
type Pipeline struct {
	ID          string
	Tenant      Tenant
	Application string
	Status      string
	// BlockedBy is the id of the pipeline a QUEUED pipeline waits for, or of the newer
	// pipeline that replaced a REJECTED one.
	BlockedBy string
	// Revision increases by one on every write; updates are conditioned on it.
	Revision    int64
	CreatedAt   time.Time
	UpdatedAt   time.Time
	CompletedAt time.Time // zero while active
	// State is the engine's plain state (targets, steps, decisions), JSON it owns.
	State []byte
	// Sealed is the engine's encrypted part (config, manifests, context).
	Sealed []byte
}

// PipelineEvent is one entry of a pipeline's append-only history.
type PipelineEvent struct {
	Seq  int64 // 1, 2, 3... per pipeline, assigned by the store in append order
	Time time.Time
	// Type names the event (for example "target.status", "approval", "apply").
	Type string
	// Data is the engine's JSON payload.
	Data []byte
}

// Event types the store itself appends to a pipeline's history (the engine's own events keep
// whatever types it gives them). Their Data is empty: the pipeline's BlockedBy names the other
// pipeline.
const (
	// EventQueued is appended after the caller's events when CreatePipeline queues the new
	// pipeline behind an in-progress one.
	EventQueued = "pipeline.queued"
	// EventReplaced is appended to the older QUEUED pipeline that CreatePipeline marks REJECTED.
	EventReplaced = "pipeline.replaced"
)

// InProgressRule says what CreatePipeline does when the application already has an active
// pipeline.
type InProgressRule int

// InProgressRule values (deploymentConfig.ifDeploymentInProgress.strategy).
const (
	// RejectInProgress refuses the new pipeline with ErrInProgress.
	RejectInProgress InProgressRule = iota
	// EnqueueOne stores the new pipeline as QUEUED behind the in-progress one; an older
	// QUEUED pipeline of the application becomes REJECTED (BlockedBy = the new one).
	EnqueueOne
)

// ErrInProgress means the application has an active pipeline and the rule refused a new one.
// The error returned is an *InProgressError naming it.
var ErrInProgress = errors.New("a pipeline of this application is in progress")

// InProgressError is ErrInProgress with the id of the blocking pipeline.
type InProgressError struct{ PipelineID string }

func (e *InProgressError) Error() string {
	return "pipeline " + e.PipelineID + " of this application is still in progress"
}

// Is makes errors.Is(err, ErrInProgress) true.
func (e *InProgressError) Is(target error) bool { return target == ErrInProgress }

// ErrStale means a conditional write lost: the record's revision moved on, or the fencing
// token is no longer the current lease's. The caller re-reads and decides again.
var ErrStale = errors.New("stale write")

// CreateResult says what CreatePipeline stored.
type CreateResult struct {
	// Pipeline is the stored pipeline (Revision 1; Status QUEUED and BlockedBy set when it
	// was queued behind an in-progress one).
	Pipeline Pipeline
	// Replaced is the older QUEUED pipeline that became REJECTED, if any (its new revision).
	Replaced *Pipeline
}

// PipelineFilter selects pipelines of a tenant for ListPipelines.
type PipelineFilter struct {
	Application string   // "" = every application
	Statuses    []string // empty = every status
	// After is the paging cursor: the NextCursor of the previous page ("" = first page).
	After string
	Limit int // page size; 0 or more than 500 means 500
}

// PipelineRef names one pipeline in one tenant.
type PipelineRef struct {
	Tenant Tenant
	ID     string
}

// Pipelines stores pipelines with their event history.
type Pipelines interface {
	// CreatePipeline stores p (its Revision, Status for queueing and BlockedBy are set by the
	// store) together with events, applying rule against the application's active pipelines
	// in one atomic operation: with no active pipeline p is stored with the status it has;
	// otherwise RejectInProgress returns an *InProgressError (nothing stored), and EnqueueOne
	// stores p as QUEUED behind the in-progress one and marks an older QUEUED one REJECTED.
	// ErrConflict if p.ID exists.
	//
	// "In progress" is an active pipeline that is not QUEUED; when the application has several,
	// the oldest blocks. With only a QUEUED one left (its blocker finished and the engine has not
	// started it yet), that one blocks a RejectInProgress pipeline, and under EnqueueOne the new
	// pipeline replaces it and inherits its BlockedBy. Events get Seq 1, 2, ... in order
	// (their Seq is ignored); EventQueued and EventReplaced record what the rule did, at
	// p.CreatedAt, which is also the replaced pipeline's UpdatedAt and CompletedAt.
	//
	// p must have an ID, Tenant, Application and a known Status; CompletedAt must be set
	// exactly when Status is terminal. Every event needs a Type. Bad input is refused with an
	// error that is none of the sentinels, and nothing is stored.
	CreatePipeline(ctx context.Context, p Pipeline, rule InProgressRule, events []PipelineEvent) (CreateResult, error)
	// GetPipeline returns the pipeline of that tenant or ErrNotFound (also for another
	// tenant's id).
	GetPipeline(ctx context.Context, t Tenant, id string) (Pipeline, error)
	// UpdatePipeline replaces the pipeline's Status, BlockedBy, UpdatedAt, CompletedAt, State
	// and Sealed and appends events, atomically, if its stored Revision is p.Revision and, when
	// fence is not nil, the pipeline's current lease is fence (same holder and token, not
	// expired). It returns the pipeline with its new Revision, ErrStale when a condition
	// failed, ErrNotFound when it does not exist. Application, CreatedAt and ID never change.
	//
	// The lease is judged against the stored lease, not fence's copy: holder and token must
	// match and the stored ExpiresAt must be after the calling process's clock (time.Now) at
	// the write, the same clock AcquireLease's callers pass as now. A fence for another
	// pipeline is refused. The same input checks as CreatePipeline apply, and a finished
	// (terminal) pipeline cannot become active again.
	UpdatePipeline(ctx context.Context, p Pipeline, fence *Lease, events []PipelineEvent) (Pipeline, error)
	// ListPipelines returns a page of the tenant's pipelines matching f, newest first
	// (CreatedAt descending, then ID ascending), and the cursor of the next page ("" when none
	// is left). A cursor stays valid while pipelines are added or change status: the next page
	// starts after the last one returned. An unknown status or a cursor ListPipelines did not
	// return is refused with an error that is none of the sentinels.
	ListPipelines(ctx context.Context, t Tenant, f PipelineFilter) ([]Pipeline, string, error)
	// ListActivePipelines returns every active (non-terminal) pipeline of every tenant, for
	// the engine's scan that picks up unowned work.
	ListActivePipelines(ctx context.Context) ([]PipelineRef, error)
	// QueuedPipeline returns the application's QUEUED pipeline, or ErrNotFound.
	QueuedPipeline(ctx context.Context, t Tenant, application string) (Pipeline, error)
	// ListPipelineEvents returns the pipeline's events with Seq > afterSeq in order, at most
	// limit (0 = all).
	ListPipelineEvents(ctx context.Context, t Tenant, id string, afterSeq int64, limit int) ([]PipelineEvent, error)
	// DeletePipelinesCompletedBefore removes terminal pipelines (and their events, lease,
	// fencing counter and index entries) completed before cutoff and returns how many it
	// removed: the retention prune.
	DeletePipelinesCompletedBefore(ctx context.Context, cutoff time.Time) (int, error)
}

// Lease is the right of one holder (a server replica) to drive one pipeline until
// ExpiresAt. Token is the fencing token: it increases every time the lease changes hands.
type Lease struct {
	Pipeline  PipelineRef
	Holder    string
	Token     int64
	ExpiresAt time.Time
}

// ErrLeaseHeld means another holder has an unexpired lease.
var ErrLeaseHeld = errors.New("lease held by another holder")

// Leases grants short leases with fencing tokens. Expiry is judged by the store's clock
// argument now, which every replica takes from its own clock (small skews only shorten or
// lengthen a lease by the skew).
type Leases interface {
	// AcquireLease gives the pipeline's lease to holder until now+ttl when it is free, expired
	// or already holder's. A new holder gets a token greater than any earlier one of that
	// pipeline; the same holder renewing keeps its token. ErrLeaseHeld otherwise.
	AcquireLease(ctx context.Context, ref PipelineRef, holder string, now time.Time, ttl time.Duration) (Lease, error)
	// ReleaseLease ends l if it is still current (same holder and token); otherwise it does
	// nothing. The next holder still gets a greater token.
	ReleaseLease(ctx context.Context, l Lease) error
	// GetLease returns the pipeline's lease as stored (possibly expired) or ErrNotFound.
	//
	// Leases exist only for stored pipelines: AcquireLease of a missing pipeline (or of another
	// tenant's) returns ErrNotFound. ExpiresAt is kept to the microsecond, the precision both
	// stores compare exactly; ttl must be positive and holder not empty.
	GetLease(ctx context.Context, ref PipelineRef) (Lease, error)
}
