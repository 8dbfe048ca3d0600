package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sortie-dev/sortie/seal"
)

// MasterKeySize is the size of the AES-256 master key in bytes.
const MasterKeySize = seal.KeySize

// ErrMasterKeyMismatch means the master key cannot decrypt data sealed earlier: the server
// was started with a different --master-key-file than the one that wrote the store.
var ErrMasterKeyMismatch = errors.New("the master key cannot decrypt the stored signing keys: " +
	"start the server with the master key file that was used when they were created (--master-key-file)")

// LoadOrCreateMasterKey reads the base64 master key at path. When the file does not exist and
// create is true it writes a new random key with mode 0600 and reports created. A file that
// exists but does not hold a 32-byte key is an error.
func LoadOrCreateMasterKey(path string, create bool) (key []byte, created bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		key = make([]byte, MasterKeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, false, fmt.Errorf("generate master key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, fmt.Errorf("create master key directory: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("create master key file: %w", err)
		}
		_, werr := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, false, fmt.Errorf("write master key file: %w", werr)
		}
		return key, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read master key file: %w", err)
	}
	key, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) != MasterKeySize {
		return nil, false, fmt.Errorf("master key file %s must hold %d random bytes in base64", path, MasterKeySize)
	}
	return key, false, nil
}

// sealer is seal.Sealer with identity's error: a value that does not open means the server
// runs with another master key than the one that wrote the store.
type sealer struct {
	s *seal.Sealer
}

func newSealer(masterKey []byte, purpose string) (*sealer, error) {
	s, err := seal.New(masterKey, purpose)
	if err != nil {
		return nil, err
	}
	return &sealer{s: s}, nil
}

// seal encrypts plaintext, binding it to additional data (such as a key id) so a sealed
// value cannot be swapped for another record's.
func (s *sealer) seal(plaintext, additional []byte) ([]byte, error) {
	return s.s.Seal(plaintext, additional)
}

func (s *sealer) open(sealed, additional []byte) ([]byte, error) {
	out, err := s.s.Open(sealed, additional)
	if err != nil {
		return nil, ErrMasterKeyMismatch
	}
	return out, nil
}

// deriveKey derives an independent 32-byte key for one purpose from the master key (the
// client secret hash key; sealing keys are derived inside package seal).
func deriveKey(masterKey []byte, purpose string) []byte {
	m := hmac.New(sha256.New, masterKey)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}
