package identity_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/identity"
)

func TestLoadOrCreateMasterKey(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	path := filepath.Join(dir, "master.key")

	key, created, err := identity.LoadOrCreateMasterKey(path, true)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if !created || len(key) != identity.MasterKeySize {
		t.Fatalf("create: created %v, %d-byte key; want a new %d-byte key", created, len(key), identity.MasterKeySize)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %v, want 0600", got)
	}
	if info, err := os.Stat(dir); err != nil {
		t.Error(err)
	} else if got := info.Mode().Perm(); got != 0o700 {
		t.Errorf("key directory mode = %v, want 0700", got)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(base64.StdEncoding.EncodeToString(key)+"\n", string(data)); diff != "" {
		t.Errorf("key file content mismatch (-want +got):\n%s", diff)
	}

	for _, create := range []bool{true, false} {
		again, created, err := identity.LoadOrCreateMasterKey(path, create)
		if err != nil {
			t.Fatalf("load (create=%v): %v", create, err)
		}
		if created {
			t.Errorf("load (create=%v) reports a new key for an existing file", create)
		}
		if diff := cmp.Diff(key, again); diff != "" {
			t.Errorf("load (create=%v) key mismatch (-want +got):\n%s", create, diff)
		}
	}
}

func TestLoadMasterKeyFormats(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{0xfb, 0xff, 0xbf, 0x01}, identity.MasterKeySize/4)
	std := base64.StdEncoding.EncodeToString(key)
	tests := []struct {
		name    string
		content string
		wantErr bool
	}{
		{name: "trailing newline", content: std + "\n"},
		{name: "no newline", content: std},
		{name: "surrounding whitespace and CRLF", content: "  " + std + "\r\n\r\n"},
		{name: "empty file", content: "", wantErr: true},
		{name: "not base64", content: "this is not a key!", wantErr: true},
		{name: "base64url alphabet", content: base64.URLEncoding.EncodeToString(key), wantErr: true},
		{name: "missing padding", content: base64.RawStdEncoding.EncodeToString(key[:31]), wantErr: true},
		{name: "16-byte key", content: base64.StdEncoding.EncodeToString(key[:16]), wantErr: true},
		{name: "33-byte key", content: base64.StdEncoding.EncodeToString(append(bytes.Clone(key), 0)), wantErr: true},
		{name: "hex key", content: strings.Repeat("ab", identity.MasterKeySize), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "master.key")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, created, err := identity.LoadOrCreateMasterKey(path, true)
			if created {
				t.Error("an existing file was reported as a new key")
			}
			if tt.wantErr {
				want := "master key file " + path + " must hold 32 random bytes in base64"
				if err == nil || err.Error() != want {
					t.Errorf("error = %v, want %q", err, want)
				}
				data, rerr := os.ReadFile(path)
				if rerr != nil || string(data) != tt.content {
					t.Errorf("a malformed key file was changed: %q, %v", data, rerr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadOrCreateMasterKey: %v", err)
			}
			if diff := cmp.Diff(key, got); diff != "" {
				t.Errorf("key mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadMasterKeyMissing(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "master.key")
	key, created, err := identity.LoadOrCreateMasterKey(path, false)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error = %v, want one wrapping fs.ErrNotExist", err)
	}
	if key != nil || created {
		t.Errorf("got a %d-byte key, created %v; want neither", len(key), created)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the key file exists after a load without create: %v", err)
	}
}
