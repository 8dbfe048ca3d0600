package identity_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/redisstore"
	"github.com/sortie-dev/sortie/store/redistest"
)

// Key timeline of a fixture's first key: it signs until signUntil and is published until
// retainUntil, when the last token it may have signed has expired.
var (
	signUntil   = t0.Add(testRotation)
	retainUntil = t0.Add(testRotation + testTTL + clockSkew)
	// publishAt is when Maintain stores the first key's successor: two publication leads (a
	// lead is two one-minute refreshes) before signUntil.
	publishAt = signUntil.Add(-4 * time.Minute)
)

// storedKids lists the ids of the signing keys in the store.
func storedKids(t *testing.T, st store.SigningKeys) []string {
	t.Helper()
	recs, err := st.ListSigningKeys(t.Context())
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	out := []string{}
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

func onlyKey(t *testing.T, st store.SigningKeys) store.SigningKey {
	t.Helper()
	recs, err := st.ListSigningKeys(t.Context())
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	if len(recs) != 1 {
		t.Fatalf("store holds %d signing keys, want 1", len(recs))
	}
	return recs[0]
}

func TestKeyRotationOverlap(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	first := onlyKey(t, fx.st).ID

	// A token signed in the last minute of the first key's signing period.
	fx.clock.Set(signUntil.Add(-time.Minute))
	old := fx.adminToken(t)
	if got := kidOf(t, old); got != first {
		t.Fatalf("token signed before rotation has kid %q, want %q", got, first)
	}
	oldExpiry := signUntil.Add(-time.Minute + testTTL)

	fx.clock.Set(signUntil)
	if err := fx.svc.Keys().Maintain(t.Context()); err != nil {
		t.Fatalf("Maintain: %v", err)
	}
	both := storedKids(t, fx.st)
	if len(both) != 2 || both[0] != first {
		t.Fatalf("after rotation the store holds %v, want %q and a new key", both, first)
	}
	second := both[1]
	fresh := fx.adminToken(t)
	if got := kidOf(t, fresh); got != second {
		t.Fatalf("token signed after rotation has kid %q, want the new key %q", got, second)
	}

	steps := []struct {
		name      string
		at        time.Time
		token     string
		wantValid bool
		wantKids  []string
	}{
		{name: "old token right after rotation", at: signUntil, token: old, wantValid: true, wantKids: both},
		{name: "new token right after rotation", at: signUntil, token: fresh, wantValid: true, wantKids: both},
		{name: "old token at expiry plus skew", at: oldExpiry.Add(clockSkew), token: old, wantValid: true, wantKids: both},
		{name: "old token past expiry", at: oldExpiry.Add(clockSkew + time.Second), token: old, wantKids: both},
		{name: "old key kept until RetainUntil", at: retainUntil.Add(-time.Second), token: fresh, wantValid: true, wantKids: both},
		{name: "old key dropped at RetainUntil", at: retainUntil, token: old, wantKids: []string{second}},
		{name: "new token outlives the old key", at: retainUntil, token: fresh, wantValid: true, wantKids: []string{second}},
	}
	for _, step := range steps {
		// The steps share one clock and keyring, so they run in order.
		t.Run(step.name, func(t *testing.T) {
			fx.clock.Set(step.at)
			if err := fx.svc.Keys().Maintain(t.Context()); err != nil {
				t.Fatalf("Maintain: %v", err)
			}
			if diff := cmp.Diff(step.wantKids, kids(fx.svc.Keys().JWKS())); diff != "" {
				t.Errorf("JWKS kids mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(step.wantKids, storedKids(t, fx.st)); diff != "" {
				t.Errorf("stored kids mismatch (-want +got):\n%s", diff)
			}
			_, err := fx.svc.Verifier().Verify(t.Context(), step.token)
			switch {
			case step.wantValid && err != nil:
				t.Errorf("Verify: %v, want the token accepted", err)
			case !step.wantValid && !errors.Is(err, identity.ErrInvalidToken):
				t.Errorf("Verify error = %v, want one wrapping ErrInvalidToken", err)
			}
		})
	}
}

// TestKeyPrePublication runs two replicas on one store and checks, at each step of a
// rotation, that every token either replica signs carries a kid both replicas publish.
func TestKeyPrePublication(t *testing.T) {
	t.Parallel()
	t.Run("embedded store shared", func(t *testing.T) {
		t.Parallel()
		fx := newFixture(t)
		checkPrePublication(t, fx.svc, newService(t, fx.st, fx.config()), fx.st, fx.clock, fx.adminPrincipal())
	})
	t.Run("Redis, one client each", func(t *testing.T) {
		t.Parallel()
		url := redistest.New(t).URL()
		clock, masterKey := newFakeClock(t0), newMasterKey(t)
		var replicas []*identity.Service
		var stores []store.Store
		for range 2 {
			st, err := redisstore.Open(t.Context(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			stores = append(stores, st)
			replicas = append(replicas, newService(t, st, testConfig(clock, masterKey)))
		}
		org, err := replicas[0].CreateOrganization(t.Context(), testOrg)
		if err != nil {
			t.Fatal(err)
		}
		p := identity.Principal{Type: identity.PrincipalMachine, Subject: org.Admin.ClientID, Name: "admin",
			OrgID: org.Organization.ID, OrgName: testOrg, EnvID: org.Environment.ID,
			Roles: []string{identity.RoleOrganizationAdmin}, Scopes: allScopes}
		checkPrePublication(t, replicas[0], replicas[1], stores[1], clock, p)
	})
}

func checkPrePublication(t *testing.T, a, b *identity.Service, st store.SigningKeys, clock *fakeClock, principal identity.Principal) {
	first := onlyKey(t, st).ID

	maintain := func(t *testing.T, svc *identity.Service) {
		t.Helper()
		if err := svc.Keys().Maintain(t.Context()); err != nil {
			t.Fatalf("Maintain: %v", err)
		}
	}
	// signsWith signs with both replicas and checks that both sign with kid and that both
	// publish it.
	signsWith := func(t *testing.T, kid string) {
		t.Helper()
		for name, svc := range map[string]*identity.Service{"a": a, "b": b} {
			tok, err := svc.Sign(t.Context(), principal, testAudience)
			if err != nil {
				t.Fatalf("replica %s: Sign: %v", name, err)
			}
			if got := kidOf(t, tok); got != kid {
				t.Errorf("replica %s signs with kid %q, want %q", name, got, kid)
			}
			for pubName, pub := range map[string]*identity.Service{"a": a, "b": b} {
				if published := kids(pub.Keys().JWKS()); !slices.Contains(published, kidOf(t, tok)) {
					t.Errorf("replica %s signed with kid %q, which replica %s does not publish (%v)", name, kidOf(t, tok), pubName, published)
				}
			}
		}
	}

	// Replica a's maintenance stores the successor; b has not refreshed yet.
	clock.Set(publishAt)
	maintain(t, a)
	stored := storedKids(t, st)
	if len(stored) != 2 || stored[0] != first {
		t.Fatalf("after the publication window opens the store holds %v, want %q and a successor", stored, first)
	}
	second := stored[1]
	if diff := cmp.Diff([]string{first, second}, kids(a.Keys().JWKS())); diff != "" {
		t.Errorf("replica a does not publish the successor at once (-want +got):\n%s", diff)
	}
	signsWith(t, first)

	// One refresh later b publishes it too; neither signs with it before signUntil.
	clock.Set(publishAt.Add(time.Minute))
	maintain(t, b)
	if diff := cmp.Diff([]string{first, second}, kids(b.Keys().JWKS())); diff != "" {
		t.Errorf("replica b does not publish the successor after a refresh (-want +got):\n%s", diff)
	}
	clock.Set(signUntil.Add(-time.Second))
	maintain(t, a)
	maintain(t, b)
	signsWith(t, first)

	// At signUntil both switch, without either storing a third key.
	clock.Set(signUntil)
	signsWith(t, second)
	maintain(t, a)
	maintain(t, b)
	if diff := cmp.Diff([]string{first, second}, storedKids(t, st)); diff != "" {
		t.Errorf("stored kids after the switch (-want +got):\n%s", diff)
	}
	rec := storedKey(t, st, second)
	if !rec.SignFrom.Equal(signUntil) || !rec.SignFrom.After(rec.CreatedAt) {
		t.Errorf("successor created %v signs from %v, want from %v, after its creation", rec.CreatedAt, rec.SignFrom, signUntil)
	}
}

// TestKeyPrePublicationLate checks that maintenance running later than the publication
// window still hands over at SignUntil instead of leaving a gap that forces an unpublished key.
func TestKeyPrePublicationLate(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fx.clock.Set(signUntil.Add(-30 * time.Second))
	if err := fx.svc.Keys().Maintain(t.Context()); err != nil {
		t.Fatal(err)
	}
	stored := storedKids(t, fx.st)
	if len(stored) != 2 {
		t.Fatalf("store holds %v, want the first key and a successor", stored)
	}
	fx.clock.Set(signUntil)
	if got := kidOf(t, fx.adminToken(t)); got != stored[1] {
		t.Errorf("at signUntil the token has kid %q, want the successor %q", got, stored[1])
	}
	if got := storedKids(t, fx.st); len(got) != 2 {
		t.Errorf("store holds %v after the switch, want no third key", got)
	}
}

func storedKey(t *testing.T, st store.SigningKeys, id string) store.SigningKey {
	t.Helper()
	recs, err := st.ListSigningKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no stored key %s", id)
	return store.SigningKey{}
}

func TestKeyRotationTrigger(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		at       time.Time
		maintain bool // call Maintain before signing; otherwise signing alone must rotate
		// wantKeys is the number of published keys; wantFirst whether the token is signed
		// with the first key.
		wantKeys  int
		wantFirst bool
	}{
		{name: "Maintain before the publication window keeps one key", at: publishAt.Add(-time.Second), maintain: true, wantKeys: 1, wantFirst: true},
		{name: "Maintain in the publication window publishes a successor that does not sign yet", at: publishAt, maintain: true, wantKeys: 2, wantFirst: true},
		{name: "Maintain just before SignUntil still signs with the first key", at: signUntil.Add(-time.Second), maintain: true, wantKeys: 2, wantFirst: true},
		{name: "signing before SignUntil keeps the key", at: signUntil.Add(-time.Second), wantKeys: 1, wantFirst: true},
		{name: "Maintain at SignUntil adds a key", at: signUntil, maintain: true, wantKeys: 2},
		{name: "signing at SignUntil adds a key", at: signUntil, wantKeys: 2},
		{name: "Maintain after RetainUntil replaces the key", at: retainUntil, maintain: true, wantKeys: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			first := onlyKey(t, fx.st).ID
			fx.clock.Set(tt.at)
			if tt.maintain {
				if err := fx.svc.Keys().Maintain(t.Context()); err != nil {
					t.Fatalf("Maintain: %v", err)
				}
			}
			kid := kidOf(t, fx.adminToken(t))
			published := kids(fx.svc.Keys().JWKS())
			if len(published) != tt.wantKeys {
				t.Errorf("JWKS has keys %v, want %d keys", published, tt.wantKeys)
			}
			if got := kid == first; got != tt.wantFirst {
				t.Errorf("token kid %q, first key %q: signed with the first key = %v, want %v", kid, first, got, tt.wantFirst)
			}
			if !slices.Contains(published, kid) {
				t.Errorf("token kid %q is not published in %v", kid, published)
			}
			if !tt.wantFirst && published[len(published)-1] != kid {
				t.Errorf("token kid %q is not the newest published key of %v", kid, published)
			}
		})
	}
}

func TestJWKS(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fx.clock.Set(signUntil)
	if err := fx.svc.Keys().Maintain(t.Context()); err != nil {
		t.Fatalf("Maintain: %v", err)
	}
	set := fx.svc.Keys().JWKS()
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS has %d keys, want 2", len(set.Keys))
	}
	recs, err := fx.st.ListSigningKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range set.Keys {
		if k.Use != "sig" || k.Algorithm != "ES256" || !k.IsPublic() || !k.Valid() {
			t.Errorf("key %d: use %q, alg %q, public %v, valid %v; want a valid public ES256 signing key", i, k.Use, k.Algorithm, k.IsPublic(), k.Valid())
		}
		pub, ok := k.Key.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			t.Fatalf("key %d is %T, want a P-256 public key", i, k.Key)
		}
		stored, err := x509.ParsePKIXPublicKey(recs[i].PublicKeyDER)
		if err != nil {
			t.Fatalf("stored key %d: %v", i, err)
		}
		if recs[i].ID != k.KeyID || !pub.Equal(stored) {
			t.Errorf("JWKS key %d (%s) is not the stored key %s", i, k.KeyID, recs[i].ID)
		}
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), `"d"`) {
		t.Errorf("JWKS JSON holds private key material: %s", data)
	}
}

func TestKeysPersist(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		reopen bool
	}{
		{name: "new service on the same store"},
		{name: "new service after reopening the store file", reopen: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			old := fx.adminToken(t)
			wantKids := kids(fx.svc.Keys().JWKS())
			st := fx.st
			if tt.reopen {
				if err := fx.st.Close(); err != nil {
					t.Fatal(err)
				}
				st = openStore(t, fx.path)
			}
			fx.clock.Advance(time.Hour)
			svc := newService(t, st, fx.config())
			if diff := cmp.Diff(wantKids, kids(svc.Keys().JWKS())); diff != "" {
				t.Errorf("JWKS kids mismatch after restart (-want +got):\n%s", diff)
			}
			got, err := svc.Verifier().Verify(t.Context(), old)
			if err != nil {
				t.Fatalf("Verify of a token issued before the restart: %v", err)
			}
			if diff := cmp.Diff(fx.adminPrincipal(), got, equateEmpty); diff != "" {
				t.Errorf("principal mismatch (-want +got):\n%s", diff)
			}
			raw := sign(t, svc, fx.adminPrincipal(), testAudience)
			if got := kidOf(t, raw); got != wantKids[0] {
				t.Errorf("new service signs with kid %q, want the stored key %q", got, wantKids[0])
			}
		})
	}
}

func TestMasterKeyMismatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		build   func(t *testing.T, fx *fixture, masterKey []byte) error
		key     func(t testing.TB) []byte
		wantErr error // nil: any error
	}{
		{
			name: "service with another master key",
			build: func(t *testing.T, fx *fixture, key []byte) error {
				cfg := fx.config()
				cfg.MasterKey = key
				_, err := identity.New(t.Context(), discardLogger(), fx.st, cfg)
				return err
			},
			key:     newMasterKey,
			wantErr: identity.ErrMasterKeyMismatch,
		},
		{
			name: "keyring with another master key",
			build: func(t *testing.T, fx *fixture, key []byte) error {
				_, err := identity.NewKeyring(t.Context(), discardLogger(), fx.st, key, testRotation, testTTL, fx.clock.Now)
				return err
			},
			key:     newMasterKey,
			wantErr: identity.ErrMasterKeyMismatch,
		},
		{
			name: "service with a short master key",
			build: func(t *testing.T, fx *fixture, key []byte) error {
				cfg := fx.config()
				cfg.MasterKey = key
				_, err := identity.New(t.Context(), discardLogger(), fx.st, cfg)
				return err
			},
			key: func(testing.TB) []byte { return make([]byte, 16) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			before := storedKids(t, fx.st)
			err := tt.build(t, fx, tt.key(t))
			if err == nil {
				t.Fatal("building with the wrong master key succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want one wrapping %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(before, storedKids(t, fx.st)); diff != "" {
				t.Errorf("a failed start changed the stored keys (-want +got):\n%s", diff)
			}
			if _, err := fx.svc.Verifier().Verify(t.Context(), fx.adminToken(t)); err != nil {
				t.Errorf("the original service no longer works: %v", err)
			}
		})
	}
}

func TestSigningKeySealedAtRest(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	rec := onlyKey(t, fx.st)
	pub, ok := fx.svc.Keys().JWKS().Keys[0].Key.(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("JWKS key is %T, want *ecdsa.PublicKey", fx.svc.Keys().JWKS().Keys[0].Key)
	}
	// A PKCS#8 EC private key embeds the public point, so its coordinates would show in clear.
	for name, coord := range map[string][]byte{"X": pub.X.FillBytes(make([]byte, 32)), "Y": pub.Y.FillBytes(make([]byte, 32))} {
		if bytes.Contains(rec.EncryptedPrivate, coord) {
			t.Errorf("the stored private key holds the public %s coordinate in clear", name)
		}
	}
	if _, err := x509.ParsePKCS8PrivateKey(rec.EncryptedPrivate); err == nil {
		t.Error("the stored private key parses as PKCS#8: it is not encrypted")
	}
}

func TestSigningKeyTampered(t *testing.T) {
	t.Parallel()
	flipAt := func(i func(n int) int) func(store.SigningKey) store.SigningKey {
		return func(rec store.SigningKey) store.SigningKey {
			rec.EncryptedPrivate = bytes.Clone(rec.EncryptedPrivate)
			rec.EncryptedPrivate[i(len(rec.EncryptedPrivate))] ^= 0x01
			return rec
		}
	}
	tests := []struct {
		name   string
		tamper func(store.SigningKey) store.SigningKey
	}{
		{name: "nonce byte", tamper: flipAt(func(int) int { return 0 })},
		{name: "ciphertext byte", tamper: flipAt(func(n int) int { return n / 2 })},
		{name: "authentication tag byte", tamper: flipAt(func(n int) int { return n - 1 })},
		{name: "truncated", tamper: func(rec store.SigningKey) store.SigningKey {
			rec.EncryptedPrivate = rec.EncryptedPrivate[:8]
			return rec
		}},
		{name: "empty", tamper: func(rec store.SigningKey) store.SigningKey {
			rec.EncryptedPrivate = nil
			return rec
		}},
		{name: "moved to another kid", tamper: func(rec store.SigningKey) store.SigningKey {
			rec.ID = uuid.NewString()
			return rec
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			rec := onlyKey(t, fx.st)
			if err := fx.st.DeleteSigningKey(t.Context(), rec.ID); err != nil {
				t.Fatal(err)
			}
			if err := fx.st.PutSigningKey(t.Context(), tt.tamper(rec)); err != nil {
				t.Fatal(err)
			}
			_, err := identity.NewKeyring(t.Context(), discardLogger(), fx.st, fx.masterKey, testRotation, testTTL, fx.clock.Now)
			if !errors.Is(err, identity.ErrMasterKeyMismatch) {
				t.Errorf("NewKeyring over a tampered key: error = %v, want one wrapping ErrMasterKeyMismatch", err)
			}
		})
	}
}
