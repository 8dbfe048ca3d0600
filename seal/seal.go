// Package seal encrypts data at rest with AES-256-GCM under a key derived from the server's
// master key, one key per purpose, so signing keys, manifests and deployment context never
// share a key and a value sealed for one purpose cannot be opened as another.
//
// A sealed value is the random 12-byte nonce followed by the GCM ciphertext and tag. The
// purpose key is HMAC-SHA256(masterKey, "sortie seal " + purpose); the format and the
// derivation are fixed, since values sealed by earlier releases must still open.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// KeySize is the size of the master key in bytes.
const KeySize = 32

// ErrOpen means a sealed value cannot be opened: it was sealed under another master key or
// purpose, bound to other additional data, or altered.
var ErrOpen = errors.New("cannot open sealed value: wrong master key, or the value was altered")

// Sealer seals and opens values for one purpose. It is safe for concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// New returns the sealer for purpose (such as "signing keys") under masterKey, which must be
// KeySize bytes.
func New(masterKey []byte, purpose string) (*Sealer, error) {
	if len(masterKey) != KeySize {
		return nil, fmt.Errorf("master key must be %d bytes, not %d", KeySize, len(masterKey))
	}
	if purpose == "" {
		return nil, errors.New("seal: empty purpose")
	}
	block, err := aes.NewCipher(deriveKey(masterKey, "sortie seal "+purpose))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext, binding it to additional (such as the record's id), so a sealed
// value copied into another record does not open there.
func (s *Sealer) Seal(plaintext, additional []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	nonce := make([]byte, n, n+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plaintext, additional), nil
}

// Open decrypts a value Seal returned for the same additional data, or returns ErrOpen.
func (s *Sealer) Open(sealed, additional []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrOpen
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], additional)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// deriveKey derives an independent 32-byte key for one purpose from the master key.
func deriveKey(masterKey []byte, purpose string) []byte {
	m := hmac.New(sha256.New, masterKey)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}
