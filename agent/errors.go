package agent

import (
	"context"
	"errors"
	"net"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

// unimplementedError is a command action this agent does not know.
type unimplementedError struct{ msg string }

func (e *unimplementedError) Error() string { return e.msg }

// errShuttingDown fails commands cut short because the agent is stopping.
var errShuttingDown = errors.New("the agent is shutting down")

// commandError maps an execution error to the protocol's error codes: the one place where
// Kubernetes API errors become CommandError codes.
func commandError(err error) *hubv1.CommandError {
	return &hubv1.CommandError{Code: errorCode(err), Message: err.Error()}
}

func errorCode(err error) hubv1.CommandError_Code {
	var (
		invalid *invalidError
		unimpl  *unimplementedError
		netErr  net.Error
	)
	switch {
	case errors.As(err, &unimpl):
		return hubv1.CommandError_CODE_UNIMPLEMENTED
	case errors.As(err, &invalid):
		return hubv1.CommandError_CODE_INVALID
	case errors.Is(err, context.DeadlineExceeded), apierrors.IsTimeout(err), apierrors.IsServerTimeout(err):
		return hubv1.CommandError_CODE_DEADLINE_EXCEEDED
	case errors.Is(err, errShuttingDown), errors.Is(err, context.Canceled):
		return hubv1.CommandError_CODE_UNAVAILABLE
	case meta.IsNoMatchError(err), apierrors.IsNotFound(err):
		return hubv1.CommandError_CODE_NOT_FOUND
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return hubv1.CommandError_CODE_CONFLICT
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsUnsupportedMediaType(err),
		apierrors.IsRequestEntityTooLargeError(err), apierrors.IsMethodNotSupported(err), apierrors.IsNotAcceptable(err):
		return hubv1.CommandError_CODE_INVALID
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return hubv1.CommandError_CODE_FORBIDDEN
	case apierrors.IsServiceUnavailable(err), apierrors.IsTooManyRequests(err), apierrors.IsUnexpectedServerError(err),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.As(err, &netErr):
		return hubv1.CommandError_CODE_UNAVAILABLE
	}
	return hubv1.CommandError_CODE_UNSPECIFIED
}
