package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store"
)

// ErrorBody is the error contract of every REST route except /oauth/*:
// {"error_id", "errors": [{"message", "code", "metadata"}]}.
type ErrorBody struct {
	ErrorID string      `json:"error_id" doc:"Identifies this error in the server's logs."`
	Errors  []ErrorItem `json:"errors" doc:"Every problem found; validation failures list each invalid field."`
	status  int
}

// ErrorItem is one problem.
type ErrorItem struct {
	Message  string         `json:"message" doc:"What is wrong and what the caller can do about it."`
	Code     string         `json:"code" doc:"A stable, machine-readable code."`
	Metadata map[string]any `json:"metadata" doc:"Details such as the invalid field's path in metadata.field."`
}

// Error implements error.
func (e *ErrorBody) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, it := range e.Errors {
		msgs[i] = it.Message
	}
	return strings.Join(msgs, "; ")
}

// GetStatus implements huma.StatusError.
func (e *ErrorBody) GetStatus() int { return e.status }

// ContentType makes errors application/json, whatever the request accepted.
func (e *ErrorBody) ContentType(string) string { return "application/json" }

// codeFor names the error code of a status.
func codeFor(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusNotAcceptable:
		return "not_acceptable"
	case http.StatusRequestTimeout:
		return "request_timeout"
	case http.StatusConflict:
		return "conflict"
	case http.StatusRequestEntityTooLarge:
		return "body_too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case http.StatusUnprocessableEntity:
		return "validation_failed"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	case http.StatusServiceUnavailable:
		return "unavailable"
	case http.StatusBadGateway:
		return "agent_failed"
	case http.StatusGatewayTimeout:
		return "agent_timeout"
	}
	if status >= 500 {
		return "internal"
	}
	return "error"
}

// newErrorBody builds the contract body. errs that are huma error details (validation
// problems) become one item each, with the field path in metadata.field; the request body is
// never echoed. Server errors carry a generic message only.
func newErrorBody(status int, msg string, errs ...error) *ErrorBody {
	body := &ErrorBody{ErrorID: uuid.NewString(), status: status}
	code := codeFor(status)
	if status < 500 {
		for _, err := range errs {
			if err == nil {
				continue
			}
			item := ErrorItem{Message: err.Error(), Code: code, Metadata: map[string]any{}}
			var d huma.ErrorDetailer
			if errors.As(err, &d) {
				detail := d.ErrorDetail()
				item.Message = detail.Message
				if field := fieldPath(detail.Location, detail.Message); field != "" {
					item.Metadata["field"] = field
					item.Message = field + ": " + detail.Message
				}
			}
			body.Errors = append(body.Errors, item)
		}
	}
	if len(body.Errors) == 0 {
		if status >= 500 && status != http.StatusServiceUnavailable && status != http.StatusBadGateway && status != http.StatusGatewayTimeout {
			msg = "internal error; quote error_id when reporting it"
		}
		body.Errors = []ErrorItem{{Message: msg, Code: code, Metadata: map[string]any{}}}
	}
	return body
}

// fieldPath turns huma's "body.roles[1]" into "roles[1]"; other locations (path.id,
// query.x, header.y) stay as they are. A missing required property is reported by huma on
// its parent, so its name is taken from the message.
func fieldPath(location, message string) string {
	field := strings.TrimPrefix(strings.TrimPrefix(location, "body"), ".")
	if name, ok := strings.CutPrefix(message, "expected required property "); ok {
		name, _, _ = strings.Cut(name, " ")
		if field == "" {
			return name
		}
		return field + "." + name
	}
	return field
}

func init() {
	// Huma builds every error it writes (validation, 413, 415, ...) through these hooks, so
	// setting them once makes the whole REST surface speak the error contract.
	hookErrors()
}

// errorStatus maps a domain error to an HTTP status and a message the caller may see. This
// and connectError are the only two places domain errors are translated, after
// pipelineFailure for the pipeline engine's errors.
func errorStatus(err error) (int, string, []error) {
	var verr *identity.ValidationError
	switch {
	case errors.As(err, &verr):
		details := make([]error, len(verr.Problems))
		for i, p := range verr.Problems {
			details[i] = &huma.ErrorDetail{Location: "body." + p.Field, Message: p.Message}
		}
		return http.StatusUnprocessableEntity, "validation failed", details
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, callerMessage(err, "the item does not exist in this environment"), nil
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict, callerMessage(err, "it exists already; nothing was changed"), nil
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, "a dependency of the server is unavailable; retry shortly", nil
	case errors.Is(err, identity.ErrInvalidToken):
		return http.StatusUnauthorized, err.Error(), nil
	case errors.Is(err, identity.ErrEscalation), errors.Is(err, identity.ErrNotPermitted):
		return http.StatusForbidden, err.Error(), nil
	case errors.Is(err, hub.ErrNotConnected), errors.Is(err, hub.ErrUnknownAccount):
		return http.StatusUnprocessableEntity, err.Error(), nil
	case errors.Is(err, hub.ErrTimeout):
		return http.StatusGatewayTimeout, err.Error(), nil
	case errors.Is(err, hub.ErrStreamLost):
		return http.StatusServiceUnavailable, err.Error(), nil
	}
	var aerr *agentError
	if errors.As(err, &aerr) {
		return http.StatusBadGateway, err.Error(), nil
	}
	return http.StatusInternalServerError, "", nil
}

// callerMessage returns the message written for the caller that err carries, or fallback:
// the text of a wrapped store error (operation names, keys) never reaches a reply.
func callerMessage(err error, fallback string) string {
	var ce *identity.CallerError
	if errors.As(err, &ce) {
		return ce.Message
	}
	return fallback
}

// restError converts a domain error for Huma, logging server errors under their error_id.
func restError(ctx context.Context, log *slog.Logger, err error) error {
	if f, ok := pipelineFailure(err); ok {
		return &ErrorBody{ErrorID: uuid.NewString(), Errors: f.items, status: f.status}
	}
	status, msg, details := errorStatus(err)
	body := newErrorBody(status, msg, details...)
	if status >= 500 {
		log.ErrorContext(ctx, "request failed", "error_id", body.ErrorID, "status", status, "err", err)
	}
	return body
}

// connectError converts a domain error for Connect, with the same meaning as restError.
func connectError(ctx context.Context, log *slog.Logger, err error) error {
	if f, ok := pipelineFailure(err); ok {
		return connect.NewError(f.code, errors.New(f.message()))
	}
	status, msg, details := errorStatus(err)
	code := connect.CodeInternal
	switch status {
	case http.StatusUnprocessableEntity, http.StatusBadRequest:
		code = connect.CodeInvalidArgument
		if len(details) == 0 { // a well-formed request the server cannot act on
			code = connect.CodeFailedPrecondition
			break
		}
		parts := make([]string, 0, len(details))
		for _, d := range details {
			var hd *huma.ErrorDetail
			if errors.As(d, &hd) {
				parts = append(parts, fieldPath(hd.Location, hd.Message)+": "+hd.Message)
			}
		}
		msg = msg + ": " + strings.Join(parts, "; ")
	case http.StatusNotFound:
		code = connect.CodeNotFound
	case http.StatusConflict:
		code = connect.CodeAlreadyExists
	case http.StatusServiceUnavailable:
		code = connect.CodeUnavailable
	case http.StatusGatewayTimeout:
		code = connect.CodeDeadlineExceeded
	case http.StatusBadGateway:
		code = connect.CodeAborted
	case http.StatusUnauthorized:
		code = connect.CodeUnauthenticated
	case http.StatusForbidden:
		code = connect.CodePermissionDenied
	default:
		id := uuid.NewString()
		log.ErrorContext(ctx, "request failed", "error_id", id, "err", err)
		msg = "internal error; quote error_id " + id + " when reporting it"
	}
	return connect.NewError(code, errors.New(msg))
}
