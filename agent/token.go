package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Token renewal: a token is reused until renewFraction of its lifetime has passed, so a
// (re)connect never starts with a token about to expire.
const (
	renewFraction = 0.8
	// defaultTokenTTL is assumed when the endpoint does not say (expires_in missing).
	defaultTokenTTL = 5 * time.Minute
	maxTokenBody    = 1 << 20
)

// errInvalidClient is the token endpoint's invalid_client: the credential is wrong or was
// deleted. Retrying soon will not help.
var errInvalidClient = errors.New("the token endpoint rejected the client credentials (invalid_client): check --client-id and --client-secret")

// tokenError is a token endpoint failure with what it asked of the client.
type tokenError struct {
	status      int
	code        string
	description string
	// retryAfter is the Retry-After the endpoint sent, if any.
	retryAfter time.Duration
}

func (e *tokenError) Error() string {
	msg := fmt.Sprintf("token endpoint: HTTP %d", e.status)
	if e.code != "" {
		msg += " " + e.code
	}
	if e.description != "" {
		msg += ": " + e.description
	}
	return msg
}

// tokenSource gets access tokens with the client-credentials grant and caches them.
type tokenSource struct {
	url, clientID, clientSecret string
	client                      *http.Client
	now                         func() time.Time
	metrics                     *metrics

	mu      sync.Mutex // guards token and renewAt; held during a fetch so callers share it
	token   string
	renewAt time.Time
}

func newTokenSource(tokenURL, clientID, clientSecret string, client *http.Client, now func() time.Time, m *metrics) *tokenSource {
	return &tokenSource{url: tokenURL, clientID: clientID, clientSecret: clientSecret, client: client, now: now, metrics: m}
}

// Token returns a token that has used less than renewFraction of its lifetime, fetching a new
// one when needed.
func (s *tokenSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.now().Before(s.renewAt) {
		return s.token, nil
	}
	tok, ttl, err := s.fetch(ctx)
	if err != nil {
		s.metrics.tokenRequests.WithLabelValues("error").Inc()
		return "", err
	}
	s.metrics.tokenRequests.WithLabelValues("ok").Inc()
	s.token = tok
	s.renewAt = s.now().Add(time.Duration(float64(ttl) * renewFraction))
	return tok, nil
}

// Invalidate drops the cached token (the hub said it expired or rejected it).
func (s *tokenSource) Invalidate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = ""
}

func (s *tokenSource) fetch(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {s.clientID},
		"client_secret": {s.clientSecret},
		"scope":         {Scope},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		// The URL error names the endpoint, never the body holding the secret.
		return "", 0, fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody))
	if err != nil {
		return "", 0, fmt.Errorf("token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		terr := &tokenError{status: resp.StatusCode}
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &e) == nil {
			terr.code, terr.description = e.Error, e.Description
		}
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			terr.retryAfter = time.Duration(secs) * time.Second
		}
		if terr.code == "invalid_client" || resp.StatusCode == http.StatusUnauthorized {
			return "", 0, fmt.Errorf("%w (%v)", errInvalidClient, terr)
		}
		return "", 0, terr
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", 0, fmt.Errorf("token response: not JSON: %w", err)
	}
	if tr.AccessToken == "" {
		return "", 0, errors.New("token response: no access_token")
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "Bearer") {
		return "", 0, fmt.Errorf("token response: token_type %q, want Bearer", tr.TokenType)
	}
	ttl := defaultTokenTTL
	if tr.ExpiresIn > 0 {
		ttl = time.Duration(tr.ExpiresIn) * time.Second
	}
	return tr.AccessToken, ttl, nil
}
