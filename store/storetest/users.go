package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/store"
)

// user returns a user of orgID with a password and two memberships, given out of order.
func user(orgID, id, login string) store.User {
	return store.User{
		ID:           id,
		OrgID:        orgID,
		Login:        login,
		Name:         "Name of " + id,
		PasswordHash: "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA",
		Memberships: []store.Membership{
			{EnvID: "prod", Roles: []string{"viewer"}},
			{EnvID: "dev", Roles: []string{"admin", "deployer"}},
		},
		CreatedAt: at(0),
		UpdatedAt: at(0),
	}
}

// storedUser is u as the store keeps it: Revision 1, memberships ordered by EnvID.
func storedUser(u store.User) store.User {
	u.Revision = 1
	u.Memberships = []store.Membership{u.Memberships[1], u.Memberships[0]}
	return u
}

// refused reports an error that is not a refusal of bad input: nil or a sentinel.
func refused(err error) bool {
	return err != nil && !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) &&
		!errors.Is(err, store.ErrStale) && !errors.Is(err, store.ErrUnavailable)
}

func testUsers(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice, bob := user("acme", "u-alice", "alice@acme.test"), user("acme", "u-bob", "bob")
	carol := user("globex", "u-carol", "carol@globex.test")
	carol.PasswordHash, carol.External = "", "https://idp.test carol-sub"
	carol.Memberships = []store.Membership{{EnvID: "z", Roles: []string{"viewer"}}, {EnvID: "a"}}
	for _, u := range []store.User{bob, alice, carol} {
		got := ok(s.CreateUser(ctx, u))(t)
		want := storedUser(u)
		diff(t, "CreateUser "+u.ID, want, got)
	}
	alice, bob, carol = storedUser(alice), storedUser(bob), storedUser(carol)

	t.Run("get and look up", func(t *testing.T) {
		diff(t, "GetUser", alice, ok(s.GetUser(ctx, "acme", "u-alice"))(t))
		diff(t, "LookupUser", carol, ok(s.LookupUser(ctx, "carol@globex.test"))(t))
		m, found := ok(s.GetUser(ctx, "acme", "u-bob"))(t).Member("dev")
		diff(t, "bob's dev membership", store.Membership{EnvID: "dev", Roles: []string{"admin", "deployer"}}, m)
		if !found {
			t.Error("bob's dev membership is missing")
		}
	})
	t.Run("list ordered by login", func(t *testing.T) {
		diff(t, "ListUsers acme", []store.User{alice, bob}, ok(s.ListUsers(ctx, "acme"))(t))
		diff(t, "ListUsers globex", []store.User{carol}, ok(s.ListUsers(ctx, "globex"))(t))
		diff(t, "ListUsers of an organization without users", []store.User(nil), ok(s.ListUsers(ctx, "initech"))(t))
	})

	checkErrors(t, []errCase{
		{"duplicate id", func(ctx context.Context) error {
			return errOf(s.CreateUser(ctx, user("acme", "u-alice", "alice2")))
		}, store.ErrConflict},
		{"duplicate id in another organization", func(ctx context.Context) error {
			return errOf(s.CreateUser(ctx, user("globex", "u-alice", "alice3")))
		}, store.ErrConflict},
		{"login taken in the organization", func(ctx context.Context) error {
			return errOf(s.CreateUser(ctx, user("acme", "u-alice2", "alice@acme.test")))
		}, store.ErrConflict},
		{"login taken in another organization", func(ctx context.Context) error {
			return errOf(s.CreateUser(ctx, user("globex", "u-alice2", "alice@acme.test")))
		}, store.ErrConflict},
		{"get through another organization", func(ctx context.Context) error {
			return errOf(s.GetUser(ctx, "globex", "u-alice"))
		}, store.ErrNotFound},
		{"get missing", func(ctx context.Context) error { return errOf(s.GetUser(ctx, "acme", "u-nobody")) }, store.ErrNotFound},
		{"look up missing", func(ctx context.Context) error { return errOf(s.LookupUser(ctx, "nobody")) }, store.ErrNotFound},
		{"update through another organization", func(ctx context.Context) error {
			u := alice
			u.OrgID = "globex"
			return errOf(s.UpdateUser(ctx, u))
		}, store.ErrNotFound},
		{"update missing", func(ctx context.Context) error {
			return errOf(s.UpdateUser(ctx, storedUser(user("acme", "u-nobody", "nobody"))))
		}, store.ErrNotFound},
		{"update stale", func(ctx context.Context) error {
			u := alice
			u.Revision = 2
			return errOf(s.UpdateUser(ctx, u))
		}, store.ErrStale},
		{"delete through another organization", func(ctx context.Context) error {
			return s.DeleteUser(ctx, "globex", "u-alice", alice.Revision)
		}, store.ErrNotFound},
		{"delete missing", func(ctx context.Context) error { return s.DeleteUser(ctx, "acme", "u-nobody", 1) }, store.ErrNotFound},
		{"delete stale", func(ctx context.Context) error { return s.DeleteUser(ctx, "acme", "u-alice", alice.Revision+1) }, store.ErrStale},
	})
	t.Run("failed calls change nothing", func(t *testing.T) {
		diff(t, "ListUsers acme", []store.User{alice, bob}, ok(s.ListUsers(ctx, "acme"))(t))
		diff(t, "ListUsers globex", []store.User{carol}, ok(s.ListUsers(ctx, "globex"))(t))
		if _, err := s.LookupUser(ctx, "alice2"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("LookupUser of a refused login = %v, want ErrNotFound", err)
		}
	})

	t.Run("update", func(t *testing.T) {
		u := alice
		u.Login, u.CreatedAt = "mallory", at(time.Hour) // never change
		u.Name, u.PasswordHash, u.External = "Alice A.", "", "https://idp.test alice-sub"
		u.Memberships = []store.Membership{{EnvID: "qa", Roles: []string{"admin"}}, {EnvID: "dev"}}
		u.TokensNotBefore = at(30 * time.Second)
		u.UpdatedAt = at(time.Minute)
		want := alice
		want.Name, want.PasswordHash, want.External = u.Name, u.PasswordHash, u.External
		want.TokensNotBefore = u.TokensNotBefore
		want.Memberships = []store.Membership{{EnvID: "dev"}, {EnvID: "qa", Roles: []string{"admin"}}}
		want.UpdatedAt, want.Revision = at(time.Minute), 2
		diff(t, "UpdateUser", want, ok(s.UpdateUser(ctx, u))(t))
		diff(t, "GetUser after update", want, ok(s.GetUser(ctx, "acme", "u-alice"))(t))
		diff(t, "LookupUser by the unchanged login", want, ok(s.LookupUser(ctx, "alice@acme.test"))(t))
		if _, err := s.LookupUser(ctx, "mallory"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("LookupUser of the login an update tried to set = %v, want ErrNotFound", err)
		}
		if _, err := s.UpdateUser(ctx, u); !errors.Is(err, store.ErrStale) {
			t.Errorf("UpdateUser at the old revision = %v, want ErrStale", err)
		}
		want.Name, want.Revision = "Alice", 3
		u = ok(s.GetUser(ctx, "acme", "u-alice"))(t)
		u.Name = "Alice"
		diff(t, "UpdateUser at revision 2", want, ok(s.UpdateUser(ctx, u))(t))
		alice = want
	})

	t.Run("delete frees the login and the id", func(t *testing.T) {
		// A delete conditioned on a revision the user has left changes nothing.
		bob := ok(s.GetUser(ctx, "acme", "u-bob"))(t)
		read := bob.Revision
		bob = ok(s.UpdateUser(ctx, bob))(t)
		if err := s.DeleteUser(ctx, "acme", "u-bob", read); !errors.Is(err, store.ErrStale) {
			t.Fatalf("DeleteUser at the revision before an update = %v, want ErrStale", err)
		}
		diff(t, "GetUser after a stale delete", bob, ok(s.GetUser(ctx, "acme", "u-bob"))(t))
		must(t, s.DeleteUser(ctx, "acme", "u-bob", bob.Revision))
		checkErrors(t, []errCase{
			{"get", func(ctx context.Context) error { return errOf(s.GetUser(ctx, "acme", "u-bob")) }, store.ErrNotFound},
			{"look up", func(ctx context.Context) error { return errOf(s.LookupUser(ctx, "bob")) }, store.ErrNotFound},
			{"delete again", func(ctx context.Context) error { return s.DeleteUser(ctx, "acme", "u-bob", bob.Revision) }, store.ErrNotFound},
		})
		diff(t, "ListUsers acme", []store.User{alice}, ok(s.ListUsers(ctx, "acme"))(t))
		// The login in another organization, under another id.
		bob2 := user("globex", "u-bob2", "bob")
		diff(t, "CreateUser with the freed login", storedUser(bob2), ok(s.CreateUser(ctx, bob2))(t))
		diff(t, "LookupUser of the freed login", storedUser(bob2), ok(s.LookupUser(ctx, "bob"))(t))
		bob3 := user("acme", "u-bob", "bob3")
		diff(t, "CreateUser with the freed id", storedUser(bob3), ok(s.CreateUser(ctx, bob3))(t))
	})
}

// testUsersBadInput checks that users without their identity, or with memberships that do
// not name distinct environments, are refused with a non-sentinel error and leave nothing.
func testUsersBadInput(t *testing.T, s store.Store) {
	ctx := t.Context()
	stored := ok(s.CreateUser(ctx, user("acme", "u-alice", "alice")))(t)
	noEnv := user("acme", "u-x", "x")
	noEnv.Memberships = []store.Membership{{Roles: []string{"admin"}}}
	twice := user("acme", "u-x", "x")
	twice.Memberships = []store.Membership{{EnvID: "prod"}, {EnvID: "prod", Roles: []string{"admin"}}}
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"create without id", func(ctx context.Context) error { return errOf(s.CreateUser(ctx, user("acme", "", "x"))) }},
		{"create without organization", func(ctx context.Context) error { return errOf(s.CreateUser(ctx, user("", "u-x", "x"))) }},
		{"create without login", func(ctx context.Context) error { return errOf(s.CreateUser(ctx, user("acme", "u-x", ""))) }},
		{"create with a membership of no environment", func(ctx context.Context) error { return errOf(s.CreateUser(ctx, noEnv)) }},
		{"create with two memberships of one environment", func(ctx context.Context) error { return errOf(s.CreateUser(ctx, twice)) }},
		{"update with two memberships of one environment", func(ctx context.Context) error {
			u := stored
			u.Memberships = twice.Memberships
			return errOf(s.UpdateUser(ctx, u))
		}},
		{"update without id", func(ctx context.Context) error {
			u := stored
			u.ID = ""
			return errOf(s.UpdateUser(ctx, u))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(t.Context()); !refused(err) {
				t.Errorf("error = %v, want a refusal that is none of the sentinels", err)
			}
		})
	}
	diff(t, "ListUsers", []store.User{stored}, ok(s.ListUsers(ctx, "acme"))(t))
	diff(t, "GetUser", stored, ok(s.GetUser(ctx, "acme", "u-alice"))(t))
	if _, err := s.LookupUser(ctx, "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LookupUser of a refused user = %v, want ErrNotFound", err)
	}
}

// testUsersRace creates one login under many ids in many organizations at once, as replicas
// would, and updates one user at one revision from many callers: exactly one wins each.
func testUsersRace(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.CreateUser(ctx, user(fmt.Sprintf("org-%d", i%3), fmt.Sprintf("u-%d", i), "contested"))
		})
	}
	wg.Wait()
	winner := oneWinner(t, errs, store.ErrConflict)
	got := ok(s.LookupUser(ctx, "contested"))(t)
	if want := fmt.Sprintf("u-%d", winner); got.ID != want {
		t.Errorf("LookupUser = %s, want the winner %s", got.ID, want)
	}
	total := 0
	for i := range 3 {
		total += len(ok(s.ListUsers(ctx, fmt.Sprintf("org-%d", i)))(t))
	}
	if total != 1 {
		t.Errorf("%d users stored, want 1", total)
	}

	for i := range n {
		wg.Go(func() {
			u := got
			u.Name = fmt.Sprintf("name %d", i)
			_, errs[i] = s.UpdateUser(ctx, u)
		})
	}
	wg.Wait()
	winner = oneWinner(t, errs, store.ErrStale)
	after := ok(s.GetUser(ctx, got.OrgID, got.ID))(t)
	if want := fmt.Sprintf("name %d", winner); after.Name != want || after.Revision != 2 {
		t.Errorf("user after racing updates = %q at revision %d, want %q at 2", after.Name, after.Revision, want)
	}
}

// oneWinner checks that exactly one of errs is nil and the others are lost, and returns the
// winner's index.
func oneWinner(t *testing.T, errs []error, lost error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("callers %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, lost):
			t.Errorf("caller %d: error = %v, want nil or %v", i, err, lost)
		}
	}
	if winner < 0 {
		t.Fatal("no caller won")
	}
	return winner
}

// ticket returns a ticket expiring in a minute.
func ticket(kind, id, value string) store.Ticket {
	return store.Ticket{Kind: kind, ID: id, Value: []byte(value), ExpiresAt: time.Now().Add(time.Minute).Truncate(time.Microsecond)}
}

func testTickets(t *testing.T, s store.Store) {
	ctx := t.Context()
	code := ticket(store.TicketAuthCode, "c1", "code one")
	// The same id under another kind is another ticket.
	session := ticket(store.TicketSession, "c1", "session one")
	invites := []store.Ticket{
		ticket(store.TicketInvitation, "acme/prod/i2", "two"),
		ticket(store.TicketInvitation, "acme/prod/i1", "one"),
		ticket(store.TicketInvitation, "acme/dev/i3", "three"),
		ticket(store.TicketInvitation, "acme/prod2/i4", "four"),
		ticket(store.TicketInvitation, "globex/prod/i5", "five"),
	}
	for _, tk := range append([]store.Ticket{code, session}, invites...) {
		must(t, s.PutTicket(ctx, tk))
	}

	t.Run("get", func(t *testing.T) {
		diff(t, "GetTicket authcode", code, ok(s.GetTicket(ctx, store.TicketAuthCode, "c1"))(t))
		diff(t, "GetTicket session", session, ok(s.GetTicket(ctx, store.TicketSession, "c1"))(t))
	})
	t.Run("list by prefix ordered by id", func(t *testing.T) {
		tests := []struct {
			prefix string
			want   []store.Ticket
		}{
			{"", []store.Ticket{invites[2], invites[1], invites[0], invites[3], invites[4]}},
			{"acme/", []store.Ticket{invites[2], invites[1], invites[0], invites[3]}},
			{"acme/prod/", []store.Ticket{invites[1], invites[0]}},
			{"acme/prod/i1", []store.Ticket{invites[1]}},
			{"initech/", nil},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%q", tt.prefix), func(t *testing.T) {
				diff(t, "ListTickets", tt.want, ok(s.ListTickets(ctx, store.TicketInvitation, tt.prefix))(t))
			})
		}
		diff(t, "ListTickets of a kind without tickets", []store.Ticket(nil), ok(s.ListTickets(ctx, store.TicketDeviceCode, ""))(t))
	})

	checkErrors(t, []errCase{
		{"put over a live ticket", func(ctx context.Context) error {
			return s.PutTicket(ctx, ticket(store.TicketAuthCode, "c1", "other"))
		}, store.ErrConflict},
		{"get missing", func(ctx context.Context) error {
			return errOf(s.GetTicket(ctx, store.TicketAuthCode, "c2"))
		}, store.ErrNotFound},
		{"get under another kind", func(ctx context.Context) error {
			return errOf(s.GetTicket(ctx, store.TicketAuthRequest, "c1"))
		}, store.ErrNotFound},
		{"swap with a wrong old value", func(ctx context.Context) error {
			return s.SwapTicket(ctx, store.TicketAuthCode, "c1", []byte("code two"), []byte("x"))
		}, store.ErrStale},
		{"swap missing", func(ctx context.Context) error {
			return s.SwapTicket(ctx, store.TicketAuthCode, "c2", []byte("code one"), []byte("x"))
		}, store.ErrNotFound},
		{"take missing", func(ctx context.Context) error {
			return errOf(s.TakeTicket(ctx, store.TicketAuthCode, "c2"))
		}, store.ErrNotFound},
	})
	t.Run("failed calls change nothing", func(t *testing.T) {
		diff(t, "GetTicket", code, ok(s.GetTicket(ctx, store.TicketAuthCode, "c1"))(t))
	})

	t.Run("swap keeps the expiry", func(t *testing.T) {
		must(t, s.SwapTicket(ctx, store.TicketSession, "c1", []byte("session one"), []byte("session two")))
		want := session
		want.Value = []byte("session two")
		diff(t, "GetTicket after swap", want, ok(s.GetTicket(ctx, store.TicketSession, "c1"))(t))
		if err := s.SwapTicket(ctx, store.TicketSession, "c1", []byte("session one"), []byte("three")); !errors.Is(err, store.ErrStale) {
			t.Errorf("SwapTicket from the old value = %v, want ErrStale", err)
		}
		must(t, s.SwapTicket(ctx, store.TicketSession, "c1", []byte("session two"), nil))
		want.Value = nil
		diff(t, "GetTicket after swap to empty", want, ok(s.GetTicket(ctx, store.TicketSession, "c1"))(t))
	})

	t.Run("take", func(t *testing.T) {
		diff(t, "TakeTicket", code, ok(s.TakeTicket(ctx, store.TicketAuthCode, "c1"))(t))
		if _, err := s.TakeTicket(ctx, store.TicketAuthCode, "c1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second TakeTicket = %v, want ErrNotFound", err)
		}
		if _, err := s.GetTicket(ctx, store.TicketAuthCode, "c1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetTicket of a taken ticket = %v, want ErrNotFound", err)
		}
		// A taken id is free again.
		must(t, s.PutTicket(ctx, ticket(store.TicketAuthCode, "c1", "again")))
	})

	t.Run("delete", func(t *testing.T) {
		must(t, s.DeleteTicket(ctx, store.TicketInvitation, "acme/prod/i1"))
		if _, err := s.GetTicket(ctx, store.TicketInvitation, "acme/prod/i1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetTicket of a deleted ticket = %v, want ErrNotFound", err)
		}
		diff(t, "ListTickets after delete", []store.Ticket{invites[0]}, ok(s.ListTickets(ctx, store.TicketInvitation, "acme/prod/"))(t))
		if err := s.DeleteTicket(ctx, store.TicketInvitation, "acme/prod/i1"); err != nil {
			t.Errorf("DeleteTicket of a missing ticket = %v, want nil", err)
		}
		if err := s.DeleteTicket(ctx, store.TicketDeviceUser, "none"); err != nil {
			t.Errorf("DeleteTicket of a kind without tickets = %v, want nil", err)
		}
	})
}

// testTicketsBadInput checks that tickets without kind or id, or already expired, are
// refused with a non-sentinel error and store nothing.
func testTicketsBadInput(t *testing.T, s store.Store) {
	past := ticket(store.TicketSession, "s1", "v")
	past.ExpiresAt = time.Now().Add(-time.Second)
	tests := []struct {
		name string
		t    store.Ticket
	}{
		{"no kind", ticket("", "s1", "v")},
		{"no id", ticket(store.TicketSession, "", "v")},
		{"expired", past},
		{"no expiry", store.Ticket{Kind: store.TicketSession, ID: "s1", Value: []byte("v")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.PutTicket(t.Context(), tt.t); !refused(err) {
				t.Errorf("error = %v, want a refusal that is none of the sentinels", err)
			}
		})
	}
	diff(t, "ListTickets", []store.Ticket(nil), ok(s.ListTickets(t.Context(), store.TicketSession, ""))(t))
}

// testTicketsExpiry lets tickets expire: every read then treats them as missing, and a new
// ticket may take an expired one's id.
func testTicketsExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	const life = 300 * time.Millisecond
	short := func(id, value string) store.Ticket {
		tk := ticket(store.TicketDeviceCode, id, value)
		tk.ExpiresAt = time.Now().Add(life)
		return tk
	}
	long := ticket(store.TicketDeviceCode, "d-long", "stays")
	for _, tk := range []store.Ticket{short("d1", "one"), short("d2", "two"), short("d3", "three"), long} {
		must(t, s.PutTicket(ctx, tk))
	}
	time.Sleep(life + 100*time.Millisecond)

	checkErrors(t, []errCase{
		{"get", func(ctx context.Context) error { return errOf(s.GetTicket(ctx, store.TicketDeviceCode, "d1")) }, store.ErrNotFound},
		{"take", func(ctx context.Context) error { return errOf(s.TakeTicket(ctx, store.TicketDeviceCode, "d2")) }, store.ErrNotFound},
		{"swap", func(ctx context.Context) error {
			return s.SwapTicket(ctx, store.TicketDeviceCode, "d3", []byte("three"), []byte("x"))
		}, store.ErrNotFound},
	})
	diff(t, "ListTickets", []store.Ticket{long}, ok(s.ListTickets(ctx, store.TicketDeviceCode, ""))(t))

	again := ticket(store.TicketDeviceCode, "d1", "again")
	must(t, s.PutTicket(ctx, again))
	diff(t, "GetTicket of the new ticket under an expired id", again, ok(s.GetTicket(ctx, store.TicketDeviceCode, "d1"))(t))
	diff(t, "ListTickets after the put", []store.Ticket{long, again}, ok(s.ListTickets(ctx, store.TicketDeviceCode, ""))(t))
}

// testTicketsRace takes one ticket from many callers at once: exactly one gets it.
func testTicketsRace(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 16
	for round := range 3 {
		tk := ticket(store.TicketAuthCode, fmt.Sprintf("code-%d", round), "v")
		must(t, s.PutTicket(ctx, tk))
		errs := make([]error, n)
		got := make([]store.Ticket, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { got[i], errs[i] = s.TakeTicket(ctx, tk.Kind, tk.ID) })
		}
		wg.Wait()
		winner := oneWinner(t, errs, store.ErrNotFound)
		diff(t, "the winner's ticket", tk, got[winner])
	}

	// Concurrent puts of one id: exactly one stores.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = s.PutTicket(ctx, ticket(store.TicketDeviceUser, "ABCD-EFGH", fmt.Sprint(i))) })
	}
	wg.Wait()
	winner := oneWinner(t, errs, store.ErrConflict)
	if got := ok(s.GetTicket(ctx, store.TicketDeviceUser, "ABCD-EFGH"))(t); string(got.Value) != fmt.Sprint(winner) {
		t.Errorf("stored value %q, want the winner's %d", got.Value, winner)
	}
}

// writeUsers stores users and tickets for testPersistence and returns the check to run on
// the reopened store.
func writeUsers(t *testing.T, s store.Store) func(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := ok(s.CreateUser(ctx, user("acme", "u-alice", "alice")))(t)
	gone := ok(s.CreateUser(ctx, user("acme", "u-gone", "gone")))(t)
	must(t, s.DeleteUser(ctx, "acme", gone.ID, gone.Revision))
	alice.Name = "Alice A."
	alice = ok(s.UpdateUser(ctx, alice))(t)
	session := ticket(store.TicketSession, "s1", "session")
	must(t, s.PutTicket(ctx, session))
	return func(t *testing.T, s store.Store) {
		ctx := t.Context()
		diff(t, "LookupUser after restart", alice, ok(s.LookupUser(ctx, "alice"))(t))
		diff(t, "ListUsers after restart", []store.User{alice}, ok(s.ListUsers(ctx, "acme"))(t))
		diff(t, "GetTicket after restart", session, ok(s.GetTicket(ctx, store.TicketSession, "s1"))(t))
		checkErrors(t, []errCase{
			{"login index survives", func(ctx context.Context) error {
				return errOf(s.CreateUser(ctx, user("globex", "u-other", "alice")))
			}, store.ErrConflict},
			{"deleted user stays deleted", func(ctx context.Context) error { return errOf(s.LookupUser(ctx, "gone")) }, store.ErrNotFound},
			{"live ticket survives", func(ctx context.Context) error { return s.PutTicket(ctx, session) }, store.ErrConflict},
		})
	}
}
