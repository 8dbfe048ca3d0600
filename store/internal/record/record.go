// Package record defines the JSON form in which both store implementations persist records,
// and the orders in which they list them.
//
// The stored form has its own types with explicit JSON names, so renaming a field of a store
// type breaks the build here instead of silently losing data already written. Decoding always
// allocates fresh slices, which is how the stores hand out copies.
package record

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/sortie-dev/sortie/store"
)

// errEmptyID reports a record that lacks part of its identity.
var errEmptyID = errors.New("empty id")

type organization struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

type environment struct {
	ID        string    `json:"id"`
	OrgID     string    `json:"org_id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

type tenant struct {
	OrgID string `json:"org_id"`
	EnvID string `json:"env_id"`
}

type credential struct {
	ClientID   string    `json:"client_id"`
	Tenant     tenant    `json:"tenant"`
	Name       string    `json:"name"`
	SecretHash []byte    `json:"secret_hash"`
	Roles      []string  `json:"roles"`
	CreatedAt  time.Time `json:"created_at"`
}

type signingKey struct {
	ID               string    `json:"id"`
	Algorithm        string    `json:"algorithm"`
	PublicKeyDER     []byte    `json:"public_key_der"`
	EncryptedPrivate []byte    `json:"encrypted_private"`
	CreatedAt        time.Time `json:"created_at"`
	SignFrom         time.Time `json:"sign_from,omitzero"`
	SignUntil        time.Time `json:"sign_until"`
	RetainUntil      time.Time `json:"retain_until"`
}

// EncodeOrganization returns the stored form of o; its ID must not be empty.
func EncodeOrganization(o store.Organization) ([]byte, error) {
	if o.ID == "" {
		return nil, errEmptyID
	}
	return json.Marshal(organization{ID: o.ID, Name: o.Name, CreatedAt: o.CreatedAt.UTC()})
}

// DecodeOrganization parses the stored form of an organization.
func DecodeOrganization(b []byte) (store.Organization, error) {
	var r organization
	if err := json.Unmarshal(b, &r); err != nil {
		return store.Organization{}, err
	}
	return store.Organization{ID: r.ID, Name: r.Name, CreatedAt: r.CreatedAt}, nil
}

// EncodeEnvironment returns the stored form of e; its ID and OrgID must not be empty.
func EncodeEnvironment(e store.Environment) ([]byte, error) {
	if e.ID == "" || e.OrgID == "" {
		return nil, errEmptyID
	}
	return json.Marshal(environment{ID: e.ID, OrgID: e.OrgID, Name: e.Name, CreatedAt: e.CreatedAt.UTC()})
}

// DecodeEnvironment parses the stored form of an environment.
func DecodeEnvironment(b []byte) (store.Environment, error) {
	var r environment
	if err := json.Unmarshal(b, &r); err != nil {
		return store.Environment{}, err
	}
	return store.Environment{ID: r.ID, OrgID: r.OrgID, Name: r.Name, CreatedAt: r.CreatedAt}, nil
}

// EncodeTenant returns the stored form of t; both of its ids must not be empty.
func EncodeTenant(t store.Tenant) ([]byte, error) {
	if t.OrgID == "" || t.EnvID == "" {
		return nil, errEmptyID
	}
	return json.Marshal(tenant{OrgID: t.OrgID, EnvID: t.EnvID})
}

// DecodeTenant parses the stored form of a tenant.
func DecodeTenant(b []byte) (store.Tenant, error) {
	var r tenant
	if err := json.Unmarshal(b, &r); err != nil {
		return store.Tenant{}, err
	}
	return store.Tenant{OrgID: r.OrgID, EnvID: r.EnvID}, nil
}

// EncodeCredential returns the stored form of c; its ClientID and tenant must not be empty.
func EncodeCredential(c store.Credential) ([]byte, error) {
	if c.ClientID == "" || c.Tenant.OrgID == "" || c.Tenant.EnvID == "" {
		return nil, errEmptyID
	}
	return json.Marshal(credential{
		ClientID:   c.ClientID,
		Tenant:     tenant{OrgID: c.Tenant.OrgID, EnvID: c.Tenant.EnvID},
		Name:       c.Name,
		SecretHash: c.SecretHash,
		Roles:      c.Roles,
		CreatedAt:  c.CreatedAt.UTC(),
	})
}

// DecodeCredential parses the stored form of a credential.
func DecodeCredential(b []byte) (store.Credential, error) {
	var r credential
	if err := json.Unmarshal(b, &r); err != nil {
		return store.Credential{}, err
	}
	return store.Credential{
		ClientID:   r.ClientID,
		Tenant:     store.Tenant{OrgID: r.Tenant.OrgID, EnvID: r.Tenant.EnvID},
		Name:       r.Name,
		SecretHash: r.SecretHash,
		Roles:      r.Roles,
		CreatedAt:  r.CreatedAt,
	}, nil
}

// EncodeSigningKey returns the stored form of k; its ID must not be empty.
func EncodeSigningKey(k store.SigningKey) ([]byte, error) {
	if k.ID == "" {
		return nil, errEmptyID
	}
	return json.Marshal(signingKey{
		ID:               k.ID,
		Algorithm:        k.Algorithm,
		PublicKeyDER:     k.PublicKeyDER,
		EncryptedPrivate: k.EncryptedPrivate,
		CreatedAt:        k.CreatedAt.UTC(),
		SignFrom:         k.SignFrom.UTC(),
		SignUntil:        k.SignUntil.UTC(),
		RetainUntil:      k.RetainUntil.UTC(),
	})
}

// DecodeSigningKey parses the stored form of a signing key.
func DecodeSigningKey(b []byte) (store.SigningKey, error) {
	var r signingKey
	if err := json.Unmarshal(b, &r); err != nil {
		return store.SigningKey{}, err
	}
	return store.SigningKey{
		ID:               r.ID,
		Algorithm:        r.Algorithm,
		PublicKeyDER:     r.PublicKeyDER,
		EncryptedPrivate: r.EncryptedPrivate,
		CreatedAt:        r.CreatedAt,
		SignFrom:         r.SignFrom,
		SignUntil:        r.SignUntil,
		RetainUntil:      r.RetainUntil,
	}, nil
}

// SortEnvironments orders environments by Name, the order ListEnvironments promises.
func SortEnvironments(envs []store.Environment) {
	slices.SortFunc(envs, func(a, b store.Environment) int {
		return strings.Compare(a.Name, b.Name)
	})
}

// SortCredentials orders credentials by CreatedAt, then ClientID, the order ListCredentials
// promises.
func SortCredentials(creds []store.Credential) {
	slices.SortFunc(creds, func(a, b store.Credential) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ClientID, b.ClientID)
	})
}

// SortSigningKeys orders keys by CreatedAt, then ID so equal times still list stably, the
// order ListSigningKeys promises.
func SortSigningKeys(keys []store.SigningKey) {
	slices.SortFunc(keys, func(a, b store.SigningKey) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}
