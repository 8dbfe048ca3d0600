package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/sortie-dev/sortie/console"
)

// consolePrefix is where the web console is served; GET / redirects there.
const consolePrefix = "/console/"

// consoleCSP is the Content-Security-Policy of the console: its scripts, styles and fonts
// come only from this origin, no inline script or style runs, and no other site frames it.
const consoleCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; " +
	"frame-ancestors 'none'"

// setConsoleHeaders sets the security headers every console response carries.
func setConsoleHeaders(h http.Header) {
	h.Set("Content-Security-Policy", consoleCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// consoleFile is one built file, read once at start-up.
type consoleFile struct {
	body        []byte
	contentType string
	etag        string
}

// consoleFiles serves the embedded build: files by path, index.html for every other path
// under /console/ (the single-page app routes on the client), hashed assets cached for a
// year and everything else revalidated on each load.
type consoleFiles struct {
	files map[string]consoleFile
}

func newConsoleFiles(fsys fs.FS) (*consoleFiles, error) {
	c := &consoleFiles{files: map[string]consoleFile{}}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = http.DetectContentType(body)
		}
		sum := sha256.Sum256(body)
		c.files[p] = consoleFile{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	return c, err
}

func (c *consoleFiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setConsoleHeaders(w.Header())
	name := strings.TrimPrefix(path.Clean(r.URL.Path), strings.TrimSuffix(consolePrefix, "/"))
	name = strings.TrimPrefix(name, "/")
	f, ok := c.files[name]
	immutable := ok && strings.HasPrefix(name, "assets/")
	if !ok {
		if strings.HasPrefix(name, "assets/") {
			// A hashed asset that is not in this build (an old page after an upgrade): no
			// index.html in its place, which the browser would try to run as a script.
			writeConsoleError(w, http.StatusNotFound, "no console asset "+r.URL.Path+" in this build; reload the page")
			return
		}
		f, ok = c.files["index.html"]
		if !ok {
			writeConsoleError(w, http.StatusNotFound, "the console is not built into this server")
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", f.etag)
	if immutable {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

// registerConsole serves the console under /console/ and redirects / there. Both are public:
// the files hold no data; the console signs in before it calls any API.
func (g *Gateway) registerConsole() {
	files, err := newConsoleFiles(console.Files())
	if err != nil {
		panic("gateway: reading the embedded console: " + err.Error())
	}
	g.mux.Handle("GET "+consolePrefix, files)
	g.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		setConsoleHeaders(w.Header())
		http.Redirect(w, r, consolePrefix, http.StatusFound)
	})
}

// writeConsoleError answers with the error contract's JSON body.
func writeConsoleError(w http.ResponseWriter, status int, msg string) {
	data, _ := json.Marshal(newErrorBody(status, msg))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}
