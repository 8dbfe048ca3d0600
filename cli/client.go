package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

// apiError is a reply of the server other than the one expected, read from the error
// contract ({"error_id", "errors": [{"message", "metadata": {"field"}}]}) or from an OAuth
// error body.
type apiError struct {
	Status   int
	Messages []string
	ErrorID  string
}

func (e *apiError) Error() string {
	what := fmt.Sprintf("the server answered %d %s", e.Status, http.StatusText(e.Status))
	// A server error is logged under its error_id: the one thing worth quoting when reporting it.
	if e.ErrorID != "" && e.Status >= http.StatusInternalServerError {
		what += " (error_id " + e.ErrorID + ")"
	}
	if len(e.Messages) == 0 {
		return what
	}
	if len(e.Messages) == 1 {
		return what + ": " + e.Messages[0]
	}
	return what + ":\n  " + strings.Join(e.Messages, "\n  ")
}

// readAPIError reads an error reply; its body never holds secrets.
func readAPIError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &apiError{Status: resp.StatusCode}
	var contract struct {
		ErrorID string `json:"error_id"`
		Errors  []struct {
			Message  string         `json:"message"`
			Metadata map[string]any `json:"metadata"`
		} `json:"errors"`
		OAuthError       string `json:"error"`
		OAuthDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &contract) == nil {
		e.ErrorID = contract.ErrorID
		for _, m := range contract.Errors {
			msg := m.Message
			if f, ok := m.Metadata["field"].(string); ok && f != "" && !strings.HasPrefix(msg, f) {
				msg = f + ": " + msg
			}
			e.Messages = append(e.Messages, msg)
		}
		if contract.OAuthError != "" {
			msg := contract.OAuthError
			if contract.OAuthDescription != "" {
				msg += ": " + contract.OAuthDescription
			}
			e.Messages = append(e.Messages, msg)
		}
	}
	if len(e.Messages) == 0 && len(body) > 0 && len(body) < 300 && !bytes.ContainsAny(body, "{<") {
		e.Messages = []string{strings.TrimSpace(string(body))}
	}
	return e
}

// transportError says why the server could not be reached, without Go's internals.
func transportError(base string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Timeout() {
		return fmt.Errorf("the Sortie server at %s did not answer in time", base)
	}
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	reason := "the connection failed"
	switch {
	case errors.Is(err, context.Canceled):
		return errors.New("interrupted")
	case errors.Is(err, syscall.ECONNREFUSED):
		reason = "connection refused"
	case errors.As(err, &dnsErr):
		reason = fmt.Sprintf("the host name %s did not resolve", dnsErr.Name)
	case errors.As(err, &certErr):
		return fmt.Errorf("the TLS certificate of %s is not trusted: %v", base, certErr.Err)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		reason = "the connection was closed"
	}
	return fmt.Errorf("cannot reach the Sortie server at %s (%s): is it running? Set --addr or SORTIE_ADDR to its URL", base, reason)
}

// client calls the REST API with a bearer token.
type client struct {
	base  string
	http  *http.Client
	token *tokenSource
}

// request is one API call. body, when not nil, is sent as JSON (or raw with contentType).
type request struct {
	method, path string
	query        url.Values
	body         any
	contentType  string // default application/json
	accept       string
	want         int // the expected status; default 200
}

// do sends r and returns the reply body, or an *apiError for any other status. A 401 on a
// cached token gets one new token and one retry.
func (c *client) do(ctx context.Context, r request) ([]byte, error) {
	var payload []byte
	if r.body != nil {
		if raw, ok := r.body.([]byte); ok {
			payload = raw
		} else {
			var err error
			if payload, err = json.Marshal(r.body); err != nil {
				return nil, fmt.Errorf("encode request: %w", err)
			}
		}
	}
	for attempt := 0; ; attempt++ {
		tok, err := c.token.get(ctx, attempt > 0)
		if err != nil {
			return nil, err
		}
		u := c.base + r.path
		if len(r.query) > 0 {
			u += "?" + r.query.Encode()
		}
		var body io.Reader
		if payload != nil {
			body = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, r.method, u, body)
		if err != nil {
			return nil, fmt.Errorf("build request: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("User-Agent", "sortie-cli")
		if payload != nil {
			ct := r.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
		}
		accept := r.accept
		if accept == "" {
			accept = "application/json"
		}
		req.Header.Set("Accept", accept)
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, transportError(c.base, err)
		}
		want := r.want
		if want == 0 {
			want = http.StatusOK
		}
		if resp.StatusCode == want {
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return nil, transportError(c.base, err)
			}
			return data, nil
		}
		aerr := readAPIError(resp)
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && c.token.renewable() {
			continue
		}
		if resp.StatusCode == http.StatusUnauthorized {
			return nil, fmt.Errorf("%w (the token was refused: run 'sortie login' again)", aerr)
		}
		return nil, aerr
	}
}

// getJSON calls GET path and decodes the reply into out.
func (c *client) getJSON(ctx context.Context, path string, query url.Values, out any) ([]byte, error) {
	data, err := c.do(ctx, request{method: http.MethodGet, path: path, query: query})
	if err != nil {
		return nil, err
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("the server's reply to GET %s is not what this CLI reads: %w", path, err)
		}
	}
	return data, nil
}
