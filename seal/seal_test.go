package seal_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/seal"
)

// testKey is the master key 00 01 02 ... 1f.
func testKey() []byte {
	key := make([]byte, seal.KeySize)
	for i := range key {
		key[i] = byte(i)
	}
	return key
}

func mustNew(t *testing.T, key []byte, purpose string) *seal.Sealer {
	t.Helper()
	s, err := seal.New(key, purpose)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOpensValuesOfEarlierReleases opens values sealed by identity's sealer before it moved
// here: signing keys already in users' stores must keep opening.
func TestOpensValuesOfEarlierReleases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		purpose string
		sealed  string
	}{
		{"signing keys", "9c735833161b1b031a4fc2ef112485cd39bdeb2241c497746e8776a6f25ed97d09726cbd9a79e3d2a49e14bde73a5158"},
		{"pipelines", "8365d4bed55cb2a10362f3f221cd33e8084c450fa692dca1d4cf53671ec320678dcf52abdcad303214f0065e3c1ab831"},
	}
	for _, tt := range tests {
		t.Run(tt.purpose, func(t *testing.T) {
			t.Parallel()
			sealed, err := hex.DecodeString(tt.sealed)
			if err != nil {
				t.Fatal(err)
			}
			got, err := mustNew(t, testKey(), tt.purpose).Open(sealed, []byte("kid-1"))
			if err != nil {
				t.Fatalf("Open = %v", err)
			}
			if diff := cmp.Diff("old sealer plaintext", string(got)); diff != "" {
				t.Errorf("plaintext mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	s := mustNew(t, testKey(), "pipelines")
	for _, plaintext := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("manifest "), 10000)} {
		a, err := s.Seal(plaintext, []byte("p1"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Seal(plaintext, []byte("p1"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(a, b) {
			t.Error("sealing the same value twice gave the same bytes; the nonce must be random")
		}
		// A byte or two can turn up in random ciphertext by chance; a longer run cannot.
		if len(plaintext) >= 8 && bytes.Contains(a, plaintext) {
			t.Error("the sealed value contains the plaintext")
		}
		got, err := s.Open(a, []byte("p1"))
		if err != nil {
			t.Fatalf("Open = %v", err)
		}
		if !bytes.Equal(got, plaintext) {
			t.Errorf("Open returned %d bytes, want the %d sealed", len(got), len(plaintext))
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	key := testKey()
	s := mustNew(t, key, "pipelines")
	sealed, err := s.Seal([]byte("secret manifest"), []byte("p1"))
	if err != nil {
		t.Fatal(err)
	}
	otherKey := bytes.Clone(key)
	otherKey[0] ^= 1
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	tests := []struct {
		name       string
		sealer     *seal.Sealer
		sealed     []byte
		additional string
	}{
		{"other master key", mustNew(t, otherKey, "pipelines"), sealed, "p1"},
		{"other purpose", mustNew(t, key, "signing keys"), sealed, "p1"},
		{"other additional data", s, sealed, "p2"},
		{"altered", s, flipped, "p1"},
		{"truncated", s, sealed[:len(sealed)-1], "p1"},
		{"shorter than a nonce", s, sealed[:5], "p1"},
		{"empty", s, nil, "p1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.sealer.Open(tt.sealed, []byte(tt.additional))
			if !errors.Is(err, seal.ErrOpen) || got != nil {
				t.Errorf("Open = %q, %v; want nil, ErrOpen", got, err)
			}
		})
	}
}

func TestNewRefusesBadKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		key     []byte
		purpose string
		want    string
	}{
		{"short key", make([]byte, 16), "pipelines", "master key must be 32 bytes, not 16"},
		{"long key", make([]byte, 33), "pipelines", "master key must be 32 bytes, not 33"},
		{"no key", nil, "pipelines", "master key must be 32 bytes, not 0"},
		{"no purpose", testKey(), "", "seal: empty purpose"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := seal.New(tt.key, tt.purpose)
			if err == nil || err.Error() != tt.want || s != nil {
				t.Errorf("New = %v, %v; want nil, %q", s, err, tt.want)
			}
		})
	}
}
