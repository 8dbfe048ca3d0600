package controlplane

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sortie-dev/sortie/identity"
)

func TestPrintAdminCredential(t *testing.T) {
	t.Parallel()
	present := filepath.Join(t.TempDir(), "admin-credentials.json")
	if err := os.WriteFile(present, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(t.TempDir(), "admin-credentials.json")
	tests := []struct {
		name string
		boot identity.BootstrapResult
		want string
	}{
		{"first start", identity.BootstrapResult{Created: true, Path: present, Admin: identity.AdminCredential{ClientID: "id1", ClientSecret: "s3cret", AdminLogin: "admin", AdminPassword: "pa55word-pa55word"}},
			"also saved to " + present + "):\n  client id:     id1\n  client secret: s3cret\n  console login: admin\n  password:      pa55word-pa55word\n"},
		{"restart on the same machine", identity.BootstrapResult{Path: present, Host: "node-a"}, "Admin credential: see " + present + " (written by the first start).\n"},
		{"replica on another machine", identity.BootstrapResult{Path: present, Host: "node-b"}, "Admin credential: see " + present + " on node-b (written by the first start there; this replica has no copy).\n"},
		{"file removed since", identity.BootstrapResult{Path: gone, Host: "node-a"}, "which is gone"},
		{"store from an older version", identity.BootstrapResult{}, "does not record on which machine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			printAdminCredential(&out, tt.boot, "node-a")
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("printed %q, want it to contain %q", out.String(), tt.want)
			}
		})
	}
}
