package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/sortie-dev/sortie/identity"
)

// oauthPrefix is where RFC 6749 error bodies replace the REST error contract.
const oauthPrefix = "/oauth/"

// oauthErrorBody is an error Huma itself raises on an /oauth/* route (a body over the
// limit, one too slow to arrive), in RFC 6749 section 5.2's shape like every other reply
// there.
type oauthErrorBody struct {
	identity.OAuthError
}

// GetStatus implements huma.StatusError.
func (e *oauthErrorBody) GetStatus() int { return e.Status }

// ContentType makes the body application/json whatever the request accepted.
func (e *oauthErrorBody) ContentType(string) string { return "application/json" }

// newOAuthError is the RFC 6749 body for status; server errors say nothing internal.
func newOAuthError(status int, msg string) *oauthErrorBody {
	code := identity.OAuthInvalidRequest
	if status >= 500 {
		code, msg = "server_error", "the server could not handle the request; retry later"
	}
	if msg == "" {
		msg = strings.ToLower(http.StatusText(status))
	}
	return &oauthErrorBody{identity.OAuthError{Status: status, Code: code, Description: msg}}
}

// hookErrors makes every error Huma writes follow the contract of its route: RFC 6749 on
// /oauth/*, the REST error contract everywhere else.
func hookErrors() {
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		return newErrorBody(status, msg, errs...)
	}
	huma.NewErrorWithContext = func(ctx huma.Context, status int, msg string, errs ...error) huma.StatusError {
		if ctx != nil && ctx.Operation() != nil && strings.HasPrefix(ctx.Operation().Path, oauthPrefix) {
			return newOAuthError(status, msg)
		}
		return newErrorBody(status, msg, errs...)
	}
}

// contractWriter replaces the plain-text 404 and 405 that the mux (or a Connect service
// handler, for an unknown procedure) writes with the error contract of the path, so that
// every reply of the server follows one contract.
type contractWriter struct {
	http.ResponseWriter
	r       *http.Request
	swallow bool // a contract body was written instead; drop the plain text
}

func (w *contractWriter) WriteHeader(code int) {
	h := w.Header()
	if w.swallow || (code != http.StatusNotFound && code != http.StatusMethodNotAllowed) ||
		!strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.swallow = true
	msg := fmt.Sprintf("no route matches %s %s; GET /openapi.json lists the REST routes", w.r.Method, w.r.URL.Path)
	if code == http.StatusMethodNotAllowed {
		msg = fmt.Sprintf("%s %s is not allowed", w.r.Method, w.r.URL.Path)
		if allow := h.Get("Allow"); allow != "" {
			msg += "; allowed: " + allow
		}
	}
	var body any = newErrorBody(code, msg)
	if strings.HasPrefix(w.r.URL.Path, oauthPrefix) {
		body = newOAuthError(code, msg)
	}
	data, _ := json.Marshal(body)
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.ResponseWriter.WriteHeader(code)
	_, _ = w.ResponseWriter.Write(append(data, '\n'))
}

func (w *contractWriter) Write(b []byte) (int, error) {
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *contractWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap keeps http.ResponseController (deadlines, full duplex) working through it.
func (w *contractWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
