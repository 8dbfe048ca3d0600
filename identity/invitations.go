package identity

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/sortie-dev/sortie/store"
)

// Invitation lifetimes: the default, and the longest a link may work.
const (
	DefaultInvitationTTL = 72 * time.Hour
	MaxInvitationTTL     = 30 * 24 * time.Hour
)

// ErrNotPermitted is returned (wrapped, with the reason) for an action the caller's kind of
// principal may not take at all, such as removing oneself or a machine approving a device.
var ErrNotPermitted = errors.New("not permitted")

// errInvitationUsed is the one message for a link that is unknown, used, revoked or expired:
// the caller cannot tell them apart, and need not.
var errInvitationUsed = &CallerError{
	Message: "This invitation link was already used or has expired.", Kind: store.ErrNotFound,
}

// CheckMessage enforces the rules a request message declares in identity.proto
// (protovalidate) and returns their violations as a ValidationError, or nil.
func CheckMessage(m proto.Message) error {
	var verr ValidationError
	if err := checkRules(&verr, m); err != nil {
		return err
	}
	return verr.errOrNil()
}

// Invitation is a pending invitation to an environment.
type Invitation struct {
	ID        string
	OrgID     string
	EnvID     string
	Email     string
	Roles     []string
	InvitedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// invitationValue is the JSON value of a TicketInvitation.
type invitationValue struct {
	Email      string    `json:"email"`
	Roles      []string  `json:"roles"`
	InvitedBy  string    `json:"invitedBy"`
	CreatedAt  time.Time `json:"createdAt"`
	SecretHash string    `json:"secretHash"`
}

// InvitationInfo is what an invitation link shows before it is accepted.
type InvitationInfo struct {
	Invitation
	OrgName      string
	EnvName      string
	ExistingUser bool
}

func invitationTicketID(orgID, envID, id string) string { return orgID + "/" + envID + "/" + id }

// inviteSecretID is the id of the TicketInviteSecret of a link's secret: its keyed hash.
func (s *Service) inviteSecretID(secret string) string {
	h := s.hashSecret("invitation " + secret)
	return hex.EncodeToString(h[:])
}

func invitationFromTicket(t store.Ticket) (Invitation, invitationValue, error) {
	var v invitationValue
	if err := json.Unmarshal(t.Value, &v); err != nil {
		return Invitation{}, v, fmt.Errorf("invitation %s: damaged value: %w", t.ID, err)
	}
	parts := strings.SplitN(t.ID, "/", 3)
	if len(parts) != 3 {
		return Invitation{}, v, fmt.Errorf("invitation %s: malformed id", t.ID)
	}
	return Invitation{
		ID: parts[2], OrgID: parts[0], EnvID: parts[1], Email: v.Email, Roles: v.Roles,
		InvitedBy: v.InvitedBy, CreatedAt: v.CreatedAt, ExpiresAt: t.ExpiresAt,
	}, v, nil
}

// normalizeEmail returns the lower-cased address of a bare email address.
func normalizeEmail(verr *ValidationError, field, email string) string {
	email = strings.TrimSpace(email)
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		verr.add(field, "%q is not an email address such as jane@example.com", email)
		return ""
	}
	return strings.ToLower(addr.Address)
}

// ListUsers lists the members of the caller's environment, ordered by login.
func (s *Service) ListUsers(ctx context.Context, p Principal) ([]store.User, error) {
	all, err := s.st.ListUsers(ctx, p.OrgID)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, u := range all {
		if _, ok := u.Member(p.EnvID); ok {
			out = append(out, u)
		}
	}
	return out, nil
}

// updateUser applies change to the stored user and writes it back, reading and retrying
// when another writer got there first. change returns false to leave the user as it is. A
// user that change leaves without memberships is deleted, on the same revision check, so a
// membership another writer adds meanwhile is never deleted with it.
func (s *Service) updateUser(ctx context.Context, orgID, id string, change func(*store.User) (bool, error)) (store.User, error) {
	for attempt := 0; ; attempt++ {
		u, err := s.st.GetUser(ctx, orgID, id)
		if err != nil {
			return store.User{}, err
		}
		ok, err := change(&u)
		if err != nil || !ok {
			return u, err
		}
		updated := u
		if len(u.Memberships) == 0 {
			err = s.st.DeleteUser(ctx, orgID, id, u.Revision)
		} else {
			u.UpdatedAt = s.now().UTC()
			updated, err = s.st.UpdateUser(ctx, u)
		}
		if errors.Is(err, store.ErrStale) && attempt < 5 {
			continue
		}
		return updated, err
	}
}

// setMembership returns memberships with envID's roles set, ordered by EnvID.
func setMembership(ms []store.Membership, envID string, roles []string) []store.Membership {
	ms = slices.DeleteFunc(slices.Clone(ms), func(m store.Membership) bool { return m.EnvID == envID })
	ms = append(ms, store.Membership{EnvID: envID, Roles: slices.Clone(roles)})
	slices.SortFunc(ms, func(a, b store.Membership) int { return cmp.Compare(a.EnvID, b.EnvID) })
	return ms
}

// RemoveUser removes a user from the caller's environment, and deletes the user when no
// membership is left. The user's tokens for the environment stop verifying at once (Verify
// reads the user on every request). Nobody removes themselves.
func (s *Service) RemoveUser(ctx context.Context, p Principal, id string) error {
	if p.Type == PrincipalUser && p.Subject == id {
		return fmt.Errorf("%w: you cannot remove yourself; another Organization Admin can", ErrNotPermitted)
	}
	notMember := func(err error) error {
		return callerError(fmt.Errorf("user %q: %w", id, err), "user %q is not a member of this environment", id)
	}
	u, err := s.updateUser(ctx, p.OrgID, id, func(u *store.User) (bool, error) {
		m, ok := u.Member(p.EnvID)
		if !ok {
			return false, notMember(store.ErrNotFound)
		}
		if err := mayGrant(p, m.Roles); err != nil {
			return false, err
		}
		u.Memberships = slices.DeleteFunc(slices.Clone(u.Memberships), func(m store.Membership) bool { return m.EnvID == p.EnvID })
		return true, nil
	})
	if err != nil {
		return notMember(err)
	}
	s.log.Info("user removed from environment", "tenant", p.Tenant().String(), "user", u.ID, "deleted", len(u.Memberships) == 0)
	return nil
}

// CreateInvitation invites email to the caller's environment with roles the caller may
// grant, for ttl (zero: DefaultInvitationTTL). It returns the invitation and its link, which
// holds a 256-bit secret and is shown only this once.
func (s *Service) CreateInvitation(ctx context.Context, p Principal, email string, roles []string, ttl time.Duration) (Invitation, string, error) {
	var verr ValidationError
	email = normalizeEmail(&verr, "email", email)
	if len(roles) == 0 {
		verr.add("roles", "give at least one role; ListRoles lists them")
	}
	validateRoles(&verr, "roles", roles)
	switch {
	case ttl == 0:
		ttl = DefaultInvitationTTL
	case ttl < time.Minute || ttl > MaxInvitationTTL:
		verr.add("ttl", "must be between 1 minute and 30 days (720h), not %s", ttl)
	}
	if err := verr.errOrNil(); err != nil {
		return Invitation{}, "", err
	}
	if err := mayGrant(p, roles); err != nil {
		return Invitation{}, "", err
	}
	if u, err := s.st.LookupUser(ctx, email); err == nil {
		if _, ok := u.Member(p.EnvID); ok && u.OrgID == p.OrgID {
			return Invitation{}, "", &CallerError{Message: fmt.Sprintf("%s is already a member of this environment", email), Kind: store.ErrConflict}
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return Invitation{}, "", err
	}
	now := s.now().UTC().Truncate(time.Second)
	inv := Invitation{
		ID: uuid.NewString(), OrgID: p.OrgID, EnvID: p.EnvID, Email: email, Roles: slices.Clone(roles),
		InvitedBy: p.Name, CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	secret := newSecret()
	secretID := s.inviteSecretID(secret)
	value, err := json.Marshal(invitationValue{Email: inv.Email, Roles: inv.Roles, InvitedBy: inv.InvitedBy, CreatedAt: now, SecretHash: secretID})
	if err != nil {
		return Invitation{}, "", err
	}
	ticketID := invitationTicketID(inv.OrgID, inv.EnvID, inv.ID)
	if err := s.st.PutTicket(ctx, store.Ticket{Kind: store.TicketInvitation, ID: ticketID, Value: value, ExpiresAt: inv.ExpiresAt}); err != nil {
		return Invitation{}, "", fmt.Errorf("store invitation: %w", err)
	}
	if err := s.st.PutTicket(ctx, store.Ticket{Kind: store.TicketInviteSecret, ID: secretID, Value: []byte(ticketID), ExpiresAt: inv.ExpiresAt}); err != nil {
		_ = s.st.DeleteTicket(ctx, store.TicketInvitation, ticketID)
		return Invitation{}, "", fmt.Errorf("store invitation: %w", err)
	}
	s.log.Info("invitation created", "tenant", p.Tenant().String(), "invitation", inv.ID, "roles", roles)
	return inv, s.issuer + "/console/invite#token=" + secret, nil
}

// ListInvitations lists the pending invitations of the caller's environment, newest first.
func (s *Service) ListInvitations(ctx context.Context, p Principal) ([]Invitation, error) {
	ts, err := s.st.ListTickets(ctx, store.TicketInvitation, invitationTicketID(p.OrgID, p.EnvID, ""))
	if err != nil {
		return nil, err
	}
	out := make([]Invitation, 0, len(ts))
	for _, t := range ts {
		inv, _, err := invitationFromTicket(t)
		if err != nil {
			s.log.Error("list invitations", "err", err)
			continue
		}
		if !s.now().Before(inv.ExpiresAt) { // the store drops it eventually
			continue
		}
		out = append(out, inv)
	}
	slices.SortStableFunc(out, func(a, b Invitation) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// RevokeInvitation withdraws a pending invitation of the caller's environment: its link
// stops working at once.
func (s *Service) RevokeInvitation(ctx context.Context, p Principal, id string) error {
	ticketID := invitationTicketID(p.OrgID, p.EnvID, id)
	t, err := s.st.TakeTicket(ctx, store.TicketInvitation, ticketID)
	if err != nil {
		return callerError(fmt.Errorf("invitation %q: %w", id, err), "invitation %q is not pending in this environment", id)
	}
	if _, v, err := invitationFromTicket(t); err == nil {
		if err := s.st.DeleteTicket(ctx, store.TicketInviteSecret, v.SecretHash); err != nil {
			return err
		}
	}
	s.log.Info("invitation revoked", "tenant", p.Tenant().String(), "invitation", id)
	return nil
}

// invitationBySecret finds the pending invitation a link's secret opens.
func (s *Service) invitationBySecret(ctx context.Context, secret string) (Invitation, string, error) {
	secretID := s.inviteSecretID(secret)
	st, err := s.st.GetTicket(ctx, store.TicketInviteSecret, secretID)
	if errors.Is(err, store.ErrNotFound) {
		return Invitation{}, "", errInvitationUsed
	} else if err != nil {
		return Invitation{}, "", err
	}
	t, err := s.st.GetTicket(ctx, store.TicketInvitation, string(st.Value))
	if errors.Is(err, store.ErrNotFound) || (err == nil && !s.now().Before(t.ExpiresAt)) {
		return Invitation{}, "", errInvitationUsed
	} else if err != nil {
		return Invitation{}, "", err
	}
	inv, _, err := invitationFromTicket(t)
	return inv, secretID, err
}

// GetInvitation describes the invitation a link's secret opens, for the page that accepts
// it. It needs no token: the secret is the proof.
func (s *Service) GetInvitation(ctx context.Context, secret string) (InvitationInfo, error) {
	inv, _, err := s.invitationBySecret(ctx, secret)
	if err != nil {
		return InvitationInfo{}, err
	}
	info := InvitationInfo{Invitation: inv}
	if info.OrgName, err = s.orgName(ctx, inv.OrgID); err != nil {
		return InvitationInfo{}, err
	}
	env, err := s.st.GetEnvironment(ctx, inv.OrgID, inv.EnvID)
	if err != nil {
		return InvitationInfo{}, callerError(err, "the environment of this invitation no longer exists")
	}
	info.EnvName = env.Name
	switch _, err := s.st.LookupUser(ctx, inv.Email); {
	case err == nil:
		info.ExistingUser = true
	case !errors.Is(err, store.ErrNotFound):
		return InvitationInfo{}, err
	}
	return info, nil
}

// AcceptInvitation uses an invitation link exactly once. For a login that has no account a
// local user is created with name and password (at least MinPasswordLength characters); an
// existing local user proves the account with its password and gets the membership (roles
// in an environment it already belongs to are replaced). On any error nothing changes and
// the link still works, except when it was used or has expired.
func (s *Service) AcceptInvitation(ctx context.Context, secret, name, password string) (store.User, Invitation, error) {
	inv, secretID, err := s.invitationBySecret(ctx, secret)
	if err != nil {
		return store.User{}, Invitation{}, err
	}
	existing, err := s.st.LookupUser(ctx, inv.Email)
	isNew := errors.Is(err, store.ErrNotFound)
	if err != nil && !isNew {
		return store.User{}, Invitation{}, err
	}
	var hash string
	switch {
	case isNew:
		var verr ValidationError
		checkPassword(&verr, "password", password)
		if err := verr.errOrNil(); err != nil {
			return store.User{}, Invitation{}, err
		}
		if hash, err = s.hashPassword(ctx, password); err != nil {
			return store.User{}, Invitation{}, err
		}
	case existing.OrgID != inv.OrgID:
		return store.User{}, Invitation{}, fmt.Errorf("%w: the account %s belongs to another organization; ask for an invitation to another email address", ErrNotPermitted, inv.Email)
	case existing.PasswordHash == "":
		return store.User{}, Invitation{}, fmt.Errorf("%w: the account %s signs in through the identity provider; its memberships come from there", ErrNotPermitted, inv.Email)
	case !s.passwordMatchesOrFalse(ctx, password, existing.PasswordHash):
		return store.User{}, Invitation{}, fmt.Errorf("%w: this is not the password of %s; accepting needs the account's current password", ErrNotPermitted, inv.Email)
	}
	// Only one acceptance takes the secret; the others see the link as used.
	taken, err := s.st.TakeTicket(ctx, store.TicketInviteSecret, secretID)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, Invitation{}, errInvitationUsed
	} else if err != nil {
		return store.User{}, Invitation{}, err
	}
	u, err := s.acceptAs(ctx, inv, isNew, existing, name, hash)
	if err != nil {
		// Nothing changed: the link works again (unless it expired meanwhile).
		if perr := s.st.PutTicket(ctx, taken); perr != nil {
			s.log.Error("accept invitation: give the link back", "err", perr, "invitation", inv.ID)
		}
		return store.User{}, Invitation{}, err
	}
	if err := s.st.DeleteTicket(ctx, store.TicketInvitation, invitationTicketID(inv.OrgID, inv.EnvID, inv.ID)); err != nil {
		s.log.Error("accept invitation: delete invitation", "err", err, "invitation", inv.ID)
	}
	s.log.Info("invitation accepted", "tenant", inv.OrgID+"/"+inv.EnvID, "invitation", inv.ID, "user", u.ID, "new", isNew)
	return u, inv, nil
}

// acceptAs gives the invitation's membership to a new user (with name and hash) or to the
// existing one, whose password was checked.
func (s *Service) acceptAs(ctx context.Context, inv Invitation, isNew bool, existing store.User, name, hash string) (store.User, error) {
	var u store.User
	var err error
	if isNew {
		now := s.now().UTC()
		u, err = s.st.CreateUser(ctx, store.User{
			ID: uuid.NewString(), OrgID: inv.OrgID, Login: inv.Email, Name: cmp.Or(strings.TrimSpace(name), inv.Email),
			PasswordHash: hash, Memberships: []store.Membership{{EnvID: inv.EnvID, Roles: inv.Roles}},
			CreatedAt: now, UpdatedAt: now,
		})
		if err != nil {
			return store.User{}, callerError(err, "an account named %s was created meanwhile; open the link again and accept with its password", inv.Email)
		}
		return u, nil
	}
	u, err = s.updateUser(ctx, existing.OrgID, existing.ID, func(u *store.User) (bool, error) {
		u.Memberships = setMembership(u.Memberships, inv.EnvID, inv.Roles)
		return true, nil
	})
	if err != nil {
		return store.User{}, callerError(err, "the account %s was removed meanwhile; open the link again to create it", inv.Email)
	}
	return u, nil
}

// addCreatorMembership makes the user p an Organization Admin member of envID (a user who
// creates an environment administers it).
func (s *Service) addCreatorMembership(ctx context.Context, p Principal, envID string) error {
	if p.Type != PrincipalUser {
		return nil
	}
	_, err := s.updateUser(ctx, p.OrgID, p.Subject, func(u *store.User) (bool, error) {
		u.Memberships = setMembership(u.Memberships, envID, []string{RoleOrganizationAdmin})
		return true, nil
	})
	return err
}

// UserMemberships returns the environments a user principal may switch to, by name; for a
// machine, its own environment.
func (s *Service) UserMemberships(ctx context.Context, p Principal) ([]store.Environment, error) {
	envIDs := []string{p.EnvID}
	if p.Type == PrincipalUser {
		u, err := s.st.GetUser(ctx, p.OrgID, p.Subject)
		if err != nil {
			return nil, callerError(err, "the user no longer exists")
		}
		envIDs = envIDs[:0]
		for _, m := range u.Memberships {
			envIDs = append(envIDs, m.EnvID)
		}
	}
	all, err := s.st.ListEnvironments(ctx, p.OrgID)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(e store.Environment) bool { return !slices.Contains(envIDs, e.ID) }), nil
}

// passwordMatchesOrFalse is passwordMatches, a failure to check counting as no match.
func (s *Service) passwordMatchesOrFalse(ctx context.Context, password, hash string) bool {
	ok, err := s.passwordMatches(ctx, password, hash)
	return err == nil && ok
}
