package gateway_test

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestKeyRotationOverHTTP: a token signed before a rotation keeps working through REST until
// it expires and not after; the JWKS serves both keys while old tokens may live, then drops
// the old one.
func TestKeyRotationOverHTTP(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	ctx := context.Background()
	oldKeys := fetchJWKS(t, ts)
	if len(oldKeys) != 1 {
		t.Fatalf("JWKS before rotation has %d keys, want 1", len(oldKeys))
	}

	// A token signed by the first key ten minutes before the rotation (every 24 h), then
	// the rotation.
	ts.clock.Advance(24*time.Hour - 10*time.Minute)
	old := ts.adminToken(t)
	ts.clock.Advance(11 * time.Minute)
	if err := ts.svc.Keys().Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	fresh := ts.adminToken(t)
	keys := fetchJWKS(t, ts)
	if len(keys) != 2 {
		t.Fatalf("JWKS after rotation has %d keys, want the old and the new", len(keys))
	}
	hOld, _ := verifyES256(t, old, keys)
	hNew, _ := verifyES256(t, fresh, keys)
	if hOld["kid"] == hNew["kid"] || hOld["kid"] != oldKeys[0].Kid {
		t.Fatalf("kids: old token %v, new token %v, first key %v", hOld["kid"], hNew["kid"], oldKeys[0].Kid)
	}
	for name, tok := range map[string]string{"old key": old, "new key": fresh} {
		if r := ts.do(t, "GET", "/credentials", tok, nil); r.Status != http.StatusOK {
			t.Errorf("token of the %s right after rotation: %d %s", name, r.Status, r.Body)
		}
	}

	// The old token expires an hour after it was issued (plus the clock skew).
	ts.clock.Advance(50*time.Minute + 31*time.Second)
	wantError(t, "old token after it expired", ts.do(t, "GET", "/credentials", old, nil), http.StatusUnauthorized)

	// Once every token the old key signed has expired, its public key leaves the JWKS.
	ts.clock.Advance(time.Hour)
	if err := ts.svc.Keys().Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if keys := fetchJWKS(t, ts); len(keys) != 1 || keys[0].Kid != hNew["kid"] {
		t.Fatalf("JWKS after the old key's tokens expired: %+v, want only the new key", keys)
	}
	fresh = ts.adminToken(t)
	if r := ts.do(t, "GET", "/credentials", fresh, nil); r.Status != http.StatusOK {
		t.Errorf("token of the new key: %d %s", r.Status, r.Body)
	}
}
