// Package redisstore is the store on Redis, shared by many server replicas.
//
// Keys start with "sortie:". Keys of one tenant share the Redis Cluster hash tag
// {t:<org>/<env>} and keys of one organization share {o:<org>}; server-wide keys have no tag:
//
//	sortie:organizations                      hash org id -> organization
//	sortie:{o:<org>}:environments             hash env id -> environment
//	sortie:{o:<org>}:environment_names        hash env name -> env id
//	sortie:{t:<org>/<env>}:credentials        hash client id -> credential
//	sortie:credential_index                   hash client id -> tenant owning it
//	sortie:signing_keys                       hash key id -> signing key
//	sortie:settings                           hash key -> raw value
//	sortie:pipeline_tenants                   set of tenants that may have pipelines
//	sortie:{t:<org>/<env>}:pipelines          hash pipeline id -> pipeline
//	sortie:{t:<org>/<env>}:pipeline_events    hash "<id>/<seq>" -> event
//	sortie:{t:<org>/<env>}:pipeline_index:<n> sorted set of sort keys "<inverted time>/<id>"
//	                                          (lexical order = newest first); n is all,
//	                                          app:<app>, status:<s> or app:<app>:status:<s>
//	sortie:{t:<org>/<env>}:pipeline_active    hash id -> sort key of every active pipeline
//	sortie:{t:<org>/<env>}:pipeline_app_active:<app>  the same for one application
//	sortie:{t:<org>/<env>}:pipeline_completed sorted set of "<completion time>/<id>"
//	sortie:{t:<org>/<env>}:lease:<id>         hash holder, token, expires_us
//	sortie:{t:<org>/<env>}:lease_token:<id>   last fencing token (INCR), kept across releases
//	sortie:{users}:ids                        hash user id -> organization id
//	sortie:{users}:logins                     hash login -> user id
//	sortie:{users}:org:<org>                  hash user id -> user
//	sortie:{tkt:<kind>}:ticket:<id>           hash value, expires, exp_ms; the key expires
//	                                          with the ticket
//	sortie:{tkt:<kind>}:index                 sorted set of ids scored by expiry (ms); the
//	                                          entries of expired tickets are dropped lazily
//
// Users share the one hash tag {users} (they are few), so creating one checks its id and
// login and inserts it in one script; the tickets of one kind share {tkt:<kind>}, so putting,
// swapping and taking one (exactly one of concurrent takers wins) are scripts too.
//
// Records are JSON. Ids are path-escaped inside key names, so no id can make two tenants
// share a key or break out of a hash tag. No command or script touches keys of two hash tags,
// which Redis Cluster would refuse; creating a credential writes the global index first
// (HSETNX detects a duplicate client id in any tenant) and removes that entry again if the
// tenant write fails (a script refusing a name the tenant has already).
//
// Every pipeline write is one Lua script over the tenant's keys: CreatePipeline's in-progress
// rule with the insert (and the REJECTED mark of a replaced QUEUED pipeline), UpdatePipeline's
// revision and fence check with the write and its events, AcquireLease and ReleaseLease. A
// lease is a hash rather than JSON so scripts compare its fields; its expiry is in
// microseconds, which Lua's numbers hold exactly. The one cross-tenant key,
// sortie:pipeline_tenants, is written separately: CreatePipeline adds its tenant before and
// after the tenant's script, and ListActivePipelines and the retention prune lazily drop
// tenants left without pipelines.
//
// Errors meaning Redis cannot be reached wrap store.ErrUnavailable, and their messages never
// carry the Redis address or password.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/internal/record"
)

// Timeouts and retries short enough that requests fail fast (and answer 503) while Redis is
// down, instead of piling up. Values given in the URL's query take precedence.
const (
	dialTimeout  = time.Second
	ioTimeout    = time.Second
	maxRetries   = 1
	dialAttempts = 1
	// rollbackTimeout bounds the clean-up after a half-done write, which must run even when
	// the caller's context is already done.
	rollbackTimeout = 2 * time.Second
	// casAttempts bounds the optimistic retries of a read-modify-write under contention.
	casAttempts = 10
)

// Server-wide keys.
const (
	keyOrganizations   = "sortie:organizations"
	keyCredentialIndex = "sortie:credential_index"
	keySigningKeys     = "sortie:signing_keys"
	keySettings        = "sortie:settings"
)

// createEnvironmentScript stores an environment unless its id or its name exists in the
// organization. Both keys carry the organization's hash tag.
const createEnvironmentScript = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`

// createCredentialScript stores a credential in its tenant's hash unless another credential
// there has the same name: the check and the write are one step, so of two replicas creating
// one name at once exactly one succeeds. Names are read from the records themselves, so
// credentials stored before this check existed count too.
const createCredentialScript = `
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  local ok, rec = pcall(cjson.decode, v)
  if ok and type(rec) == 'table' and rec.name == ARGV[2] then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`

// compareAndSetScript replaces a hash field's value only if it still holds the expected one.
const compareAndSetScript = `
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`

// Store is the Redis store. It implements store.Store and is safe for concurrent use; it
// reconnects by itself after Redis comes back.
type Store struct {
	rdb               redis.UniversalClient
	createEnvironment *redis.Script
	createCredential  *redis.Script
	compareAndSet     *redis.Script
	pipelines         pipelineScripts
}

var _ store.Store = (*Store)(nil)

// Open connects to the Redis at rawURL (redis://, rediss:// or unix://, as accepted by
// redis.ParseURL). It fails on a URL it cannot parse and on a server that refuses the
// connection's settings (such as a wrong password), but not while Redis is unreachable: the
// store then answers store.ErrUnavailable until Redis is back.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, invalidURL(err)
	}
	setDefaults(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.MaxRetries, &opt.DialerRetries)
	return open(ctx, redis.NewClient(opt))
}

// OpenCluster connects to the Redis Cluster whose nodes rawURL names:
// redis://[user:password@]host:port?addr=host2:port2&addr=host3:port3, as accepted by
// redis.ParseClusterURL. Every key of one tenant shares a hash slot, so every script and
// conditional write runs on one node. It fails and recovers as Open does.
func OpenCluster(ctx context.Context, rawURL string) (*Store, error) {
	opt, err := redis.ParseClusterURL(rawURL)
	if err != nil {
		return nil, invalidURL(err)
	}
	setDefaults(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.MaxRetries, &opt.DialerRetries)
	return open(ctx, redis.NewClusterClient(opt))
}

// invalidURL reports an unparsable Redis URL without repeating it: a *url.Error carries the
// whole URL, password included.
func invalidURL(err error) error {
	if uerr, ok := errors.AsType[*url.Error](err); ok {
		err = uerr.Err
	}
	return fmt.Errorf("invalid Redis URL: %w", err)
}

// setDefaults fills in the timeouts and retries the URL left unset.
func setDefaults(dial, read, write *time.Duration, retries, dialRetries *int) {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{dial, dialTimeout}, {read, ioTimeout}, {write, ioTimeout}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if *retries == 0 {
		*retries = maxRetries
	}
	if *dialRetries == 0 {
		*dialRetries = dialAttempts
	}
}

// open wraps a connected client in a Store.
func open(ctx context.Context, rdb redis.UniversalClient) (*Store, error) {
	s := &Store{
		rdb:               rdb,
		createEnvironment: redis.NewScript(createEnvironmentScript),
		createCredential:  redis.NewScript(createCredentialScript),
		compareAndSet:     redis.NewScript(compareAndSetScript),
		pipelines:         newPipelineScripts(),
	}
	if err := s.Ping(ctx); err != nil && !errors.Is(err, store.ErrUnavailable) {
		_ = s.rdb.Close()
		return nil, fmt.Errorf("connect to Redis: %w", err)
	}
	return s, nil
}

// Ping sends a PING; on a Redis Cluster to every master, so that a master that is down (and
// its slots with it) makes the store unavailable, wherever a lone PING would have landed.
func (s *Store) Ping(ctx context.Context) error {
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		return wrap("ping", cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.Ping(ctx).Err()
		}))
	}
	return wrap("ping", s.rdb.Ping(ctx).Err())
}

// Close closes the connections to Redis.
func (s *Store) Close() error { return s.rdb.Close() }

// CreateOrganization implements store.Organizations.
func (s *Store) CreateOrganization(ctx context.Context, o store.Organization) error {
	op := "create organization " + o.ID
	v, err := record.EncodeOrganization(o)
	if err != nil {
		return wrap(op, err)
	}
	created, err := s.rdb.HSetNX(ctx, keyOrganizations, o.ID, v).Result()
	if err != nil {
		return wrap(op, err)
	}
	if !created {
		return wrap(op, store.ErrConflict)
	}
	return nil
}

// GetOrganization implements store.Organizations.
func (s *Store) GetOrganization(ctx context.Context, id string) (store.Organization, error) {
	op := "get organization " + id
	v, err := s.rdb.HGet(ctx, keyOrganizations, id).Bytes()
	if err != nil {
		return store.Organization{}, wrap(op, err)
	}
	o, err := record.DecodeOrganization(v)
	return o, wrap(op, err)
}

// CreateEnvironment implements store.Environments.
func (s *Store) CreateEnvironment(ctx context.Context, e store.Environment) error {
	op := "create environment " + e.OrgID + "/" + e.ID
	v, err := record.EncodeEnvironment(e)
	if err != nil {
		return wrap(op, err)
	}
	keys := []string{orgKey(e.OrgID, "environments"), orgKey(e.OrgID, "environment_names")}
	created, err := s.createEnvironment.Run(ctx, s.rdb, keys, e.ID, e.Name, v).Bool()
	if err != nil {
		return wrap(op, err)
	}
	if !created {
		return wrap(op, store.ErrConflict)
	}
	return nil
}

// GetEnvironment implements store.Environments.
func (s *Store) GetEnvironment(ctx context.Context, orgID, envID string) (store.Environment, error) {
	op := "get environment " + orgID + "/" + envID
	v, err := s.rdb.HGet(ctx, orgKey(orgID, "environments"), envID).Bytes()
	if err != nil {
		return store.Environment{}, wrap(op, err)
	}
	e, err := record.DecodeEnvironment(v)
	return e, wrap(op, err)
}

// ListEnvironments implements store.Environments.
func (s *Store) ListEnvironments(ctx context.Context, orgID string) ([]store.Environment, error) {
	op := "list environments of " + orgID
	vs, err := s.rdb.HVals(ctx, orgKey(orgID, "environments")).Result()
	if err != nil {
		return nil, wrap(op, err)
	}
	var envs []store.Environment
	for _, v := range vs {
		e, err := record.DecodeEnvironment([]byte(v))
		if err != nil {
			return nil, wrap(op, err)
		}
		envs = append(envs, e)
	}
	record.SortEnvironments(envs)
	return envs, nil
}

// CreateCredential implements store.Credentials.
func (s *Store) CreateCredential(ctx context.Context, c store.Credential) error {
	op := "create credential " + c.ClientID
	v, err := record.EncodeCredential(c)
	if err != nil {
		return wrap(op, err)
	}
	tv, err := record.EncodeTenant(c.Tenant)
	if err != nil {
		return wrap(op, err)
	}
	reserved, err := s.rdb.HSetNX(ctx, keyCredentialIndex, c.ClientID, tv).Result()
	if err != nil {
		return wrap(op, err)
	}
	if !reserved {
		return wrap(op, store.ErrConflict)
	}
	created, err := s.createCredential.Run(ctx, s.rdb, []string{credentialsKey(c.Tenant)}, c.ClientID, c.Name, v).Bool()
	if err == nil && !created {
		err = fmt.Errorf("name %q: %w", c.Name, store.ErrConflict)
	}
	if err != nil {
		// Release the client id. Should this fail too, the id stays reserved but unusable
		// (lookups answer ErrNotFound), which is harmless for random client ids.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		_ = s.rdb.HDel(rctx, keyCredentialIndex, c.ClientID).Err()
		return wrap(op, err)
	}
	return nil
}

// GetCredential implements store.Credentials.
func (s *Store) GetCredential(ctx context.Context, t store.Tenant, clientID string) (store.Credential, error) {
	c, _, err := s.getCredential(ctx, t, clientID)
	return c, wrap("get credential "+clientID, err)
}

// getCredential reads one credential of tenant t and also returns its stored form.
func (s *Store) getCredential(ctx context.Context, t store.Tenant, clientID string) (store.Credential, string, error) {
	v, err := s.rdb.HGet(ctx, credentialsKey(t), clientID).Result()
	if err != nil {
		return store.Credential{}, "", err
	}
	c, err := record.DecodeCredential([]byte(v))
	if err != nil {
		return store.Credential{}, "", err
	}
	if c.Tenant != t {
		return store.Credential{}, "", fmt.Errorf("stored under tenant %s but belongs to %s", t, c.Tenant)
	}
	return c, v, nil
}

// LookupCredential implements store.Credentials.
func (s *Store) LookupCredential(ctx context.Context, clientID string) (store.Credential, error) {
	op := "look up credential " + clientID
	tv, err := s.rdb.HGet(ctx, keyCredentialIndex, clientID).Bytes()
	if err != nil {
		return store.Credential{}, wrap(op, err)
	}
	t, err := record.DecodeTenant(tv)
	if err != nil {
		return store.Credential{}, wrap(op, err)
	}
	c, _, err := s.getCredential(ctx, t, clientID)
	return c, wrap(op, err)
}

// ListCredentials implements store.Credentials.
func (s *Store) ListCredentials(ctx context.Context, t store.Tenant) ([]store.Credential, error) {
	op := "list credentials of " + t.String()
	vs, err := s.rdb.HVals(ctx, credentialsKey(t)).Result()
	if err != nil {
		return nil, wrap(op, err)
	}
	var creds []store.Credential
	for _, v := range vs {
		c, err := record.DecodeCredential([]byte(v))
		if err != nil {
			return nil, wrap(op, err)
		}
		creds = append(creds, c)
	}
	record.SortCredentials(creds)
	return creds, nil
}

// DeleteCredential implements store.Credentials. The tenant's record goes first: once it is
// gone the credential is revoked, and only then is the client id released for reuse.
func (s *Store) DeleteCredential(ctx context.Context, t store.Tenant, clientID string) error {
	op := "delete credential " + clientID
	n, err := s.rdb.HDel(ctx, credentialsKey(t), clientID).Result()
	if err != nil {
		return wrap(op, err)
	}
	if n == 0 {
		return wrap(op, store.ErrNotFound)
	}
	return wrap(op, s.rdb.HDel(ctx, keyCredentialIndex, clientID).Err())
}

// SetCredentialRoles implements store.Credentials. It rewrites the record only if nobody
// changed or deleted it since it was read, so a concurrent delete is never undone.
func (s *Store) SetCredentialRoles(ctx context.Context, t store.Tenant, clientID string, roles []string) (store.Credential, error) {
	op := "set roles of credential " + clientID
	key := credentialsKey(t)
	for range casAttempts {
		c, old, err := s.getCredential(ctx, t, clientID)
		if err != nil {
			return store.Credential{}, wrap(op, err)
		}
		c.Roles = slices.Clone(roles)
		v, err := record.EncodeCredential(c)
		if err != nil {
			return store.Credential{}, wrap(op, err)
		}
		set, err := s.compareAndSet.Run(ctx, s.rdb, []string{key}, clientID, old, v).Bool()
		if err != nil {
			return store.Credential{}, wrap(op, err)
		}
		if set {
			return c, nil
		}
	}
	return store.Credential{}, wrap(op, errors.New("too many concurrent updates"))
}

// PutSigningKey implements store.SigningKeys.
func (s *Store) PutSigningKey(ctx context.Context, k store.SigningKey) error {
	op := "put signing key " + k.ID
	v, err := record.EncodeSigningKey(k)
	if err != nil {
		return wrap(op, err)
	}
	created, err := s.rdb.HSetNX(ctx, keySigningKeys, k.ID, v).Result()
	if err != nil {
		return wrap(op, err)
	}
	if !created {
		return wrap(op, store.ErrConflict)
	}
	return nil
}

// ListSigningKeys implements store.SigningKeys.
func (s *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	op := "list signing keys"
	vs, err := s.rdb.HVals(ctx, keySigningKeys).Result()
	if err != nil {
		return nil, wrap(op, err)
	}
	var keys []store.SigningKey
	for _, v := range vs {
		k, err := record.DecodeSigningKey([]byte(v))
		if err != nil {
			return nil, wrap(op, err)
		}
		keys = append(keys, k)
	}
	record.SortSigningKeys(keys)
	return keys, nil
}

// DeleteSigningKey implements store.SigningKeys.
func (s *Store) DeleteSigningKey(ctx context.Context, id string) error {
	return wrap("delete signing key "+id, s.rdb.HDel(ctx, keySigningKeys, id).Err())
}

// SetSettingIfAbsent implements store.Settings with HSETNX, which Redis runs atomically.
func (s *Store) SetSettingIfAbsent(ctx context.Context, key string, value []byte) (bool, error) {
	op := "set setting " + key
	if key == "" {
		return false, wrap(op, errors.New("empty key"))
	}
	stored, err := s.rdb.HSetNX(ctx, keySettings, key, value).Result()
	return stored, wrap(op, err)
}

// GetSetting implements store.Settings.
func (s *Store) GetSetting(ctx context.Context, key string) ([]byte, error) {
	v, err := s.rdb.HGet(ctx, keySettings, key).Bytes()
	if err != nil {
		return nil, wrap("get setting "+key, err)
	}
	return v, nil
}

// orgKey names an organization-level key; it carries the organization's hash tag.
func orgKey(orgID, name string) string {
	return "sortie:{o:" + url.PathEscape(orgID) + "}:" + name
}

// credentialsKey names the hash of t's credentials; it carries the tenant's hash tag.
func credentialsKey(t store.Tenant) string { return tenantKey(t, "credentials") }

// tenantKey names one of t's keys; it carries the tenant's hash tag.
func tenantKey(t store.Tenant, name string) string {
	return "sortie:{t:" + url.PathEscape(t.OrgID) + "/" + url.PathEscape(t.EnvID) + "}:" + name
}

// wrap adds op to err and maps Redis conditions to the store's sentinel errors; it returns nil
// for a nil err.
func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redis.Nil):
		return fmt.Errorf("%s: %w", op, store.ErrNotFound)
	case isUnavailable(err):
		return &unavailableError{op: op, cause: err}
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
}

// isUnavailable reports whether err means Redis cannot serve requests right now.
func isUnavailable(err error) bool {
	_, isNetErr := errors.AsType[net.Error](err)
	return isNetErr ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, redis.ErrPoolExhausted) ||
		errors.Is(err, redis.ErrClosed) ||
		redis.IsLoadingError(err) ||
		redis.IsMasterDownError(err) ||
		redis.IsClusterDownError(err) ||
		redis.IsTryAgainError(err) ||
		redis.IsMaxClientsError(err)
}

// unavailableError reports that Redis is unreachable. Its message leaves out the cause, whose
// text names the Redis address, while errors.Is still finds both store.ErrUnavailable and
// the cause.
type unavailableError struct {
	op    string
	cause error
}

func (e *unavailableError) Error() string {
	reason := "Redis unreachable"
	if ne, ok := errors.AsType[net.Error](e.cause); (ok && ne.Timeout()) || errors.Is(e.cause, context.DeadlineExceeded) {
		reason = "Redis timed out"
	}
	return e.op + ": " + reason + ": " + store.ErrUnavailable.Error()
}

func (e *unavailableError) Unwrap() []error { return []error{store.ErrUnavailable, e.cause} }
