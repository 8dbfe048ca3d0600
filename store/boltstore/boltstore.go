// Package boltstore is the embedded single-file store on bbolt: the default when one server
// process serves a single machine.
//
// Records are stored as JSON in these buckets:
//
//	organizations/<org>                         organization
//	environments/<org>/<env>                    environment
//	credentials/<org>/<env>/<client id>         credential
//	credential_index/<client id>                tenant owning the client id
//	signing_keys/<id>                           signing key
//	settings/<key>                              raw value
//	pipelines/<org>/<env>/records/<id>          pipeline
//	pipelines/<org>/<env>/events/<id>/<seq>     event (seq as 8 bytes big endian)
//	pipelines/<org>/<env>/index/<name>/<sort>   "" (name: all, app:<app>, status:<s>,
//	                                            app:<app>:status:<s>; sort: newest first)
//	pipelines/<org>/<env>/active/<id>           "" for every non-terminal pipeline
//	pipelines/<org>/<env>/app_active/<app>/<id> sort key, for the in-progress rule
//	pipelines/<org>/<env>/completed/<key>       id, oldest completion first (retention)
//	pipelines/<org>/<env>/leases/<id>           lease
//	pipelines/<org>/<env>/lease_tokens/<id>     last fencing token, kept across releases
//	users/<org>/<id>                            user
//	user_ids/<id>                               organization owning the user id
//	user_logins/<login>                         user id holding the login
//	tickets/<kind>/<id>                         ticket value and expiry (expired ones are
//	                                            removed by the next put of their kind)
//
// Credentials are nested per tenant (organization, then environment) rather than under an
// "org/env" key, so no choice of ids can make two tenants share a bucket; so are pipelines.
// Every pipeline write (the in-progress rule with the insert, a fenced update with its events)
// is one bbolt read-write transaction, and bbolt runs those one at a time.
package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/internal/record"
)

// openTimeout bounds how long Open waits for the file lock another process may hold.
const openTimeout = time.Second

// Bucket names.
const (
	bucketOrganizations   = "organizations"
	bucketEnvironments    = "environments"
	bucketCredentials     = "credentials"
	bucketCredentialIndex = "credential_index"
	bucketSigningKeys     = "signing_keys"
	bucketSettings        = "settings"
	bucketPipelines       = "pipelines"
	bucketUsers           = "users"
	bucketUserIDs         = "user_ids"
	bucketUserLogins      = "user_logins"
	bucketTickets         = "tickets"
)

// ErrInUse means another process holds the data file open; only one process may use it.
var ErrInUse = errors.New("data file is in use by another process")

// Store is the embedded store. It implements store.Store and is safe for concurrent use.
type Store struct {
	db *bolt.DB

	sweepMu sync.Mutex
	sweptAt map[string]time.Time // ticket kind -> when PutTicket last removed its expired ones
}

var _ store.Store = (*Store)(nil)

// Open opens the data file at path, creating it with mode 0600 if it does not exist. It
// returns an error wrapping ErrInUse when another process has the file open.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w", path, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// Batched pipeline writes wait this long for company: short, so a lone write is not held
	// back noticeably.
	db.MaxBatchDelay = 2 * time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{
			bucketOrganizations, bucketEnvironments, bucketCredentials,
			bucketCredentialIndex, bucketSigningKeys, bucketSettings, bucketPipelines,
			bucketUsers, bucketUserIDs, bucketUserLogins, bucketTickets,
		} {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: create buckets: %w", path, err)
	}
	return &Store{db: db, sweptAt: map[string]time.Time{}}, nil
}

// Path returns the data file's path.
func (s *Store) Path() string { return s.db.Path() }

// Ping returns nil while the store is open.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.view(func(*bolt.Tx) error { return nil }); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Close releases the data file.
func (s *Store) Close() error { return s.db.Close() }

// CreateOrganization implements store.Organizations.
func (s *Store) CreateOrganization(ctx context.Context, o store.Organization) error {
	v, err := record.EncodeOrganization(o)
	if err == nil {
		err = s.update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte(bucketOrganizations))
			if b.Get([]byte(o.ID)) != nil {
				return store.ErrConflict
			}
			return b.Put([]byte(o.ID), v)
		})
	}
	if err != nil {
		return fmt.Errorf("create organization %s: %w", o.ID, err)
	}
	return nil
}

// GetOrganization implements store.Organizations.
func (s *Store) GetOrganization(ctx context.Context, id string) (store.Organization, error) {
	var o store.Organization
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucketOrganizations)).Get([]byte(id))
		if v == nil {
			return store.ErrNotFound
		}
		var err error
		o, err = record.DecodeOrganization(v)
		return err
	})
	if err != nil {
		return store.Organization{}, fmt.Errorf("get organization %s: %w", id, err)
	}
	return o, nil
}

// CreateEnvironment implements store.Environments.
func (s *Store) CreateEnvironment(ctx context.Context, e store.Environment) error {
	v, err := record.EncodeEnvironment(e)
	if err == nil {
		err = s.update(func(tx *bolt.Tx) error {
			b, err := tx.Bucket([]byte(bucketEnvironments)).CreateBucketIfNotExists([]byte(e.OrgID))
			if err != nil {
				return err
			}
			if b.Get([]byte(e.ID)) != nil {
				return store.ErrConflict
			}
			// An organization has few environments, so a scan beats keeping a name index.
			err = b.ForEach(func(_, v []byte) error {
				other, err := record.DecodeEnvironment(v)
				if err != nil {
					return err
				}
				if other.Name == e.Name {
					return fmt.Errorf("name %q: %w", e.Name, store.ErrConflict)
				}
				return nil
			})
			if err != nil {
				return err
			}
			return b.Put([]byte(e.ID), v)
		})
	}
	if err != nil {
		return fmt.Errorf("create environment %s/%s: %w", e.OrgID, e.ID, err)
	}
	return nil
}

// GetEnvironment implements store.Environments.
func (s *Store) GetEnvironment(ctx context.Context, orgID, envID string) (store.Environment, error) {
	var e store.Environment
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketEnvironments)).Bucket([]byte(orgID))
		if b == nil {
			return store.ErrNotFound
		}
		v := b.Get([]byte(envID))
		if v == nil {
			return store.ErrNotFound
		}
		var err error
		e, err = record.DecodeEnvironment(v)
		return err
	})
	if err != nil {
		return store.Environment{}, fmt.Errorf("get environment %s/%s: %w", orgID, envID, err)
	}
	return e, nil
}

// ListEnvironments implements store.Environments.
func (s *Store) ListEnvironments(ctx context.Context, orgID string) ([]store.Environment, error) {
	var envs []store.Environment
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketEnvironments)).Bucket([]byte(orgID))
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			e, err := record.DecodeEnvironment(v)
			envs = append(envs, e)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list environments of %s: %w", orgID, err)
	}
	record.SortEnvironments(envs)
	return envs, nil
}

// tenantBucket returns the bucket holding t's credentials, or nil if it has none.
func tenantBucket(tx *bolt.Tx, t store.Tenant) *bolt.Bucket {
	org := tx.Bucket([]byte(bucketCredentials)).Bucket([]byte(t.OrgID))
	if org == nil {
		return nil
	}
	return org.Bucket([]byte(t.EnvID))
}

// getCredential reads one credential of tenant t.
func getCredential(tx *bolt.Tx, t store.Tenant, clientID string) (store.Credential, error) {
	b := tenantBucket(tx, t)
	if b == nil {
		return store.Credential{}, store.ErrNotFound
	}
	v := b.Get([]byte(clientID))
	if v == nil {
		return store.Credential{}, store.ErrNotFound
	}
	return record.DecodeCredential(v)
}

// CreateCredential implements store.Credentials.
func (s *Store) CreateCredential(ctx context.Context, c store.Credential) error {
	v, err := record.EncodeCredential(c)
	if err != nil {
		return fmt.Errorf("create credential %s: %w", c.ClientID, err)
	}
	tv, err := record.EncodeTenant(c.Tenant)
	if err == nil {
		err = s.update(func(tx *bolt.Tx) error {
			index := tx.Bucket([]byte(bucketCredentialIndex))
			if index.Get([]byte(c.ClientID)) != nil {
				return store.ErrConflict
			}
			org, err := tx.Bucket([]byte(bucketCredentials)).CreateBucketIfNotExists([]byte(c.Tenant.OrgID))
			if err != nil {
				return err
			}
			b, err := org.CreateBucketIfNotExists([]byte(c.Tenant.EnvID))
			if err != nil {
				return err
			}
			// Names are unique per tenant; checking inside the write transaction makes the
			// check and the insert one step.
			if err := b.ForEach(func(_, raw []byte) error {
				other, err := record.DecodeCredential(raw)
				if err != nil {
					return err
				}
				if other.Name == c.Name {
					return fmt.Errorf("name %q: %w", c.Name, store.ErrConflict)
				}
				return nil
			}); err != nil {
				return err
			}
			if err := b.Put([]byte(c.ClientID), v); err != nil {
				return err
			}
			return index.Put([]byte(c.ClientID), tv)
		})
	}
	if err != nil {
		return fmt.Errorf("create credential %s: %w", c.ClientID, err)
	}
	return nil
}

// GetCredential implements store.Credentials.
func (s *Store) GetCredential(ctx context.Context, t store.Tenant, clientID string) (store.Credential, error) {
	var c store.Credential
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		c, err = getCredential(tx, t, clientID)
		return err
	})
	if err != nil {
		return store.Credential{}, fmt.Errorf("get credential %s: %w", clientID, err)
	}
	return c, nil
}

// LookupCredential implements store.Credentials.
func (s *Store) LookupCredential(ctx context.Context, clientID string) (store.Credential, error) {
	var c store.Credential
	err := s.view(func(tx *bolt.Tx) error {
		tv := tx.Bucket([]byte(bucketCredentialIndex)).Get([]byte(clientID))
		if tv == nil {
			return store.ErrNotFound
		}
		t, err := record.DecodeTenant(tv)
		if err != nil {
			return err
		}
		c, err = getCredential(tx, t, clientID)
		return err
	})
	if err != nil {
		return store.Credential{}, fmt.Errorf("look up credential %s: %w", clientID, err)
	}
	return c, nil
}

// ListCredentials implements store.Credentials.
func (s *Store) ListCredentials(ctx context.Context, t store.Tenant) ([]store.Credential, error) {
	var creds []store.Credential
	err := s.view(func(tx *bolt.Tx) error {
		b := tenantBucket(tx, t)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			c, err := record.DecodeCredential(v)
			creds = append(creds, c)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list credentials of %s: %w", t, err)
	}
	record.SortCredentials(creds)
	return creds, nil
}

// DeleteCredential implements store.Credentials.
func (s *Store) DeleteCredential(ctx context.Context, t store.Tenant, clientID string) error {
	err := s.update(func(tx *bolt.Tx) error {
		b := tenantBucket(tx, t)
		if b == nil || b.Get([]byte(clientID)) == nil {
			return store.ErrNotFound
		}
		if err := b.Delete([]byte(clientID)); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketCredentialIndex)).Delete([]byte(clientID))
	})
	if err != nil {
		return fmt.Errorf("delete credential %s: %w", clientID, err)
	}
	return nil
}

// SetCredentialRoles implements store.Credentials.
func (s *Store) SetCredentialRoles(ctx context.Context, t store.Tenant, clientID string, roles []string) (store.Credential, error) {
	var c store.Credential
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		c, err = getCredential(tx, t, clientID)
		if err != nil {
			return err
		}
		c.Roles = slices.Clone(roles)
		v, err := record.EncodeCredential(c)
		if err != nil {
			return err
		}
		return tenantBucket(tx, t).Put([]byte(clientID), v)
	})
	if err != nil {
		return store.Credential{}, fmt.Errorf("set roles of credential %s: %w", clientID, err)
	}
	return c, nil
}

// PutSigningKey implements store.SigningKeys.
func (s *Store) PutSigningKey(ctx context.Context, k store.SigningKey) error {
	v, err := record.EncodeSigningKey(k)
	if err == nil {
		err = s.update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte(bucketSigningKeys))
			if b.Get([]byte(k.ID)) != nil {
				return store.ErrConflict
			}
			return b.Put([]byte(k.ID), v)
		})
	}
	if err != nil {
		return fmt.Errorf("put signing key %s: %w", k.ID, err)
	}
	return nil
}

// ListSigningKeys implements store.SigningKeys.
func (s *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	var keys []store.SigningKey
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketSigningKeys)).ForEach(func(_, v []byte) error {
			k, err := record.DecodeSigningKey(v)
			keys = append(keys, k)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	record.SortSigningKeys(keys)
	return keys, nil
}

// DeleteSigningKey implements store.SigningKeys.
func (s *Store) DeleteSigningKey(ctx context.Context, id string) error {
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketSigningKeys)).Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("delete signing key %s: %w", id, err)
	}
	return nil
}

// SetSettingIfAbsent implements store.Settings. Writes are serialized by bbolt, so the check
// and the write cannot interleave with another caller's.
func (s *Store) SetSettingIfAbsent(ctx context.Context, key string, value []byte) (bool, error) {
	if key == "" {
		return false, errors.New("set setting: empty key")
	}
	var stored bool
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketSettings))
		if b.Get([]byte(key)) != nil {
			return nil
		}
		stored = true
		return b.Put([]byte(key), value)
	})
	if err != nil {
		return false, fmt.Errorf("set setting %s: %w", key, err)
	}
	return stored, nil
}

// GetSetting implements store.Settings.
func (s *Store) GetSetting(ctx context.Context, key string) ([]byte, error) {
	var value []byte
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucketSettings)).Get([]byte(key))
		if v == nil {
			return store.ErrNotFound
		}
		// v points into the memory map, which is only valid during the transaction.
		value = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get setting %s: %w", key, err)
	}
	return value, nil
}

// view runs fn in a read-only transaction.
func (s *Store) view(fn func(*bolt.Tx) error) error { return closedAsUnavailable(s.db.View(fn)) }

// update runs fn in a read-write transaction, committed if fn returns nil.
func (s *Store) update(fn func(*bolt.Tx) error) error { return closedAsUnavailable(s.db.Update(fn)) }

// closedAsUnavailable marks the error of a closed database as store.ErrUnavailable, so a
// request racing shutdown is answered 503 rather than 500.
func closedAsUnavailable(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}
