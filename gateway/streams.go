package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
)

// DefaultStreamRecheck is how often a server stream re-checks its caller's token: a stream
// whose credential is deleted, or loses the stream's scope, ends within this plus the
// identity service's credential check TTL.
const DefaultStreamRecheck = 3 * time.Second

// WithStreamRecheck sets how often server streams re-check their caller's token (tests use a
// short interval).
func WithStreamRecheck(d time.Duration) Option { return func(g *Gateway) { g.streamRecheck = d } }

// errStreamExpired ends a stream whose token expired.
var errStreamExpired = connect.NewError(connect.CodeUnauthenticated,
	errors.New("the access token expired; get a new one at POST /oauth/token and open the stream again"))

// requirementKey is the context key of the requirement the auth layer enforced.
type requirementKey struct{}

// authorizedStream returns a context that ends when the caller's token expires or when a
// periodic re-check finds its credential deleted or without the scope the procedure declares
// (which the auth layer put into ctx); context.Cause then holds
// the Connect error to end the stream with (see streamEnd). Every server stream runs under
// it, so a stream lives no longer than the token that opened it. stop must be called when the
// stream ends; it waits for the checker.
func (g *Gateway) authorizedStream(ctx context.Context) (_ context.Context, stop func()) {
	p := principalFrom(ctx)
	need, _ := ctx.Value(requirementKey{}).(string)
	ctx, cancel := context.WithCancelCause(ctx)
	interval := g.streamRecheck
	if interval <= 0 {
		interval = DefaultStreamRecheck
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		var expired <-chan time.Time
		if !p.ExpiresAt.IsZero() {
			t := time.NewTimer(time.Until(p.ExpiresAt))
			defer t.Stop()
			expired = t.C
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-expired:
				cancel(errStreamExpired)
				return
			case <-tick.C:
				if err := g.recheck(ctx, p, need); err != nil {
					cancel(err)
					return
				}
			}
		}
	})
	return ctx, func() {
		cancel(context.Canceled)
		wg.Wait()
	}
}

// recheck returns the Connect error that ends a stream of p needing need, or nil.
func (g *Gateway) recheck(ctx context.Context, p identity.Principal, need string) error {
	cur, err := g.id.Recheck(ctx, p)
	switch {
	case errors.Is(err, identity.ErrRevoked):
		return connect.NewError(connect.CodeUnauthenticated, errors.New("the credential of this token has been deleted"))
	case errors.Is(err, identity.ErrInvalidToken):
		return errStreamExpired
	case err != nil:
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, store.ErrUnavailable) {
			g.log.ErrorContext(ctx, "stream: re-check token", "err", err)
		}
		return connect.NewError(connect.CodeUnavailable, errors.New("cannot check the access token right now; open the stream again shortly"))
	case need != Authenticated && !cur.HasScope(need):
		return connect.NewError(connect.CodePermissionDenied, errors.New("the credential of this token no longer grants scope "+need))
	}
	return nil
}

// streamEnd is what a stream handler running under authorizedStream returns: the reason its
// token stopped being good enough, if that is why it ended, or err.
func streamEnd(ctx context.Context, err error) error {
	var cerr *connect.Error
	if cause := context.Cause(ctx); errors.As(cause, &cerr) {
		return cerr
	}
	return err
}
