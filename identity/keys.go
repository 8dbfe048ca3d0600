package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"golang.org/x/time/rate"

	"github.com/sortie-dev/sortie/store"
)

// signingAlgorithm is the only algorithm Sortie signs and accepts.
const signingAlgorithm = jose.ES256

// unknownKidRefreshes limits how often unknown kids make the keyring re-read the store, so
// junk tokens cannot turn into a flood of store reads.
func unknownKidRefreshes() *rate.Limiter { return rate.NewLimiter(rate.Every(200*time.Millisecond), 5) }

// Keyring holds the token-signing keys: the current private key and every public key whose
// tokens may still be alive. Keys live in the store, their private halves sealed under the
// master key, so every replica sharing the store signs and verifies with the same keys.
type Keyring struct {
	st       store.SigningKeys
	seal     *sealer
	rotation time.Duration
	ttl      time.Duration
	now      func() time.Time
	log      *slog.Logger

	refreshes *rate.Limiter

	mu   sync.Mutex // guards keys
	keys []loadedKey

	// current is the key that signs now and the period it was found current for, so that
	// issuing a token takes no lock; nil after any change to keys, until the next signature.
	current atomic.Pointer[currentKey]
}

type loadedKey struct {
	rec    store.SigningKey
	pub    *ecdsa.PublicKey
	priv   *ecdsa.PrivateKey
	signer jose.Signer
	// header is the first segment of every compact JWS this key signs (protectedHeader).
	header string
}

// currentKey is the signing key for [from, until): no other key can become current before
// until (its SignUntil, or the SignFrom of a key waiting to take over, whichever is first).
type currentKey struct {
	key         *loadedKey
	from, until time.Time
}

// NewKeyring loads the stored keys, decrypting each private key with the master key, and makes
// sure a current signing key exists. It returns ErrMasterKeyMismatch when the master key
// cannot decrypt the stored keys. Tokens live for ttl; a key signs for one rotation period and
// its public key is kept until the last token it signed has expired.
func NewKeyring(ctx context.Context, log *slog.Logger, st store.SigningKeys, masterKey []byte, rotation, ttl time.Duration, now func() time.Time) (*Keyring, error) {
	if rotation <= 0 || ttl <= 0 {
		return nil, errors.New("key rotation period and token lifetime must be positive")
	}
	s, err := newSealer(masterKey, "signing keys")
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	k := &Keyring{st: st, seal: s, rotation: rotation, ttl: ttl, now: now, log: log, refreshes: unknownKidRefreshes()}
	if err := k.Maintain(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// Maintain re-reads the stored keys, deletes keys whose tokens have all expired and, two
// publication leads before the current key's SignUntil, stores its successor, which every
// replica publishes at its next refresh and which signs only from that SignUntil. Run calls it
// periodically; tests call it after moving their clock.
func (k *Keyring) Maintain(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.reloadLocked(ctx); err != nil {
		return err
	}
	now := k.now()
	for _, lk := range k.keys {
		if !now.Before(lk.rec.RetainUntil) {
			if err := k.st.DeleteSigningKey(ctx, lk.rec.ID); err != nil {
				return fmt.Errorf("delete expired signing key: %w", err)
			}
			k.log.Info("signing key retired", "kid", lk.rec.ID)
		}
	}
	k.keys = slices.DeleteFunc(k.keys, func(lk loadedKey) bool { return !now.Before(lk.rec.RetainUntil) })
	k.current.Store(nil)
	cur, ok := k.currentLocked()
	if !ok {
		// No key may sign now (first start, or maintenance stalled past the current key's
		// SignUntil): a key that signs at once is the only way to keep issuing tokens.
		return k.rotateLocked(ctx, now)
	}
	if k.successorLocked(cur) || now.Before(cur.rec.SignUntil.Add(-2*k.lead())) {
		return nil
	}
	// Pre-publish the successor: it takes over at the current key's SignUntil, at least one
	// lead from now unless maintenance stalled, so every replica lists it before any signs
	// with it. A successor signing later than SignUntil would leave nothing to sign with.
	if cur.rec.SignUntil.Before(now.Add(k.lead())) {
		k.log.Warn("signing key maintenance ran late: the next key is published less than the publication lead before it signs",
			"lead", k.lead(), "signs_at", cur.rec.SignUntil)
	}
	return k.rotateLocked(ctx, cur.rec.SignUntil)
}

// refreshInterval is how often Run re-reads the stored keys.
func (k *Keyring) refreshInterval() time.Duration { return min(k.rotation/4, time.Minute) }

// lead is the publication lead: a new key signs only this long after it is stored, two
// refreshes, so every replica has re-read the store and lists the key in its JWKS first.
func (k *Keyring) lead() time.Duration { return 2 * k.refreshInterval() }

// successorLocked reports whether a key newer than cur is already stored, waiting to sign.
func (k *Keyring) successorLocked(cur loadedKey) bool {
	for _, lk := range k.keys {
		if signFrom(lk.rec).After(signFrom(cur.rec)) {
			return true
		}
	}
	return false
}

// signFrom is when rec starts signing. Keys stored before pre-publication have no SignFrom
// and sign from their creation, less a minute for replicas whose clocks run behind.
func signFrom(rec store.SigningKey) time.Time {
	if rec.SignFrom.IsZero() {
		return rec.CreatedAt.Add(-time.Minute)
	}
	return rec.SignFrom
}

// Run maintains the keyring until ctx ends, re-reading the store every refresh interval (a
// quarter of the rotation period, at most a minute), so a key another replica stored is
// published here within one interval, well inside the publication lead.
func (k *Keyring) Run(ctx context.Context) {
	t := time.NewTicker(k.refreshInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := k.Maintain(ctx); err != nil && ctx.Err() == nil {
				k.log.Warn("signing key maintenance failed", "err", err)
			}
		}
	}
}

func (k *Keyring) reloadLocked(ctx context.Context) error {
	recs, err := k.st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	known := make(map[string]loadedKey, len(k.keys))
	for _, lk := range k.keys {
		known[lk.rec.ID] = lk
	}
	keys := make([]loadedKey, 0, len(recs))
	for _, rec := range recs {
		if lk, ok := known[rec.ID]; ok {
			keys = append(keys, lk)
			continue
		}
		lk, err := k.decode(rec)
		if err != nil {
			return err
		}
		keys = append(keys, lk)
	}
	k.keys = keys
	k.current.Store(nil)
	return nil
}

func (k *Keyring) decode(rec store.SigningKey) (loadedKey, error) {
	if rec.Algorithm != string(signingAlgorithm) {
		return loadedKey{}, fmt.Errorf("signing key %s has unsupported algorithm %q", rec.ID, rec.Algorithm)
	}
	der, err := k.seal.open(rec.EncryptedPrivate, []byte(rec.ID))
	if err != nil {
		return loadedKey{}, err
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return loadedKey{}, fmt.Errorf("parse signing key %s: %w", rec.ID, err)
	}
	priv, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return loadedKey{}, fmt.Errorf("signing key %s is not an ECDSA key", rec.ID)
	}
	return newLoadedKey(rec, priv)
}

func newLoadedKey(rec store.SigningKey, priv *ecdsa.PrivateKey) (loadedKey, error) {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: signingAlgorithm, Key: jose.JSONWebKey{Key: priv, KeyID: rec.ID, Algorithm: string(signingAlgorithm)}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return loadedKey{}, fmt.Errorf("signer for key %s: %w", rec.ID, err)
	}
	lk := loadedKey{rec: rec, pub: &priv.PublicKey, priv: priv, signer: signer}
	if lk.header, err = protectedHeader(lk); err != nil {
		return loadedKey{}, err
	}
	return lk, nil
}

// currentLocked returns the key that signs now: of the keys inside their signing period, the
// one that started signing last. A pre-published key waits for its SignFrom.
func (k *Keyring) currentLocked() (loadedKey, bool) {
	now := k.now()
	var cur loadedKey
	found := false
	for _, lk := range k.keys {
		from := signFrom(lk.rec)
		if now.Before(from) || !now.Before(lk.rec.SignUntil) {
			continue
		}
		if !found || !from.Before(signFrom(cur.rec)) {
			cur, found = lk, true
		}
	}
	return cur, found
}

// rotateLocked stores a new key that signs from signAt for one rotation period.
func (k *Keyring) rotateLocked(ctx context.Context, signAt time.Time) error {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("encode signing key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return fmt.Errorf("encode signing key: %w", err)
	}
	now := k.now().UTC().Truncate(time.Second)
	signAt = signAt.UTC().Truncate(time.Second)
	if signAt.Before(now) {
		signAt = now
	}
	id := uuid.NewString()
	sealed, err := k.seal.seal(der, []byte(id))
	if err != nil {
		return fmt.Errorf("seal signing key: %w", err)
	}
	rec := store.SigningKey{
		ID:               id,
		Algorithm:        string(signingAlgorithm),
		PublicKeyDER:     pubDER,
		EncryptedPrivate: sealed,
		CreatedAt:        now,
		SignFrom:         signAt,
		SignUntil:        signAt.Add(k.rotation),
		// A token signed at the last moment lives ttl more; the verifier allows clockSkew.
		RetainUntil: signAt.Add(k.rotation + k.ttl + clockSkew),
	}
	lk, err := newLoadedKey(rec, priv)
	if err != nil {
		return err
	}
	if err := k.st.PutSigningKey(ctx, rec); err != nil {
		return fmt.Errorf("store signing key: %w", err)
	}
	k.keys = append(k.keys, lk)
	k.current.Store(nil)
	k.log.Info("signing key created", "kid", id, "sign_from", rec.SignFrom, "sign_until", rec.SignUntil)
	return nil
}

// signingKey returns the current key, rotating first when none may sign. It takes the
// keyring's lock only when the key found current last may no longer be.
func (k *Keyring) signingKey(ctx context.Context) (*loadedKey, error) {
	now := k.now()
	if c := k.current.Load(); c != nil && !now.Before(c.from) && now.Before(c.until) {
		return c.key, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	cur, ok := k.currentLocked()
	if !ok {
		if err := k.rotateLocked(ctx, k.now()); err != nil {
			return nil, err
		}
		if cur, ok = k.currentLocked(); !ok {
			return nil, errors.New("no signing key is current after rotation")
		}
	}
	curFrom := signFrom(cur.rec)
	c := &currentKey{key: &cur, from: now, until: cur.rec.SignUntil}
	if curFrom.After(now) {
		c.from = curFrom
	}
	for _, lk := range k.keys {
		// A key starting later than cur takes over from its SignFrom (currentLocked).
		if from := signFrom(lk.rec); from.After(now) && !from.Before(curFrom) && from.Before(c.until) {
			c.until = from
		}
	}
	k.current.Store(c)
	return c.key, nil
}

// PublicKey returns the public key with the given kid if it is still retained. An unknown kid
// makes the keyring re-read the store (rate-limited), so a key created
// by another replica is found.
func (k *Keyring) PublicKey(ctx context.Context, kid string) (*ecdsa.PublicKey, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if pub, ok := k.lookupLocked(kid); ok {
		return pub, true
	}
	if !k.refreshes.Allow() {
		return nil, false
	}
	if err := k.reloadLocked(ctx); err != nil {
		k.log.Warn("reload signing keys", "err", err)
		return nil, false
	}
	return k.lookupLocked(kid)
}

func (k *Keyring) lookupLocked(kid string) (*ecdsa.PublicKey, bool) {
	now := k.now()
	for _, lk := range k.keys {
		if lk.rec.ID == kid && now.Before(lk.rec.RetainUntil) {
			return lk.pub, true
		}
	}
	return nil, false
}

// JWKS returns the public keys of every retained key, oldest first, including a key that is
// published ahead of its signing period.
func (k *Keyring) JWKS() jose.JSONWebKeySet {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	var set jose.JSONWebKeySet
	for _, lk := range k.keys {
		if now.Before(lk.rec.RetainUntil) {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: lk.pub, KeyID: lk.rec.ID, Algorithm: string(signingAlgorithm), Use: "sig"})
		}
	}
	return set
}
