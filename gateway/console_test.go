package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// consoleGet fetches path without following redirects.
func consoleGet(t *testing.T, ts *testServer, path string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

func wantConsoleSecurityHeaders(t *testing.T, path string, h http.Header) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
			"font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
		"X-Frame-Options":        "DENY",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("GET %s: %s = %q, want %q", path, k, got, v)
		}
	}
}

// consoleAssets returns the script and stylesheet URLs index.html loads, failing on any
// inline script, inline style, <style> element or event-handler attribute: the CSP would
// block them, so the console would break in a browser.
func consoleAssets(t *testing.T, index []byte) (scripts, styles []string) {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(index))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attrs := map[string]string{}
			for _, a := range n.Attr {
				attrs[a.Key] = a.Val
				if a.Key == "style" || strings.HasPrefix(a.Key, "on") {
					t.Errorf("index.html: <%s %s=...> is inline code the CSP blocks", n.Data, a.Key)
				}
			}
			switch n.Data {
			case "script":
				if attrs["src"] == "" || (n.FirstChild != nil && strings.TrimSpace(n.FirstChild.Data) != "") {
					t.Errorf("index.html has an inline <script>")
				}
				scripts = append(scripts, attrs["src"])
			case "style":
				t.Errorf("index.html has a <style> element")
			case "link":
				if attrs["rel"] == "stylesheet" {
					styles = append(styles, attrs["href"])
				}
			}
			for k, v := range attrs {
				if (k == "src" || k == "href") && (strings.Contains(v, "//") || strings.HasPrefix(v, "data:")) {
					t.Errorf("index.html loads %s=%q from outside the server", k, v)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return scripts, styles
}

func TestConsoleServesIndexAndHashedAssets(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	index := consoleGet(t, ts, "/console/", nil)
	if index.Status != http.StatusOK || !strings.HasPrefix(index.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /console/: %d %s", index.Status, index.Header.Get("Content-Type"))
	}
	if got := index.Header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("index.html Cache-Control = %q, want no-cache", got)
	}
	wantConsoleSecurityHeaders(t, "/console/", index.Header)
	if !bytes.Contains(index.Body, []byte(`<div id="root">`)) {
		t.Errorf("GET /console/ is not the console's index.html:\n%s", index.Body)
	}
	scripts, styles := consoleAssets(t, index.Body)
	if len(scripts) == 0 || len(styles) == 0 {
		t.Fatalf("index.html loads scripts %v and styles %v; want both", scripts, styles)
	}
	for _, a := range []struct {
		urls []string
		ct   string
	}{{scripts, "text/javascript"}, {styles, "text/css"}} {
		for _, u := range a.urls {
			if !strings.HasPrefix(u, "/console/assets/") {
				t.Errorf("asset %s is not under /console/assets/", u)
				continue
			}
			r := consoleGet(t, ts, u, nil)
			if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), a.ct) || len(r.Body) == 0 {
				t.Errorf("GET %s: %d %q (%d bytes), want 200 %s", u, r.Status, r.Header.Get("Content-Type"), len(r.Body), a.ct)
			}
			if got := r.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
				t.Errorf("GET %s: Cache-Control = %q, want immutable for a year", u, got)
			}
			wantConsoleSecurityHeaders(t, u, r.Header)
		}
	}

	// The ETag lets a browser revalidate index.html cheaply.
	etag := index.Header.Get("ETag")
	if etag == "" {
		t.Fatal("index.html has no ETag")
	}
	if r := consoleGet(t, ts, "/console/", http.Header{"If-None-Match": {etag}}); r.Status != http.StatusNotModified {
		t.Errorf("GET /console/ with its ETag: %d, want 304", r.Status)
	}
	if r := consoleGet(t, ts, "/console/favicon.svg", nil); r.Status != http.StatusOK || r.Header.Get("Content-Type") != "image/svg+xml" {
		t.Errorf("GET /console/favicon.svg: %d %q", r.Status, r.Header.Get("Content-Type"))
	}
}

func TestConsoleClientRoutesServeIndex(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	index := consoleGet(t, ts, "/console/", nil).Body
	for _, p := range []string{
		"/console/agents", "/console/deployments/0d6c3d1e-2a4f-4c37-9f0e-0c5d2b8a9e11", "/console/credentials",
		"/console/users", "/console/environments", "/console/callback?code=x&state=y", "/console/device?user_code=ABCD-EFGH",
		"/console/invite", "/console/no/such/page",
	} {
		r := consoleGet(t, ts, p, nil)
		if r.Status != http.StatusOK || !bytes.Equal(r.Body, index) {
			t.Errorf("GET %s: %d, want index.html (%d bytes, got %d)", p, r.Status, len(index), len(r.Body))
		}
		if got := r.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control = %q, want no-cache", p, got)
		}
		wantConsoleSecurityHeaders(t, p, r.Header)
	}
	// A hashed asset this build does not have is a 404, not index.html (which the browser
	// would try to run as a script).
	r := consoleGet(t, ts, "/console/assets/index-00000000.js", nil)
	if r.Status != http.StatusNotFound || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") ||
		!bytes.Contains(r.Body, []byte("no console asset")) {
		t.Errorf("GET a missing asset: %d %q %s, want the 404 error contract", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	wantConsoleSecurityHeaders(t, "missing asset", r.Header)
	// The console is read-only: other methods are refused.
	resp, err := http.Post(ts.URL+"/console/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /console/: %d, want 405", resp.StatusCode)
	}
}

func TestRootRedirectsToConsole(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	r := consoleGet(t, ts, "/", nil)
	if r.Status != http.StatusFound || r.Header.Get("Location") != "/console/" {
		t.Errorf("GET /: %d Location %q, want 302 to /console/", r.Status, r.Header.Get("Location"))
	}
	wantConsoleSecurityHeaders(t, "/", r.Header)
	// Only / itself: an unknown path is still the API's 404.
	if r := consoleGet(t, ts, "/no-such-route", nil); r.Status != http.StatusNotFound {
		t.Errorf("GET /no-such-route: %d, want 404", r.Status)
	}
	// /console without the slash gets to the console too.
	if r := consoleGet(t, ts, "/console", nil); r.Status/100 != 3 || r.Header.Get("Location") != "/console/" {
		t.Errorf("GET /console: %d Location %q, want a redirect to /console/", r.Status, r.Header.Get("Location"))
	}
}
