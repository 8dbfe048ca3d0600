package gateway

import "testing"

func TestSplitImage(t *testing.T) {
	t.Parallel()
	tests := []struct{ ref, repo, tag, digest string }{
		{"sortie-agent:latest", "sortie-agent", "latest", ""},
		{"registry.example/sortie-agent:v0.1.0", "registry.example/sortie-agent", "v0.1.0", ""},
		{"registry.example:5000/team/sortie-agent", "registry.example:5000/team/sortie-agent", "latest", ""},
		{"registry.example:5000/sortie-agent:v1", "registry.example:5000/sortie-agent", "v1", ""},
		{"sortie-agent@sha256:0123", "sortie-agent", "", "sha256:0123"},
	}
	for _, tt := range tests {
		repo, tag, digest := splitImage(tt.ref)
		if repo != tt.repo || tag != tt.tag || digest != tt.digest {
			t.Errorf("splitImage(%q) = %q, %q, %q; want %q, %q, %q", tt.ref, repo, tag, digest, tt.repo, tt.tag, tt.digest)
		}
	}
}
