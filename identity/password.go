package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/alexedwards/argon2id"

	"github.com/sortie-dev/sortie/store"
)

// Local users' passwords are hashed with argon2id: 64 MiB, one pass, two lanes (RFC 9106's
// second recommended option, sized for small servers). A hash costs tens of milliseconds and
// 64 MiB, so at most maxConcurrentHashes run at once; more sign-ins wait their turn.
var passwordParams = &argon2id.Params{Memory: 64 * 1024, Iterations: 1, Parallelism: 2, SaltLength: 16, KeyLength: 32}

const (
	// MinPasswordLength is the shortest password a local user may set, in characters.
	MinPasswordLength = 12
	// maxPasswordLength bounds the work one request can ask for.
	maxPasswordLength = 1024
	// maxConcurrentHashes bounds the memory of password hashing.
	maxConcurrentHashes = 4
)

// Failed sign-ins allowed per window: per login from one address, and per address.
const (
	maxSignInFailuresPerLogin   = 5
	maxSignInFailuresPerAddress = 20
)

// ErrWrongPassword is the one answer to a sign-in with an unknown login, a wrong password or
// a user who has no password: it never tells which.
var ErrWrongPassword = errors.New("Wrong login or password.")

// ErrTooManySignIns refuses a sign-in after too many failures in the current window.
var ErrTooManySignIns = errors.New("Too many sign-in attempts; wait a minute and try again.")

// dummyHash is what an unknown login's password is checked against, so that it takes as long
// as a known one's.
var dummyHash = sync.OnceValue(func() string {
	h, err := argon2id.CreateHash("sortie: no such user", passwordParams)
	if err != nil {
		panic(err)
	}
	return h
})

// hashPassword returns the argon2id PHC string of password.
func (s *Service) hashPassword(ctx context.Context, password string) (string, error) {
	if err := s.acquireHasher(ctx); err != nil {
		return "", err
	}
	defer func() { <-s.passwords }()
	return argon2id.CreateHash(password, passwordParams)
}

// passwordMatches checks password against hash (the dummy hash when hash is empty, so that
// the caller's time does not depend on it); a malformed hash never matches.
func (s *Service) passwordMatches(ctx context.Context, password, hash string) (bool, error) {
	if err := s.acquireHasher(ctx); err != nil {
		return false, err
	}
	defer func() { <-s.passwords }()
	if hash == "" {
		_, _ = argon2id.ComparePasswordAndHash(password, dummyHash())
		return false, nil
	}
	ok, err := argon2id.ComparePasswordAndHash(password, hash)
	if err != nil {
		s.log.Error("password check: stored hash is malformed", "err", err)
		return false, nil
	}
	return ok, nil
}

func (s *Service) acquireHasher(ctx context.Context) error {
	select {
	case s.passwords <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkPassword validates a new password.
func checkPassword(verr *ValidationError, field, password string) {
	switch n := utf8.RuneCountInString(password); {
	case n < MinPasswordLength:
		verr.add(field, "must be at least %d characters long", MinPasswordLength)
	case len(password) > maxPasswordLength:
		verr.add(field, "must be at most %d bytes long", maxPasswordLength)
	}
}

// NormalizeLogin returns the form logins are stored and looked up in: trimmed, lower case.
func NormalizeLogin(login string) string { return strings.ToLower(strings.TrimSpace(login)) }

// CheckPassword signs a local user in: it returns the user whose login and password these
// are, ErrWrongPassword (for an unknown login too, after the same work) or ErrTooManySignIns.
// Failures are counted per login from remoteAddr and per remoteAddr, across replicas when the
// store is shared. Any other error means the store could not be read.
func (s *Service) CheckPassword(ctx context.Context, login, password, remoteAddr string) (store.User, error) {
	login = NormalizeLogin(login)
	keys := []string{"signin:l:" + login + "|a:" + remoteAddr, "signin:a:" + remoteAddr}
	maxes := []int64{maxSignInFailuresPerLogin, maxSignInFailuresPerAddress}
	counts, err := s.attempts.Failures(ctx, keys...)
	if err == nil && len(counts) != len(keys) {
		err = fmt.Errorf("%d failure counts for %d keys", len(counts), len(keys))
	}
	if err != nil {
		return store.User{}, fmt.Errorf("sign-in: read failed attempts: %w", err)
	}
	for i, c := range counts {
		if c.Count >= maxes[i] {
			return store.User{}, ErrTooManySignIns
		}
	}
	fail := func() (store.User, error) {
		for _, k := range keys {
			if _, _, err := s.attempts.AddFailure(ctx, k, failureWindowLength); err != nil {
				s.log.Error("sign-in: count failed attempt", "err", err)
			}
		}
		return store.User{}, ErrWrongPassword
	}
	if login == "" || password == "" || len(password) > maxPasswordLength {
		_, _ = s.passwordMatches(ctx, "", "")
		return fail()
	}
	u, err := s.st.LookupUser(ctx, login)
	switch {
	case errors.Is(err, store.ErrNotFound):
		u = store.User{}
	case err != nil:
		return store.User{}, fmt.Errorf("sign-in: look up user: %w", err)
	}
	ok, err := s.passwordMatches(ctx, password, u.PasswordHash)
	if err != nil {
		return store.User{}, err
	}
	if !ok {
		return fail()
	}
	return u, nil
}
