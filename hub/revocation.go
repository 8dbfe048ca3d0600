package hub

import (
	"context"
	"errors"
	"time"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/identity"
)

// DefaultCredentialCheck is how often a stream re-checks its credential with
// WithCredentialCheck's checker when no interval is given.
const DefaultCredentialCheck = 3 * time.Second

// CredentialChecker re-checks a stream's principal against its credential's current state;
// *identity.Service implements it. An error wrapping identity.ErrRevoked means the credential
// is gone; any other error (the store unreachable, say) leaves the stream open.
type CredentialChecker interface {
	Recheck(ctx context.Context, p identity.Principal) (identity.Principal, error)
}

// WithCredentialCheck makes every stream re-check its credential every interval (0 means
// DefaultCredentialCheck): deleting an agent's credential, or taking scope connect:agentHub
// from it, ends its streams with Goodbye CREDENTIAL_REVOKED, whatever their tokens' lifetime.
func WithCredentialCheck(c CredentialChecker, interval time.Duration) Option {
	if interval <= 0 {
		interval = DefaultCredentialCheck
	}
	return func(h *Hub) { h.creds, h.credsEvery = c, interval }
}

// watchCredential re-checks the stream's credential until done closes, and closes the stream
// when the credential no longer allows it.
func (h *Hub) watchCredential(ctx context.Context, s *stream, p identity.Principal, done <-chan struct{}) {
	t := time.NewTicker(h.credsEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := h.creds.Recheck(ctx, p)
		switch {
		case errors.Is(err, identity.ErrRevoked):
			s.log.Info("closing the agent stream: its credential was deleted")
			h.closeWith(s, hubv1.Goodbye_REASON_CREDENTIAL_REVOKED, "the stream's credential was deleted; the agent needs a new one")
			return
		case err != nil:
			// Expiry has its own timer; an unreachable store must not cut every agent off.
			s.log.Debug("could not re-check the agent stream's credential", "err", err)
		case !cur.HasScope(identity.ScopeConnectAgentHub):
			s.log.Info("closing the agent stream: its credential lost scope " + identity.ScopeConnectAgentHub)
			h.closeWith(s, hubv1.Goodbye_REASON_CREDENTIAL_REVOKED, "the stream's credential no longer has scope "+identity.ScopeConnectAgentHub)
			return
		}
	}
}
