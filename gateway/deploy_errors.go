package gateway

import (
	"errors"
	"net/http"

	"connectrpc.com/connect"

	"github.com/sortie-dev/sortie/pipeline"
	"github.com/sortie-dev/sortie/pipeline/config"
	"github.com/sortie-dev/sortie/store"
)

// engineFailure is an error of the pipeline engine translated for both surfaces: the REST
// status and contract items, and the Connect code and message. pipelineFailure is the one
// place the engine's and the config parser's errors are translated; restError and
// connectError consult it before the general mapping.
type engineFailure struct {
	status int
	code   connect.Code
	items  []ErrorItem
}

// message joins the items for surfaces with one message (Connect).
func (f *engineFailure) message() string {
	msg := ""
	for i, it := range f.items {
		if i > 0 {
			msg += "; "
		}
		msg += it.Message
	}
	return msg
}

func failure(status int, code connect.Code, msg string, metadata map[string]any) *engineFailure {
	if metadata == nil {
		metadata = map[string]any{}
	}
	return &engineFailure{status: status, code: code, items: []ErrorItem{{Message: msg, Code: codeFor(status), Metadata: metadata}}}
}

// problemItems turns config problems into one contract item each, the path in
// metadata.field.
func problemItems(ps []config.Problem) []ErrorItem {
	items := make([]ErrorItem, 0, len(ps))
	for _, p := range ps {
		md := map[string]any{}
		if p.Path != "" {
			md["field"] = p.Path
		}
		items = append(items, ErrorItem{Message: p.String(), Code: codeFor(http.StatusUnprocessableEntity), Metadata: md})
	}
	return items
}

// fielder is the unknown-account error of the engine: it names the config path.
type fielder interface{ Field() string }

// pipelineFailure translates an error of the engine, or reports false for errors it does not
// know (store outages and the rest are left to errorStatus).
func pipelineFailure(err error) (*engineFailure, bool) {
	var (
		syntax      *config.SyntaxError
		invalid     *config.ValidationError
		unsupported *config.UnsupportedError
		inProgress  *store.InProgressError
		field       fielder
	)
	switch {
	case errors.As(err, &syntax):
		md := map[string]any{}
		if syntax.Path != "" {
			md["field"] = syntax.Path
		}
		if syntax.Line > 0 {
			md["line"], md["column"] = syntax.Line, syntax.Column
		}
		return failure(http.StatusBadRequest, connect.CodeInvalidArgument, syntax.Error(), md), true
	case errors.As(err, &invalid):
		return &engineFailure{status: http.StatusUnprocessableEntity, code: connect.CodeInvalidArgument, items: problemItems(invalid.Problems)}, true
	case errors.As(err, &unsupported):
		return &engineFailure{status: http.StatusUnprocessableEntity, code: connect.CodeInvalidArgument, items: problemItems(unsupported.Features)}, true
	case errors.Is(err, pipeline.ErrUnknownAccount):
		md := map[string]any{}
		msg := "account does not exist"
		if errors.As(err, &field) {
			md["field"] = field.Field()
			if e, ok := field.(error); ok {
				msg = e.Error()
			}
		}
		return failure(http.StatusUnprocessableEntity, connect.CodeFailedPrecondition, msg, md), true
	case errors.As(err, &inProgress):
		return failure(http.StatusConflict, connect.CodeFailedPrecondition, inProgress.Error(),
			map[string]any{"pipelineId": inProgress.PipelineID}), true
	case errors.Is(err, pipeline.ErrNotFound):
		return failure(http.StatusNotFound, connect.CodeNotFound, err.Error(), nil), true
	case errors.Is(err, pipeline.ErrNothingToApprove), errors.Is(err, pipeline.ErrFinished), errors.Is(err, pipeline.ErrInProgress):
		return failure(http.StatusConflict, connect.CodeFailedPrecondition, err.Error(), nil), true
	case errors.Is(err, pipeline.ErrForbidden):
		return failure(http.StatusForbidden, connect.CodePermissionDenied, err.Error(), nil), true
	}
	return nil, false
}
