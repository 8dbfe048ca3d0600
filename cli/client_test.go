package cli

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestAPIErrorText pins what a user reads of an error reply: the status, each message with
// its field, and the error_id of a server error (the server's message asks to quote it).
func TestAPIErrorText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"server error", 500, `{"error_id":"7d0c","errors":[{"message":"internal error; quote error_id when reporting it"}]}`,
			"the server answered 500 Internal Server Error (error_id 7d0c): internal error; quote error_id when reporting it"},
		{"unavailable", 503, `{"error_id":"9a1b","errors":[{"message":"the store is unavailable; retry"}]}`,
			"the server answered 503 Service Unavailable (error_id 9a1b): the store is unavailable; retry"},
		{"client error keeps its id out", 422, `{"error_id":"1f2e","errors":[{"message":"is required","metadata":{"field":"application"}},{"message":"targets.prod.account: unknown"}]}`,
			"the server answered 422 Unprocessable Entity:\n  application: is required\n  targets.prod.account: unknown"},
		{"OAuth error", 401, `{"error":"invalid_client","error_description":"unknown client"}`,
			"the server answered 401 Unauthorized: invalid_client: unknown client"},
		{"plain text", 502, "Bad Gateway", "the server answered 502 Bad Gateway: Bad Gateway"},
		{"HTML page", 502, "<html><body>proxy error</body></html>", "the server answered 502 Bad Gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := readAPIError(&http.Response{StatusCode: tc.status, Body: io.NopCloser(strings.NewReader(tc.body))})
			if got := err.Error(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
