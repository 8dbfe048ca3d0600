package identity

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sortie-dev/sortie/store"
)

// The device authorization grant (RFC 8628): `sortie login` without a client secret asks for
// a device code, shows the user code, and polls the token endpoint until a person approves
// the code in the console (ApproveDevice).
const (
	// GrantDeviceCode is the grant type of the device flow's token requests.
	GrantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"
	// DeviceClientID is the public client the CLI uses for the device flow.
	DeviceClientID = "sortie-cli"
	// DeviceCodeTTL is how long a device authorization waits for its approval.
	DeviceCodeTTL = 10 * time.Minute
	// DevicePollInterval is the least time between two polls; polling faster gets slow_down
	// and the interval grows by five seconds (RFC 8628 section 3.5).
	DevicePollInterval = 5 * time.Second
	// deviceGrace is how long after its expiry a device code is still known, to answer
	// expired_token rather than invalid_grant.
	deviceGrace = 10 * time.Minute
)

// Device flow error codes (RFC 8628 section 3.5, RFC 6749 section 5.2).
const (
	OAuthAuthorizationPending = "authorization_pending"
	OAuthAccessDenied         = "access_denied"
	OAuthExpiredToken         = "expired_token"
)

// userCodeAlphabet has no vowels (no words) and no look-alikes (0/O, 1/I/L, 5/S, 2/Z).
const userCodeAlphabet = "BCDFGHJKMNPQRTVWXY"

// userCodeLength is the number of letters of a user code, shown as ABCD-EFGH.
const userCodeLength = 8

// DeviceAuthorization is the reply of the device authorization endpoint.
type DeviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// Device authorization states.
const (
	deviceApproved = "approved"
	devicePending  = "pending"
	deviceDenied   = "denied"
	deviceUsed     = "used"
)

// deviceValue is the JSON value of a TicketDeviceCode.
type deviceValue struct {
	UserCode  string    `json:"userCode"`
	State     string    `json:"state"`
	UserID    string    `json:"userId,omitempty"`
	OrgID     string    `json:"orgId,omitempty"`
	EnvID     string    `json:"envId,omitempty"`
	Interval  int64     `json:"interval"` // seconds
	LastPoll  time.Time `json:"lastPoll"`
	ExpiresAt time.Time `json:"expiresAt"` // the ticket itself lives deviceGrace longer
}

// deviceTicketID is the id of a device code's ticket: the code's keyed hash, so the store
// never holds the code.
func (s *Service) deviceTicketID(deviceCode string) string {
	h := s.hashSecret("device " + deviceCode)
	return hex.EncodeToString(h[:])
}

func newUserCode() string {
	b := make([]byte, userCodeLength)
	_, _ = rand.Read(b)
	for i := range b {
		// 256 is not a multiple of 18: the bias is below 2% and the code lives ten minutes.
		b[i] = userCodeAlphabet[int(b[i])%len(userCodeAlphabet)]
	}
	return string(b)
}

// FormatUserCode shows a user code as ABCD-EFGH.
func FormatUserCode(code string) string {
	if len(code) != userCodeLength {
		return code
	}
	return code[:4] + "-" + code[4:]
}

// normalizeUserCode accepts what a person types: any case, with or without the dash or
// spaces.
func normalizeUserCode(code string) (string, bool) {
	code = strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, strings.ToUpper(code))
	if len(code) != userCodeLength {
		return "", false
	}
	for _, r := range code {
		if !strings.ContainsRune(userCodeAlphabet, r) {
			return "", false
		}
	}
	return code, true
}

// DeviceAuthorizationRequest is a parsed request of the device authorization endpoint.
type DeviceAuthorizationRequest struct {
	ClientID string
	Scope    string
}

// ParseDeviceAuthorizationRequest parses the form body of the device authorization endpoint.
func ParseDeviceAuthorizationRequest(contentType string, body []byte) (DeviceAuthorizationRequest, *OAuthError) {
	if contentType != "" {
		if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != formContentType {
			return DeviceAuthorizationRequest{}, badRequest("send the parameters as %s", formContentType)
		}
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return DeviceAuthorizationRequest{}, badRequest("malformed form body")
	}
	for _, name := range []string{"client_id", "scope"} {
		if len(form[name]) > 1 {
			return DeviceAuthorizationRequest{}, badRequest("parameter %s is included more than once", name)
		}
	}
	req := DeviceAuthorizationRequest{ClientID: form.Get("client_id"), Scope: form.Get("scope")}
	if req.ClientID != DeviceClientID {
		return DeviceAuthorizationRequest{}, &OAuthError{Status: 401, Code: OAuthInvalidClient,
			Description: fmt.Sprintf("the device flow is for client_id=%s only", DeviceClientID)}
	}
	return req, nil
}

// StartDevice begins a device authorization: the device code the client polls with, and
// the user code a person approves at the verification URI.
func (s *Service) StartDevice(ctx context.Context, req DeviceAuthorizationRequest) (DeviceAuthorization, *OAuthError) {
	unavailable := &OAuthError{Status: 503, Code: OAuthTemporarilyUnavailable,
		Description: "the identity store is unavailable; retry later", RetryAfterSeconds: 5}
	if strings.TrimSpace(req.Scope) != "" {
		for _, sc := range parseScopeParam(req.Scope) {
			if !slices.Contains(Scopes, sc) {
				return DeviceAuthorization{}, &OAuthError{Status: 400, Code: OAuthInvalidScope, Description: fmt.Sprintf("unknown scope %q", sc)}
			}
		}
	}
	now := s.now().UTC()
	deviceCode := newSecret()
	ticketID := s.deviceTicketID(deviceCode)
	v := deviceValue{State: devicePending, Interval: int64(DevicePollInterval / time.Second), ExpiresAt: now.Add(DeviceCodeTTL)}
	// A user code is short: draw again on the rare collision with a live one.
	for attempt := 0; ; attempt++ {
		v.UserCode = newUserCode()
		err := s.st.PutTicket(ctx, store.Ticket{Kind: store.TicketDeviceUser, ID: v.UserCode, Value: []byte(ticketID), ExpiresAt: v.ExpiresAt})
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrConflict) || attempt == 4 {
			s.log.Error("device authorization: store user code", "err", err)
			return DeviceAuthorization{}, unavailable
		}
	}
	value, _ := json.Marshal(v)
	if err := s.st.PutTicket(ctx, store.Ticket{Kind: store.TicketDeviceCode, ID: ticketID, Value: value, ExpiresAt: v.ExpiresAt.Add(deviceGrace)}); err != nil {
		s.log.Error("device authorization: store device code", "err", err)
		_ = s.st.DeleteTicket(ctx, store.TicketDeviceUser, v.UserCode)
		return DeviceAuthorization{}, unavailable
	}
	code := FormatUserCode(v.UserCode)
	verify := s.issuer + "/console/device"
	return DeviceAuthorization{
		DeviceCode: deviceCode, UserCode: code, VerificationURI: verify,
		VerificationURIComplete: verify + "?user_code=" + url.QueryEscape(code),
		ExpiresIn:               int64(DeviceCodeTTL / time.Second), Interval: v.Interval,
	}, nil
}

// parseDeviceTokenRequest checks a token request of the device grant.
func parseDeviceTokenRequest(req TokenRequest) (TokenRequest, *OAuthError) {
	switch {
	case req.ClientID != DeviceClientID:
		return TokenRequest{}, &OAuthError{Status: 401, Code: OAuthInvalidClient,
			Description: fmt.Sprintf("the device grant is for client_id=%s only", DeviceClientID), BasicChallenge: req.UsedBasic}
	case req.ClientSecret != "":
		return TokenRequest{}, badRequest("client %s is public: send no client secret", DeviceClientID)
	case req.DeviceCode == "":
		return TokenRequest{}, badRequest("device_code is required")
	}
	return req, nil
}

// deviceToken answers a poll of the device grant: pending, slow_down when polled faster
// than the interval, access_denied, expired_token, and once approved a bearer user token,
// exactly once.
func (s *Service) deviceToken(ctx context.Context, req TokenRequest) (TokenResponse, *OAuthError) {
	unavailable := &OAuthError{Status: 503, Code: OAuthTemporarilyUnavailable,
		Description: "the identity store is unavailable; retry later", RetryAfterSeconds: 5}
	grantError := func(code, format string, args ...any) (TokenResponse, *OAuthError) {
		return TokenResponse{}, &OAuthError{Status: 400, Code: code, Description: fmt.Sprintf(format, args...)}
	}
	id := s.deviceTicketID(req.DeviceCode)
	for attempt := 0; attempt < 5; attempt++ {
		t, err := s.st.GetTicket(ctx, store.TicketDeviceCode, id)
		if errors.Is(err, store.ErrNotFound) {
			return grantError(OAuthInvalidGrant, "unknown or expired device code; start the sign-in again")
		} else if err != nil {
			s.log.Error("device token: read device code", "err", err)
			return TokenResponse{}, unavailable
		}
		var v deviceValue
		if err := json.Unmarshal(t.Value, &v); err != nil {
			s.log.Error("device token: damaged device code", "err", err)
			return TokenResponse{}, unavailable
		}
		now := s.now().UTC()
		switch {
		case v.State == deviceUsed:
			return grantError(OAuthInvalidGrant, "this device code was already used; start the sign-in again")
		case v.State == deviceDenied:
			return grantError(OAuthAccessDenied, "the sign-in was denied")
		case !now.Before(v.ExpiresAt):
			return grantError(OAuthExpiredToken, "the sign-in request expired before it was approved; start again")
		}
		next := v
		next.LastPoll = now
		tooFast := false
		if v.State == devicePending {
			tooFast = !v.LastPoll.IsZero() && now.Sub(v.LastPoll) < time.Duration(v.Interval)*time.Second
			if tooFast {
				next.Interval += int64(DevicePollInterval / time.Second)
			}
		} else {
			next.State = deviceUsed
		}
		value, _ := json.Marshal(next)
		switch err := s.st.SwapTicket(ctx, store.TicketDeviceCode, id, t.Value, value); {
		case errors.Is(err, store.ErrStale):
			continue // approved, or polled, meanwhile
		case errors.Is(err, store.ErrNotFound):
			return grantError(OAuthInvalidGrant, "unknown or expired device code; start the sign-in again")
		case err != nil:
			s.log.Error("device token: update device code", "err", err)
			return TokenResponse{}, unavailable
		}
		if v.State == devicePending {
			if tooFast {
				return grantError(OAuthSlowDown, "polling too fast; wait %d seconds between requests", next.Interval)
			}
			return grantError(OAuthAuthorizationPending, "the sign-in is waiting for approval")
		}
		u, err := s.st.GetUser(ctx, v.OrgID, v.UserID)
		if _, member := u.Member(v.EnvID); errors.Is(err, store.ErrNotFound) || (err == nil && !member) {
			return grantError(OAuthAccessDenied, "the approving user is no longer a member of the environment")
		} else if err != nil {
			s.log.Error("device token: read user", "err", err)
			return TokenResponse{}, unavailable
		}
		tok, err := s.IssueUserToken(ctx, u, v.EnvID, nil)
		if err != nil {
			s.log.Error("device token: issue", "err", err)
			return TokenResponse{}, unavailable
		}
		s.log.Info("device sign-in completed", "tenant", v.OrgID+"/"+v.EnvID, "user", u.ID)
		return TokenResponse{AccessToken: tok.Token, TokenType: "Bearer", ExpiresIn: int64(tok.ExpiresIn / time.Second), Scope: tok.Scope}, nil
	}
	return TokenResponse{}, unavailable
}

// ApproveDevice answers the device sign-in showing userCode for the user p: approved for
// envID (empty: p's environment), of which p must be a member, or denied. A code is answered
// once.
func (s *Service) ApproveDevice(ctx context.Context, p Principal, userCode, envID string, deny bool) error {
	if p.Type != PrincipalUser {
		return fmt.Errorf("%w: only a signed-in person can approve a device sign-in, not a machine credential", ErrNotPermitted)
	}
	code, ok := normalizeUserCode(userCode)
	if !ok {
		verr := &ValidationError{}
		verr.add("user_code", "%q is not a code such as BCDF-GHJK: 8 letters of %s", userCode, userCodeAlphabet)
		return verr
	}
	if envID == "" {
		envID = p.EnvID
	}
	noCode := &CallerError{Kind: store.ErrNotFound, Message: fmt.Sprintf(
		"no sign-in is waiting for code %s: check the code the terminal shows, or start again if it expired", FormatUserCode(code))}
	ut, err := s.st.GetTicket(ctx, store.TicketDeviceUser, code)
	if errors.Is(err, store.ErrNotFound) {
		return noCode
	} else if err != nil {
		return err
	}
	u, err := s.st.GetUser(ctx, p.OrgID, p.Subject)
	if err != nil {
		return callerError(err, "the user no longer exists")
	}
	if _, ok := u.Member(envID); !ok {
		return &CallerError{Kind: store.ErrNotFound, Message: fmt.Sprintf("you are not a member of environment %q", envID)}
	}
	id := string(ut.Value)
	for attempt := 0; attempt < 5; attempt++ {
		t, err := s.st.GetTicket(ctx, store.TicketDeviceCode, id)
		if errors.Is(err, store.ErrNotFound) {
			return noCode
		} else if err != nil {
			return err
		}
		var v deviceValue
		if err := json.Unmarshal(t.Value, &v); err != nil {
			return fmt.Errorf("device code: damaged value: %w", err)
		}
		if !s.now().Before(v.ExpiresAt) {
			return noCode
		}
		if v.State != devicePending {
			return &CallerError{Kind: store.ErrConflict, Message: fmt.Sprintf("the sign-in with code %s was already answered", FormatUserCode(code))}
		}
		v.State, v.UserID, v.OrgID, v.EnvID = deviceApproved, u.ID, u.OrgID, envID
		if deny {
			v.State = deviceDenied
		}
		value, _ := json.Marshal(v)
		switch err := s.st.SwapTicket(ctx, store.TicketDeviceCode, id, t.Value, value); {
		case errors.Is(err, store.ErrStale):
			continue // a poll updated it meanwhile
		case errors.Is(err, store.ErrNotFound):
			return noCode
		case err != nil:
			return err
		}
		if err := s.st.DeleteTicket(ctx, store.TicketDeviceUser, code); err != nil {
			s.log.Error("approve device: delete user code", "err", err)
		}
		s.log.Info("device sign-in answered", "tenant", u.OrgID+"/"+envID, "user", u.ID, "approved", !deny)
		return nil
	}
	return fmt.Errorf("device code %s: %w", FormatUserCode(code), store.ErrUnavailable)
}
