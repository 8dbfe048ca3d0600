package redisstore

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sortie-dev/sortie/store"
)

func TestWrap(t *testing.T) {
	t.Parallel()
	const secretAddr = "/run/secret/redis.sock"
	dialErr := &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: secretAddr, Net: "unix"}, Err: errors.New("connect: connection refused")}
	tests := []struct {
		name  string
		cause error
		want  error // a sentinel the result must match, or nil for none
	}{
		{"dial error", dialErr, store.ErrUnavailable},
		{"connection closed", io.EOF, store.ErrUnavailable},
		{"short read", io.ErrUnexpectedEOF, store.ErrUnavailable},
		{"deadline", context.DeadlineExceeded, store.ErrUnavailable},
		{"pool timeout", redis.ErrPoolTimeout, store.ErrUnavailable},
		{"client closed", redis.ErrClosed, store.ErrUnavailable},
		{"loading", errors.New("LOADING Redis is loading the dataset in memory"), store.ErrUnavailable},
		{"missing", redis.Nil, store.ErrNotFound},
		{"conflict", store.ErrConflict, store.ErrConflict},
		{"canceled by the caller", context.Canceled, nil},
		{"wrong type", errors.New("WRONGTYPE Operation against a key holding the wrong kind of value"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := wrap("get thing", tt.cause)
			// redis.Nil is Redis's own way to say "not found"; nothing beyond it needs it.
			if !errors.Is(err, tt.cause) && tt.cause != redis.Nil {
				t.Errorf("wrap(%v) = %v, which no longer matches the cause", tt.cause, err)
			}
			for _, sentinel := range []error{store.ErrUnavailable, store.ErrNotFound, store.ErrConflict} {
				if got, want := errors.Is(err, sentinel), sentinel == tt.want; got != want {
					t.Errorf("errors.Is(wrap(%v), %v) = %t, want %t", tt.cause, sentinel, got, want)
				}
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "get thing: ") || strings.Contains(msg, secretAddr) {
				t.Errorf("message %q should start with the operation and not name the address", msg)
			}
		})
	}
	if err := wrap("get thing", nil); err != nil {
		t.Errorf("wrap(nil) = %v, want nil", err)
	}
}
