package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// loginFileName is the file in --config-dir holding the saved logins.
const loginFileName = "login.json"

// renewBefore is how long before its expiry a cached token is replaced.
const renewBefore = 30 * time.Second

// loginFile is what login.json holds: one login per server URL. It holds the client secret
// (so that an expired token is renewed without asking), hence mode 0600 in a 0700 directory.
// A person's login (the device flow) holds only the user token: no client id, no secret.
type loginFile struct {
	Logins map[string]loginEntry `json:"logins"`
}

// loginEntry is a saved login for one server.
type loginEntry struct {
	ClientID     string    `json:"clientId"`
	ClientSecret string    `json:"clientSecret"`
	AccessToken  string    `json:"accessToken"`
	ExpiresAt    time.Time `json:"expiresAt"`
	Scope        string    `json:"scope"`
}

func (a *app) loginPath() string { return filepath.Join(a.g.configDir, loginFileName) }

func (a *app) readLogins() (loginFile, error) {
	lf := loginFile{Logins: map[string]loginEntry{}}
	data, err := os.ReadFile(a.loginPath())
	if errors.Is(err, fs.ErrNotExist) {
		return lf, nil
	}
	if err != nil {
		return lf, fmt.Errorf("read the saved login: %w", err)
	}
	if err := json.Unmarshal(data, &lf); err != nil {
		return lf, fmt.Errorf("the saved login %s is damaged (%v): run 'sortie logout' and 'sortie login' again", a.loginPath(), err)
	}
	if lf.Logins == nil {
		lf.Logins = map[string]loginEntry{}
	}
	return lf, nil
}

// writeLogins replaces login.json atomically, mode 0600.
func (a *app) writeLogins(lf loginFile) error {
	if err := os.MkdirAll(a.g.configDir, 0o700); err != nil {
		return fmt.Errorf("create the config directory: %w", err)
	}
	data, err := json.MarshalIndent(lf, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(a.g.configDir, ".login-*.json")
	if err != nil {
		return fmt.Errorf("save the login: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save the login: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save the login: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save the login: %w", err)
	}
	if err := os.Rename(tmp.Name(), a.loginPath()); err != nil {
		return fmt.Errorf("save the login: %w", err)
	}
	return nil
}

// tokenReply is the token endpoint's success body.
type tokenReply struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// fetchToken runs the client-credentials grant.
func (a *app) fetchToken(ctx context.Context, clientID, secret string) (loginEntry, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.g.addr+tokenPath, strings.NewReader(form.Encode()))
	if err != nil {
		return loginEntry{}, fmt.Errorf("build token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := a.env.HTTPClient.Do(req)
	if err != nil {
		return loginEntry{}, transportError(a.g.addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		aerr := readAPIError(resp)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return loginEntry{}, fmt.Errorf("the server refused client id %q and its secret (%w)", clientID, aerr)
		case http.StatusTooManyRequests:
			return loginEntry{}, fmt.Errorf("too many failed logins: wait a minute (%w)", aerr)
		}
		return loginEntry{}, fmt.Errorf("get a token: %w", aerr)
	}
	var tr tokenReply
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		return loginEntry{}, fmt.Errorf("the token endpoint %s/oauth/token did not answer with a token: is --addr a Sortie server?", a.g.addr)
	}
	return loginEntry{ClientID: clientID, ClientSecret: secret, AccessToken: tr.AccessToken,
		ExpiresAt: a.env.Now().Add(time.Duration(tr.ExpiresIn) * time.Second), Scope: tr.Scope}, nil
}

// tokenSource gives a command its bearer token: from --client-id/--client-secret (kept in
// memory), or from the saved login, renewed when it is about to expire or was refused.
type tokenSource struct {
	a     *app
	saved bool // cur comes from login.json and is written back when renewed
	cur   loginEntry
}

func (a *app) tokens() (*tokenSource, error) {
	if a.g.clientID != "" {
		return &tokenSource{a: a, cur: loginEntry{ClientID: a.g.clientID, ClientSecret: a.g.clientSecret}}, nil
	}
	lf, err := a.readLogins()
	if err != nil {
		return nil, err
	}
	e, ok := lf.Logins[a.g.addr]
	if !ok {
		return nil, fmt.Errorf("not logged in to %s: run 'sortie login' (a person, approving in the browser) or 'sortie login --client-id ID --client-secret SECRET' (or set SORTIE_CLIENT_ID and SORTIE_CLIENT_SECRET)", a.g.addr)
	}
	return &tokenSource{a: a, saved: true, cur: e}, nil
}

func (ts *tokenSource) renewable() bool { return ts.cur.ClientSecret != "" }

// get returns a valid token; renew forces a new one.
func (ts *tokenSource) get(ctx context.Context, renew bool) (string, error) {
	if !renew && ts.cur.AccessToken != "" && ts.a.env.Now().Add(renewBefore).Before(ts.cur.ExpiresAt) {
		return ts.cur.AccessToken, nil
	}
	if ts.cur.ClientSecret == "" {
		if ts.cur.ClientID == "" { // a person's sign-in (device flow): nothing to renew it with
			if renew {
				return "", fmt.Errorf("your sign-in to %s was refused (removed from the environment, or the password changed): run 'sortie login'", ts.a.g.addr)
			}
			return "", fmt.Errorf("your sign-in to %s has expired: run 'sortie login'", ts.a.g.addr)
		}
		return "", fmt.Errorf("the login to %s has expired: run 'sortie login' again", ts.a.g.addr)
	}
	e, err := ts.a.fetchToken(ctx, ts.cur.ClientID, ts.cur.ClientSecret)
	if err != nil {
		if ts.saved {
			what := "has expired"
			if renew { // the server refused a token that had not expired: deleted, or changed
				what = "was refused"
			}
			return "", fmt.Errorf("the saved login to %s %s and could not be renewed: %w; run 'sortie login' again", ts.a.g.addr, what, err)
		}
		return "", err
	}
	ts.cur = e
	if ts.saved {
		lf, err := ts.a.readLogins()
		if err != nil {
			return "", err
		}
		lf.Logins[ts.a.g.addr] = e
		if err := ts.a.writeLogins(lf); err != nil {
			return "", err
		}
	}
	return e.AccessToken, nil
}

// client returns an API client with the command's credentials.
func (a *app) client() (*client, error) {
	ts, err := a.tokens()
	if err != nil {
		return nil, err
	}
	return &client{base: a.g.addr, http: a.env.HTTPClient, token: ts}, nil
}

// principal is the part of the token's principal claim the CLI shows.
type principal struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	OrgName string   `json:"orgName"`
	EnvID   string   `json:"envId"`
	Roles   []string `json:"roles"`
}

// principalOf reads the principal claim of a token the server has just issued (for display
// only; the server verifies tokens).
func principalOf(token string) principal {
	var p principal
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return p
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return p
	}
	var claims map[string]json.RawMessage
	if json.Unmarshal(payload, &claims) == nil {
		_ = json.Unmarshal(claims["https://cloud.armory.io/principal"], &p)
	}
	return p
}

// loginResult is what login prints with -o json|yaml (never the secret or the token).
type loginResult struct {
	Addr             string   `json:"addr"`
	ClientID         string   `json:"clientId"`
	Name             string   `json:"name"`
	Type             string   `json:"type"`
	EnvID            string   `json:"envId"`
	Roles            []string `json:"roles"`
	Scope            string   `json:"scope"`
	ExpiresAtIso8601 string   `json:"expiresAtIso8601"`
	SavedIn          string   `json:"savedIn"`
}

func (a *app) loginCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "login",
		Short: "Sign in (as a person in the browser, or with a machine credential) and save the login",
		Long: `login without --client-id and --client-secret signs a person in with the OAuth 2.0 device
authorization grant: it prints a URL and a code such as BCDF-GHJK, you open the URL, sign in
and approve the code, and login saves your user token in --config-dir/login.json. It waits
for the approval (polling the server no faster than it asks) and fails with exit code 1 when
the sign-in is denied or the code expires (10 minutes). When the token expires, commands say
so: run 'sortie login' again.

With --client-id and --client-secret, login gets a token with the OAuth 2.0
client-credentials grant and saves the credential and the token in
--config-dir/login.json (mode 0600), one login per server. Later commands use the saved
token and renew it when it expires. 'sortie logout' removes it.

Without a saved login, every command also accepts --client-id and --client-secret (or
SORTIE_CLIENT_ID and SORTIE_CLIENT_SECRET) and then saves nothing.`,
		Example: `  sortie login --addr https://sortie.example.com
  sortie login --client-id "$(jq -r .clientId data/admin-credentials.json)" \
               --client-secret "$(jq -r .clientSecret data/admin-credentials.json)"
  SORTIE_CLIENT_ID=... SORTIE_CLIENT_SECRET=... sortie login --addr https://sortie.example.com`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (a.g.clientID == "") != (a.g.clientSecret == "") {
				return usagef("login needs both --client-id and --client-secret (or SORTIE_CLIENT_ID and SORTIE_CLIENT_SECRET), or neither to sign in as a person in the browser")
			}
			lf, err := a.readLogins()
			if err != nil {
				return err
			}
			var e loginEntry
			if a.g.clientID == "" {
				e, err = a.deviceLogin(cmd.Context())
			} else {
				e, err = a.fetchToken(cmd.Context(), a.g.clientID, a.g.clientSecret)
			}
			if err != nil {
				return err
			}
			lf.Logins[a.g.addr] = e
			if err := a.writeLogins(lf); err != nil {
				return err
			}
			p := principalOf(e.AccessToken)
			res := loginResult{Addr: a.g.addr, ClientID: e.ClientID, Name: p.Name, Type: p.Type, EnvID: p.EnvID,
				Roles: nonNil(p.Roles), Scope: e.Scope, ExpiresAtIso8601: e.ExpiresAt.UTC().Format(time.RFC3339), SavedIn: a.loginPath()}
			return a.print(res, func(w *textWriter) {
				if res.ClientID == "" {
					w.linef("Logged in to %s as %s (%s, environment %s).", res.Addr, res.Name, res.Type, res.EnvID)
					w.linef("Scopes: %s", res.Scope)
					w.linef("Token valid until %s; then run 'sortie login' again. Saved in %s.", res.ExpiresAtIso8601, res.SavedIn)
					return
				}
				w.linef("Logged in to %s as %s (%s %s, environment %s).", res.Addr, res.Name, res.Type, res.ClientID, res.EnvID)
				w.linef("Scopes: %s", res.Scope)
				w.linef("Token valid until %s; renewed automatically. Saved in %s.", res.ExpiresAtIso8601, res.SavedIn)
			})
		},
	}
}

func (a *app) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "logout",
		Short:   "Remove the saved login to the server",
		Example: `  sortie logout --addr http://127.0.0.1:8080`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(_ *cobra.Command, _ []string) error {
			lf, err := a.readLogins()
			if err != nil {
				return err
			}
			_, had := lf.Logins[a.g.addr]
			delete(lf.Logins, a.g.addr)
			if had {
				if len(lf.Logins) == 0 {
					if err := os.Remove(a.loginPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
						return fmt.Errorf("remove the saved login: %w", err)
					}
				} else if err := a.writeLogins(lf); err != nil {
					return err
				}
			}
			res := map[string]any{"addr": a.g.addr, "loggedOut": had}
			return a.print(res, func(w *textWriter) {
				if had {
					w.linef("Logged out of %s.", a.g.addr)
				} else {
					w.linef("Not logged in to %s; nothing to do.", a.g.addr)
				}
			})
		},
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
