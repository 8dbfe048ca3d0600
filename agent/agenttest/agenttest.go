// Package agenttest provides what agent tests talk to instead of a Sortie server: a test
// Agent Hub serving the generated AgentHubService on a real cleartext HTTP/2 (h2c) loopback
// listener, recording every message each agent stream sends and letting the test send
// commands and Goodbyes, and a test OAuth token endpoint issuing short-lived tokens.
//
// It imports only the generated protocol and the connect runtime, like the agent.
package agenttest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/gen/sortie/hub/v1/hubv1connect"
)

// Hub is a test Agent Hub. It answers each Hello with a Welcome and records what follows.
// Its methods are safe for concurrent use.
type Hub struct {
	t    testing.TB
	addr string
	opts hubOptions
	// tlsConfig and certPEM are set WithTLS.
	tlsConfig *tls.Config
	certPEM   []byte

	mu      sync.Mutex // guards srv, streams and changed
	srv     *http.Server
	streams []*Stream
	// changed is closed (and replaced) whenever a stream connects.
	changed chan struct{}
}

type hubOptions struct {
	tls           bool
	heartbeat     time.Duration
	sendBeats     bool
	maxMessage    int64
	tokens        *TokenServer
	beforeWelcome func(*Stream) *hubv1.ConnectResponse
}

// HubOption configures a Hub.
type HubOption func(*hubOptions)

// WithHeartbeat sets the heartbeat interval the Welcome announces (default 20s) and makes
// the hub send heartbeats at that interval.
func WithHeartbeat(d time.Duration) HubOption {
	return func(o *hubOptions) { o.heartbeat, o.sendBeats = d, true }
}

// WithMaxMessageBytes sets the Welcome's max_message_bytes.
func WithMaxMessageBytes(n int64) HubOption {
	return func(o *hubOptions) { o.maxMessage = n }
}

// WithTLS serves TLS 1.2+ with ALPN h2 (an https URL) under a fresh self-signed certificate
// for 127.0.0.1; CACertPEM returns it, for the agent's CA file.
func WithTLS() HubOption {
	return func(o *hubOptions) { o.tls = true }
}

// WithTokens makes the hub accept only bearer tokens ts issued (others get Unauthenticated).
func WithTokens(ts *TokenServer) HubOption {
	return func(o *hubOptions) { o.tokens = ts }
}

// WithBeforeWelcome sends the message f returns (if not nil) before each Welcome.
func WithBeforeWelcome(f func(*Stream) *hubv1.ConnectResponse) HubOption {
	return func(o *hubOptions) { o.beforeWelcome = f }
}

// NewHub starts a hub on a free loopback port; t's cleanup stops it.
func NewHub(t testing.TB, opts ...HubOption) *Hub {
	t.Helper()
	h := &Hub{t: t, opts: hubOptions{heartbeat: 20 * time.Second}, changed: make(chan struct{})}
	for _, o := range opts {
		o(&h.opts)
	}
	if h.opts.tls {
		cert, certPEM, err := selfSigned()
		if err != nil {
			t.Fatalf("agenttest: certificate: %v", err)
		}
		h.certPEM = certPEM
		h.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("agenttest: listen: %v", err)
	}
	h.addr = ln.Addr().String()
	h.serve(ln)
	t.Cleanup(h.Stop)
	return h
}

// URL returns the hub's base URL: http:// (h2c), or https:// WithTLS.
func (h *Hub) URL() string {
	if h.tlsConfig != nil {
		return "https://" + h.addr
	}
	return "http://" + h.addr
}

// CACertPEM returns the hub's self-signed certificate WithTLS (nil otherwise).
func (h *Hub) CACertPEM() []byte { return h.certPEM }

// selfSigned returns a self-signed CA certificate for 127.0.0.1 and localhost.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "agenttest hub"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func (h *Hub) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.Handle(hubv1connect.NewAgentHubServiceHandler(h))
	var protocols http.Protocols
	if h.tlsConfig != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	srv := &http.Server{Handler: mux, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second, TLSConfig: h.tlsConfig,
		// Refused handshakes are what some tests are about: keep them out of the output.
		ErrorLog: log.New(io.Discard, "", 0)}
	h.mu.Lock()
	h.srv = srv
	h.mu.Unlock()
	go func() {
		if h.tlsConfig != nil {
			_ = srv.ServeTLS(ln, "", "")
		} else {
			_ = srv.Serve(ln)
		}
	}()
}

// Stop closes the listener and every connection (as a crashed server would).
func (h *Hub) Stop() {
	h.mu.Lock()
	srv := h.srv
	h.srv = nil
	h.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Restart stops the hub and listens again on the same port, as a restarted server would.
func (h *Hub) Restart() {
	h.t.Helper()
	h.Stop()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", h.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		h.t.Fatalf("agenttest: listen again on %s: %v", h.addr, err)
	}
	h.serve(ln)
}

// Streams returns the streams accepted so far, oldest first.
func (h *Hub) Streams() []*Stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Stream(nil), h.streams...)
}

// WaitStream waits until n streams have been accepted and returns the nth (1-based), or
// fails the test after timeout.
func (h *Hub) WaitStream(n int, timeout time.Duration) *Stream {
	h.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		if len(h.streams) >= n {
			s := h.streams[n-1]
			h.mu.Unlock()
			return s
		}
		changed := h.changed
		h.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			h.t.Fatalf("agenttest: stream %d did not connect within %s (%d so far)", n, timeout, len(h.Streams()))
			return nil
		}
	}
}

// Messages returns what every stream received after its Hello, in stream order.
func (h *Hub) Messages() []*hubv1.ConnectRequest {
	var out []*hubv1.ConnectRequest
	for _, s := range h.Streams() {
		out = append(out, s.Messages()...)
	}
	return out
}

// Connect implements hubv1connect.AgentHubServiceHandler.
func (h *Hub) Connect(ctx context.Context, stream *connect.BidiStream[hubv1.ConnectRequest, hubv1.ConnectResponse]) error {
	auth := stream.RequestHeader().Get("Authorization")
	if ts := h.opts.tokens; ts != nil {
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || !ts.valid(tok) {
			return connect.NewError(connect.CodeUnauthenticated, errors.New("unknown or expired token"))
		}
	}
	first, err := stream.Receive()
	if err != nil {
		return err
	}
	if first.GetHello() == nil {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("the first message must be a Hello"))
	}
	s := &Stream{
		Hello:         first.GetHello(),
		Authorization: auth,
		ID:            randomHex(8),
		send:          stream.Send,
		end:           make(chan struct{}),
		done:          make(chan struct{}),
		changed:       make(chan struct{}),
		beats:         h.opts.sendBeats,
	}
	defer s.finish()
	if h.opts.beforeWelcome != nil {
		if m := h.opts.beforeWelcome(s); m != nil {
			if err := s.Send(m); err != nil {
				return err
			}
		}
	}
	err = s.Send(&hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Welcome{Welcome: &hubv1.Welcome{
		HubInstanceUuid:   "test-hub",
		StreamId:          s.ID,
		HeartbeatInterval: durationpb.New(h.opts.heartbeat),
		MaxMessageBytes:   h.opts.maxMessage,
	}}})
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.streams = append(h.streams, s)
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()

	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			msg, err := stream.Receive()
			if err != nil {
				s.record(nil, err)
				return
			}
			s.record(msg, nil)
		}
	}()
	tick := time.NewTicker(h.opts.heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-recvDone:
			return nil
		case <-s.end:
			return nil
		case <-tick.C:
			if s.sendingBeats() {
				_ = s.Send(&hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Heartbeat{
					Heartbeat: &hubv1.Heartbeat{SendTime: timestamppb.Now()}}})
			}
		}
	}
}

// Stream is one agent stream the hub accepted.
type Stream struct {
	// Hello is the agent's first message.
	Hello *hubv1.Hello
	// Authorization is the stream's Authorization header.
	Authorization string
	// ID is the stream id sent in the Welcome.
	ID string

	sendMu   sync.Mutex // guards send and finished: the handler's stream may send only while it runs
	send     func(*hubv1.ConnectResponse) error
	finished bool

	end     chan struct{} // closed to make the handler return
	endOnce sync.Once
	done    chan struct{} // closed when the handler returned

	mu      sync.Mutex // guards msgs, recvErr, beats and changed
	msgs    []*hubv1.ConnectRequest
	recvErr error
	beats   bool
	changed chan struct{}
}

func (s *Stream) finish() {
	s.sendMu.Lock()
	s.finished = true
	s.sendMu.Unlock()
	close(s.done)
}

func (s *Stream) record(msg *hubv1.ConnectRequest, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if msg != nil {
		s.msgs = append(s.msgs, msg)
	} else {
		s.recvErr = err
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// Send sends msg to the agent.
func (s *Stream) Send(msg *hubv1.ConnectResponse) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.finished {
		return errors.New("agenttest: the stream has ended")
	}
	return s.send(msg)
}

// SendCommand sends a command to the agent.
func (s *Stream) SendCommand(cmd *hubv1.Command) error {
	return s.Send(&hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Command{Command: cmd}})
}

// Do sends cmd (with a deadline of timeout if it has none) and returns its result.
func (s *Stream) Do(t testing.TB, cmd *hubv1.Command, timeout time.Duration) *hubv1.CommandResult {
	t.Helper()
	if cmd.GetDeadline() == nil {
		cmd.Deadline = timestamppb.New(time.Now().Add(timeout))
	}
	before := s.Count(ResultFor(cmd.GetId()))
	if err := s.SendCommand(cmd); err != nil {
		t.Fatalf("agenttest: send command %s: %v", cmd.GetId(), err)
	}
	var res *hubv1.CommandResult
	s.WaitForCount(t, before+1, ResultFor(cmd.GetId()), timeout+5*time.Second)
	for _, m := range s.Messages() {
		if ResultFor(cmd.GetId())(m) {
			res = m.GetCommandResult()
		}
	}
	return res
}

// Goodbye says goodbye to the agent and ends the stream.
func (s *Stream) Goodbye(reason hubv1.Goodbye_Reason, message string) error {
	err := s.Send(&hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Goodbye{Goodbye: &hubv1.Goodbye{Reason: reason, Message: message}}})
	s.Close()
	return err
}

// Close ends the stream from the hub's side.
func (s *Stream) Close() { s.endOnce.Do(func() { close(s.end) }) }

// Done is closed once the hub's side of the stream has ended.
func (s *Stream) Done() <-chan struct{} { return s.done }

// StopHeartbeats stops the hub's heartbeats on this stream.
func (s *Stream) StopHeartbeats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beats = false
}

func (s *Stream) sendingBeats() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.beats
}

// Messages returns what the agent sent after its Hello.
func (s *Stream) Messages() []*hubv1.ConnectRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*hubv1.ConnectRequest(nil), s.msgs...)
}

// Err returns the error that ended the stream's receiving side (io.EOF for a clean close),
// or nil while it is open.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recvErr
}

// Count returns how many received messages match.
func (s *Stream) Count(match func(*hubv1.ConnectRequest) bool) int {
	n := 0
	for _, m := range s.Messages() {
		if match(m) {
			n++
		}
	}
	return n
}

// WaitFor waits up to timeout for a message that matches and returns the first one.
func (s *Stream) WaitFor(t testing.TB, match func(*hubv1.ConnectRequest) bool, timeout time.Duration) *hubv1.ConnectRequest {
	t.Helper()
	ms := s.WaitForCount(t, 1, match, timeout)
	return ms[0]
}

// WaitForCount waits up to timeout until n received messages match and returns them.
func (s *Stream) WaitForCount(t testing.TB, n int, match func(*hubv1.ConnectRequest) bool, timeout time.Duration) []*hubv1.ConnectRequest {
	t.Helper()
	if ms, ok := s.AwaitCount(n, match, timeout); ok {
		return ms
	}
	t.Fatalf("agenttest: waited %s for %d matching messages on stream %s, got %d", timeout, n, s.ID, s.Count(match))
	return nil
}

// AwaitCount is WaitForCount reporting failure instead of failing the test.
func (s *Stream) AwaitCount(n int, match func(*hubv1.ConnectRequest) bool, timeout time.Duration) ([]*hubv1.ConnectRequest, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		var got []*hubv1.ConnectRequest
		for _, m := range s.msgs {
			if match(m) {
				got = append(got, m)
			}
		}
		changed := s.changed
		s.mu.Unlock()
		if len(got) >= n {
			return got, true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return got, false
		}
	}
}

// ResultFor matches the CommandResult of command id.
func ResultFor(id string) func(*hubv1.ConnectRequest) bool {
	return func(m *hubv1.ConnectRequest) bool {
		return m.GetCommandResult().GetCommandId() == id && m.GetCommandResult() != nil
	}
}

// IsHeartbeat matches heartbeats.
func IsHeartbeat(m *hubv1.ConnectRequest) bool { return m.GetHeartbeat() != nil }

// IsGoodbye matches goodbyes.
func IsGoodbye(m *hubv1.ConnectRequest) bool { return m.GetGoodbye() != nil }

// IsLastSnapshotChunk matches the final chunk of an inventory snapshot.
func IsLastSnapshotChunk(m *hubv1.ConnectRequest) bool { return m.GetInventorySnapshot().GetLast() }

// Snapshot returns the resources of the first complete snapshot the stream received.
func (s *Stream) Snapshot() ([]*hubv1.Resource, bool) {
	var out []*hubv1.Resource
	for _, m := range s.Messages() {
		if c := m.GetInventorySnapshot(); c != nil {
			out = append(out, c.GetResources()...)
			if c.GetLast() {
				return out, true
			}
		}
	}
	return nil, false
}

// TokenServer is a test OAuth token endpoint (client-credentials grant, form body) at
// /oauth/token. Its methods are safe for concurrent use.
type TokenServer struct {
	clientID, clientSecret string
	srv                    *http.Server
	url                    string

	mu       sync.Mutex // guards ttl, issued, order, requests, scopes and reject
	ttl      time.Duration
	issued   map[string]time.Time // token -> expiry
	order    []string
	requests int
	scopes   []string
	reject   bool
}

// NewTokenServer starts a token endpoint that accepts one credential and issues tokens
// valid for one hour (see SetTTL); t's cleanup stops it.
func NewTokenServer(t testing.TB, clientID, clientSecret string) *TokenServer {
	t.Helper()
	ts := &TokenServer{clientID: clientID, clientSecret: clientSecret, ttl: time.Hour, issued: map[string]time.Time{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("agenttest: listen: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", ts.serveToken)
	ts.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ts.url = "http://" + ln.Addr().String() + "/oauth/token"
	go func() { _ = ts.srv.Serve(ln) }()
	t.Cleanup(func() { _ = ts.srv.Close() })
	return ts
}

// URL returns the token endpoint's URL.
func (ts *TokenServer) URL() string { return ts.url }

// SetTTL sets the lifetime (expires_in) of tokens issued from now on.
func (ts *TokenServer) SetTTL(d time.Duration) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.ttl = d
}

// RejectAll makes the endpoint answer 401 invalid_client, as for a deleted credential.
func (ts *TokenServer) RejectAll(reject bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.reject = reject
}

// Requests returns how many token requests arrived.
func (ts *TokenServer) Requests() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.requests
}

// Issued returns the tokens issued, oldest first.
func (ts *TokenServer) Issued() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.order...)
}

// Scopes returns the scope parameter of each request.
func (ts *TokenServer) Scopes() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.scopes...)
}

func (ts *TokenServer) valid(tok string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	exp, ok := ts.issued[tok]
	return ok && time.Now().Before(exp)
}

func (ts *TokenServer) serveToken(w http.ResponseWriter, r *http.Request) {
	ts.mu.Lock()
	ts.requests++
	ts.mu.Unlock()
	oauthError := func(status int, code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":%q,"error_description":%q}`, code, desc)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		oauthError(http.StatusBadRequest, "invalid_request", "want a form body, got "+ct)
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	ts.mu.Lock()
	ts.scopes = append(ts.scopes, r.PostForm.Get("scope"))
	reject, ttl := ts.reject, ts.ttl
	ts.mu.Unlock()
	switch {
	case r.PostForm.Get("grant_type") != "client_credentials":
		oauthError(http.StatusBadRequest, "unsupported_grant_type", "only client_credentials")
	case reject || r.PostForm.Get("client_id") != ts.clientID || r.PostForm.Get("client_secret") != ts.clientSecret:
		oauthError(http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
	default:
		tok := "tok-" + randomHex(16)
		ts.mu.Lock()
		ts.issued[tok] = time.Now().Add(ttl)
		ts.order = append(ts.order, tok)
		ts.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":%d,"scope":%q}`,
			tok, int(ttl.Seconds()), r.PostForm.Get("scope"))
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
