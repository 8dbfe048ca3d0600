package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/hub"
)

// TestManifestRefusesWhatTheHubRefuses: the manifest route checks an agent identifier by the
// rule of Hello.agent_identifier and says what the hub and the agent say, creating nothing.
func TestManifestRefusesWhatTheHubRefuses(t *testing.T) {
	t.Parallel()
	dataDir := newDataDir(t)
	srv := startServer(t, "--addr", "127.0.0.1:0", "--data-dir", dataDir)
	hc := &http.Client{Timeout: 10 * time.Second}
	admin := readAdmin(t, dataDir)
	tok := issueToken(t, hc, srv.Base, admin.ClientID, admin.ClientSecret)
	var before []map[string]any
	call(t, hc, http.MethodGet, srv.Base+"/credentials", tok, nil, http.StatusOK, &before)

	for _, id := range []string{strings.Repeat("a", 64), "prod.eu"} {
		want := hub.CheckIdentifier(id)
		if want == nil {
			t.Fatalf("hub.CheckIdentifier(%q) = nil, want a refusal", id)
		}
		var reply struct {
			Errors []struct {
				Message  string         `json:"message"`
				Metadata map[string]any `json:"metadata"`
			} `json:"errors"`
		}
		call(t, hc, http.MethodGet, srv.Base+"/kubernetes/agent/manifest?agentIdentifier="+id, tok, nil, http.StatusUnprocessableEntity, &reply)
		found := false
		for _, e := range reply.Errors {
			found = found || strings.Contains(e.Message, want.Error())
		}
		if !found {
			t.Errorf("manifest for %.10q: errors %+v, want one saying %q", id, reply.Errors, want)
		}
	}
	var after []map[string]any
	call(t, hc, http.MethodGet, srv.Base+"/credentials", tok, nil, http.StatusOK, &after)
	if len(after) != len(before) {
		t.Errorf("refused manifests changed the credentials: %d before, %d after", len(before), len(after))
	}
}
