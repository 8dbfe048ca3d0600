package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// savedLogin reads the saved login of the user for the test server.
func savedLogin(t *testing.T, u *user) (token string, expires time.Time, raw map[string]any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(u.configDir, "login.json"))
	if err != nil {
		t.Fatal(err)
	}
	var lf struct {
		Logins map[string]struct {
			AccessToken string    `json:"accessToken"`
			ExpiresAt   time.Time `json:"expiresAt"`
		} `json:"logins"`
	}
	if err := json.Unmarshal(b, &lf); err != nil {
		t.Fatal(err)
	}
	e, ok := lf.Logins[u.s.URL]
	if !ok {
		t.Fatalf("no login saved for %s in %s", u.s.URL, b)
	}
	_ = json.Unmarshal(b, &raw)
	return e.AccessToken, e.ExpiresAt, raw
}

// setSavedExpiry rewrites the saved token's expiry.
func setSavedExpiry(t *testing.T, u *user, at time.Time) {
	t.Helper()
	p := filepath.Join(u.configDir, "login.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var lf map[string]map[string]map[string]any
	if err := json.Unmarshal(b, &lf); err != nil {
		t.Fatal(err)
	}
	lf["logins"][u.s.URL]["expiresAt"] = at.Format(time.RFC3339Nano)
	b, _ = json.Marshal(lf)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoginSavesTokenAndLogoutRemovesIt(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	u := s.user(t)

	r := u.mustRun(t, "login", "--client-id", s.ClientID, "--client-secret", s.ClientSecret)
	if !strings.Contains(r.stdout, "Logged in to "+s.URL+" as admin (machine "+s.ClientID) {
		t.Errorf("login printed:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, s.ClientSecret) {
		t.Error("login printed the client secret")
	}
	for p, want := range map[string]os.FileMode{u.configDir: 0o700, filepath.Join(u.configDir, "login.json"): 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %o, want %o", p, got, want)
		}
	}
	tok, exp, _ := savedLogin(t, u)
	if tok == "" || time.Until(exp) < 50*time.Minute {
		t.Fatalf("saved token %q expiring %v", tok, exp)
	}

	// Later commands use the saved token as it is, without credentials.
	u.mustRun(t, "agents", "list")
	if again, _, _ := savedLogin(t, u); again != tok {
		t.Error("a valid saved token was replaced")
	}

	// -o json says who, never the secret or the token.
	js := u.mustRun(t, "login", "--client-id", s.ClientID, "--client-secret", s.ClientSecret, "-o", "json")
	var got map[string]any
	if err := json.Unmarshal([]byte(js.stdout), &got); err != nil {
		t.Fatalf("login -o json: %v\n%s", err, js.stdout)
	}
	if got["clientId"] != s.ClientID || got["addr"] != s.URL || got["name"] != "admin" {
		t.Errorf("login -o json: %v", got)
	}
	newTok, _, _ := savedLogin(t, u)
	if strings.Contains(js.stdout, s.ClientSecret) || strings.Contains(js.stdout, newTok) {
		t.Error("login -o json printed a secret")
	}

	r = u.mustRun(t, "logout")
	if !strings.Contains(r.stdout, "Logged out of "+s.URL) {
		t.Errorf("logout printed %q", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(u.configDir, "login.json")); !os.IsNotExist(err) {
		t.Errorf("login.json still there after logout: %v", err)
	}
	r = u.run(t, "agents", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "not logged in to "+s.URL+": run 'sortie login") {
		t.Errorf("after logout: exit %d, %q", r.code, r.stderr)
	}
}

func TestLoginRefusedCredential(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	u := s.user(t)
	r := u.run(t, "login", "--client-id", s.ClientID, "--client-secret", "wrong-secret")
	if r.code != 1 || !strings.Contains(r.stderr, "the server refused client id \""+s.ClientID+"\"") || strings.Contains(r.stderr, "wrong-secret") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(u.configDir, "login.json")); !os.IsNotExist(err) {
		t.Error("a refused login was saved")
	}
	r = u.run(t, "login", "--client-id", s.ClientID)
	if r.code != 2 || !strings.Contains(r.stderr, "login needs both --client-id and --client-secret") {
		t.Errorf("login with a client id and no secret: exit %d, %q", r.code, r.stderr)
	}
}

func TestTokenRenewal(t *testing.T) {
	t.Parallel()
	s := startServer(t)

	t.Run("expired saved token", func(t *testing.T) {
		u := s.user(t)
		u.login(t)
		old, _, _ := savedLogin(t, u)
		setSavedExpiry(t, u, time.Now().Add(-time.Minute))
		u.mustRun(t, "deploy", "list")
		tok, exp, _ := savedLogin(t, u)
		if tok == old || time.Until(exp) < 50*time.Minute {
			t.Errorf("the expired token was not renewed and saved (same: %v, expires %v)", tok == old, exp)
		}
	})

	t.Run("token the server no longer accepts", func(t *testing.T) {
		u := s.user(t)
		u.login(t)
		old, _, _ := savedLogin(t, u)
		s.idClock.Advance(2 * time.Hour) // the server's clock: the saved token has expired there
		u.mustRun(t, "agents", "list")
		if tok, _, _ := savedLogin(t, u); tok == old {
			t.Error("the refused token was not renewed")
		}
	})

	t.Run("credentials from the environment", func(t *testing.T) {
		u := s.user(t)
		u.env["SORTIE_CLIENT_ID"], u.env["SORTIE_CLIENT_SECRET"] = s.ClientID, s.ClientSecret
		u.mustRun(t, "agents", "list")
		if _, err := os.Stat(filepath.Join(u.configDir, "login.json")); !os.IsNotExist(err) {
			t.Error("credentials from the environment were saved")
		}
	})

	t.Run("expired login of a deleted credential", func(t *testing.T) {
		admin := s.user(t)
		admin.login(t)
		var cred struct{ ClientID, ClientSecret string }
		if err := json.Unmarshal([]byte(admin.mustRun(t, "credentials", "create", "short-lived", "--role", "Deployments Full Access", "-o", "json").stdout), &cred); err != nil {
			t.Fatal(err)
		}
		u := s.user(t)
		u.mustRun(t, "login", "--client-id", cred.ClientID, "--client-secret", cred.ClientSecret)
		admin.mustRun(t, "credentials", "delete", cred.ClientID)
		setSavedExpiry(t, u, time.Now().Add(-time.Minute))
		r := u.run(t, "deploy", "list")
		if r.code != 1 || !strings.Contains(r.stderr, "the saved login to "+s.URL+" has expired and could not be renewed") ||
			!strings.Contains(r.stderr, "run 'sortie login' again") || strings.Contains(r.stderr, cred.ClientSecret) {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}
