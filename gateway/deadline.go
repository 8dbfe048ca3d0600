package gateway

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// DefaultBodyReadTimeout is how long a client has to send a whole request body, on every
// route whose request is one message: a client trickling a byte every few seconds is cut
// off instead of holding a connection and a goroutine for as long as it likes. Agent streams,
// whose request body is the stream, are exempt; headers have their own timeout (Serve).
const DefaultBodyReadTimeout = 5 * time.Second

// WithBodyReadTimeout sets how long a client has to send a request body (tests shorten it).
func WithBodyReadTimeout(d time.Duration) Option { return func(g *Gateway) { g.bodyTimeout = d } }

func (g *Gateway) bodyReadTimeout() time.Duration {
	if g.bodyTimeout > 0 {
		return g.bodyTimeout
	}
	return DefaultBodyReadTimeout
}

// mountConnect serves a Connect service whose procedures take one request message (unary
// and server-streaming) with a read deadline on that message.
func (g *Gateway) mountConnect(path string, h http.Handler) {
	timeout := g.bodyReadTimeout()
	g.mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.Body != nil && r.Body != http.NoBody && rc.SetReadDeadline(time.Now().Add(timeout)) == nil {
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		}
		h.ServeHTTP(w, r)
	}))
}

// deadlineBody lifts the read deadline once the body has arrived in full, so that nothing
// reading the connection later (HTTP/1.1's check for a client gone away during a server
// stream) trips over it.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	once sync.Once
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.once.Do(func() { _ = b.rc.SetReadDeadline(time.Time{}) })
	}
	return n, err
}
