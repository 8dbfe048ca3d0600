package hub

import (
	"context"
	"errors"
	"time"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
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

// WithCredentialCheck makes the hub re-check the credential of its streams every interval (0 means
// DefaultCredentialCheck): deleting an agent's credential, or taking scope connect:agentHub
// from it, ends its streams with Goodbye CREDENTIAL_REVOKED, whatever their tokens' lifetime.
func WithCredentialCheck(c CredentialChecker, interval time.Duration) Option {
	if interval <= 0 {
		interval = DefaultCredentialCheck
	}
	return func(h *Hub) { h.creds, h.credsEvery = c, interval }
}

// credentialLoop re-checks the credentials of every open stream every credsEvery until ctx
// ends, and closes the streams of those that no longer allow them: one loop for all
// streams, and one check per credential however many streams share it.
func (h *Hub) credentialLoop(ctx context.Context) {
	t := time.NewTicker(h.credsEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.recheckCredentials(ctx)
	}
}

// credentialKey names a credential: its client id in its tenant.
type credentialKey struct {
	tenant  store.Tenant
	subject string
}

// credentialStreams are the open streams of one credential, and the principal to check it
// with: the one whose token lasts longest, as an expired token fails the check for a reason
// of its own (expiry has its timer).
type credentialStreams struct {
	p       identity.Principal
	streams []*stream
}

func (h *Hub) recheckCredentials(ctx context.Context) {
	byCred := map[credentialKey]*credentialStreams{}
	h.mu.Lock()
	for _, byAgent := range h.agents {
		for _, st := range byAgent {
			for _, s := range st.streams {
				k := credentialKey{tenant: s.key.tenant, subject: s.principal.Subject}
				c := byCred[k]
				switch {
				case c == nil:
					c = &credentialStreams{p: s.principal}
					byCred[k] = c
				case !c.p.ExpiresAt.IsZero() && (s.principal.ExpiresAt.IsZero() || s.principal.ExpiresAt.After(c.p.ExpiresAt)):
					c.p = s.principal
				}
				c.streams = append(c.streams, s)
			}
		}
	}
	h.mu.Unlock()
	for _, c := range byCred {
		if ctx.Err() != nil {
			return
		}
		cur, err := h.creds.Recheck(ctx, c.p)
		var why, msg string
		switch {
		case errors.Is(err, identity.ErrRevoked):
			why, msg = "closing the agent stream: its credential was deleted", "the stream's credential was deleted; the agent needs a new one"
		case err != nil:
			// An unreachable store must not cut every agent off.
			h.log.Debug("could not re-check the agent streams' credential", "client", c.p.Subject, "streams", len(c.streams), "err", err)
		case !cur.HasScope(identity.ScopeConnectAgentHub):
			why = "closing the agent stream: its credential lost scope " + identity.ScopeConnectAgentHub
			msg = "the stream's credential no longer has scope " + identity.ScopeConnectAgentHub
		}
		if msg == "" {
			continue
		}
		for _, s := range c.streams {
			s.log.Info(why)
			h.closeWith(s, hubv1.Goodbye_REASON_CREDENTIAL_REVOKED, msg)
		}
	}
}
