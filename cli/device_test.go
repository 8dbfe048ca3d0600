package cli_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sortie-dev/sortie/cli"
	identityv1 "github.com/sortie-dev/sortie/gen/sortie/identity/v1"
	"github.com/sortie-dev/sortie/gen/sortie/identity/v1/identityv1connect"
	"github.com/sortie-dev/sortie/identity"
)

// personToken makes login an Organization Admin of the admin's environment, through an
// invitation, and returns a bearer token of that person (as a console session would hold).
func (s *server) personToken(t *testing.T, login string) string {
	t.Helper()
	ctx := context.Background()
	admin, err := s.id.Verify(ctx, s.token(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	_, link, err := s.id.CreateInvitation(ctx, admin, login, []string{identity.RoleOrganizationAdmin}, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, secret, _ := strings.Cut(link, "#token=")
	u, _, err := s.id.AcceptInvitation(ctx, secret, login, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.id.IssueUserToken(ctx, u, admin.EnvID, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// TestDeviceLogin runs `sortie login` with no client secret against a real server: the
// test reads the code it prints and approves (or denies) it through IdentityService, as the
// console's device page does.
func TestDeviceLogin(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	approver := identityv1connect.NewIdentityServiceClient(http.DefaultClient, s.URL,
		connect.WithInterceptors(bearerHeader(s.personToken(t, "jane@example.com"))))
	codeLine := regexp.MustCompile(`Open (\S+) and enter the code ([A-Z]{4}-[A-Z]{4})\n`)

	for _, tc := range []struct {
		name string
		deny bool
	}{{"approved", false}, {"denied", true}} {
		t.Run(tc.name, func(t *testing.T) {
			u := s.user(t)
			// The first wait passes at once (the first poll is pending); later waits hold until
			// the test has answered the code. Each wait moves the server's clock by the interval,
			// so the polls are never too fast for it.
			answered := make(chan struct{})
			var polls atomic.Int32
			u.sleep = func(ctx context.Context, d time.Duration) error {
				s.idClock.Advance(d)
				if polls.Add(1) > 1 {
					select {
					case <-answered:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errb syncBuffer
			done := make(chan int, 1)
			go func() { done <- cli.Run(ctx, []string{"login"}, u.cliEnv(&out, &errb)) }()
			var m []string
			waitUntil(t, 10*time.Second, "the code on the terminal", func() bool {
				m = codeLine.FindStringSubmatch(errb.String())
				return m != nil
			})
			if m[1] != s.URL+"/console/device" || !strings.Contains(errb.String(), s.URL+"/console/device?user_code="+m[2]) {
				t.Errorf("instructions %q: want the verification URL and the complete one", errb.String())
			}
			waitUntil(t, 10*time.Second, "the first poll", func() bool { return polls.Load() > 1 })
			if _, err := approver.ApproveDevice(ctx, connect.NewRequest(&identityv1.ApproveDeviceRequest{UserCode: m[2], Deny: tc.deny})); err != nil {
				t.Fatalf("answer the code: %v", err)
			}
			close(answered)
			code := <-done
			checkNoTrace(t, errb.String())
			if tc.deny {
				if code != cli.ExitFailure || !strings.Contains(errb.String(), "the sign-in was denied; nothing was saved") {
					t.Errorf("denied login: exit %d, stderr %q", code, errb.String())
				}
				if _, err := os.Stat(filepath.Join(u.configDir, "login.json")); !os.IsNotExist(err) {
					t.Error("a denied login was saved")
				}
				return
			}
			if code != cli.ExitOK || !strings.Contains(out.String(), "Logged in to "+s.URL+" as jane@example.com (user, environment ") {
				t.Fatalf("login: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
			}
			token, _, raw := savedLogin(t, u)
			entry, _ := raw["logins"].(map[string]any)[s.URL].(map[string]any)
			if token == "" || entry["clientSecret"] != "" || entry["clientId"] != "" {
				t.Errorf("saved device login: clientId %q, clientSecret %q, a token: %t; want a token and no credential",
					entry["clientId"], entry["clientSecret"], token != "")
			}
			r := u.run(t, "credentials", "list")
			if r.code != cli.ExitOK {
				t.Fatalf("a command with the device login: exit %d, %q", r.code, r.stderr)
			}
			setSavedExpiry(t, u, time.Now().Add(-time.Minute))
			r = u.run(t, "credentials", "list")
			if r.code != cli.ExitFailure || !strings.Contains(r.stderr, "your sign-in to "+s.URL+" has expired: run 'sortie login'") {
				t.Errorf("after the token expired: exit %d, %q", r.code, r.stderr)
			}
		})
	}
}

// bearerHeader sends token with every unary call.
func bearerHeader(token string) connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	})
}
