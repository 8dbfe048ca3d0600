package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// deviceClientID is the public client of the device authorization grant.
const deviceClientID = "sortie-cli"

// deviceGrant is the grant type of the device flow's token requests (RFC 8628).
const deviceGrant = "urn:ietf:params:oauth:grant-type:device_code"

// deviceAuthorization is the reply of POST /oauth/device_authorization.
type deviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// postForm posts a form to the server and returns the status and body of the reply.
func (a *app) postForm(ctx context.Context, path string, form url.Values) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.g.addr+path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := a.env.HTTPClient.Do(req)
	if err != nil {
		return nil, nil, transportError(a.g.addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, transportError(a.g.addr, err)
	}
	return resp, body, nil
}

// sleep waits d or until ctx ends.
func (a *app) sleep(ctx context.Context, d time.Duration) error {
	if a.env.Sleep != nil {
		return a.env.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// deviceLogin signs a person in with the device authorization grant: it shows the code and
// where to enter it, polls the token endpoint no faster than the server asks, and returns
// the user token (a login without a secret: when it expires, the person logs in again).
func (a *app) deviceLogin(ctx context.Context) (loginEntry, error) {
	resp, body, err := a.postForm(ctx, "/oauth/device_authorization", url.Values{"client_id": {deviceClientID}})
	if err != nil {
		return loginEntry{}, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		return loginEntry{}, fmt.Errorf("the server at %s offers no device sign-in: log in with --client-id and --client-secret", a.g.addr)
	case resp.StatusCode != http.StatusOK:
		return loginEntry{}, fmt.Errorf("start the sign-in: %w", apiErrorOf(resp, body))
	}
	var da deviceAuthorization
	if err := json.Unmarshal(body, &da); err != nil || da.DeviceCode == "" || da.UserCode == "" {
		return loginEntry{}, fmt.Errorf("the server at %s did not answer with a device code: is --addr a Sortie server?", a.g.addr)
	}
	// The instructions go to stderr, so that -o json keeps stdout to the result.
	fmt.Fprintf(a.env.Stderr, "Open %s and enter the code %s\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(a.env.Stderr, "or open %s\n", da.VerificationURIComplete)
	}
	fmt.Fprintf(a.env.Stderr, "Waiting for the approval (the code expires in %d minutes)...\n", max(da.ExpiresIn/60, 1))
	interval := time.Duration(max(da.Interval, 1)) * time.Second
	deadline := a.env.Now().Add(time.Duration(max(da.ExpiresIn, 1)) * time.Second)
	form := url.Values{"grant_type": {deviceGrant}, "client_id": {deviceClientID}, "device_code": {da.DeviceCode}}
	for {
		if err := a.sleep(ctx, interval); err != nil {
			return loginEntry{}, err
		}
		resp, body, err := a.postForm(ctx, tokenPath, form)
		if err != nil {
			return loginEntry{}, err
		}
		if resp.StatusCode == http.StatusOK {
			var tr tokenReply
			if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
				return loginEntry{}, fmt.Errorf("the token endpoint %s%s did not answer with a token: is --addr a Sortie server?", a.g.addr, tokenPath)
			}
			return loginEntry{AccessToken: tr.AccessToken, Scope: tr.Scope,
				ExpiresAt: a.env.Now().Add(time.Duration(tr.ExpiresIn) * time.Second)}, nil
		}
		var oe struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(body, &oe)
		switch {
		case oe.Error == "authorization_pending":
		case oe.Error == "slow_down" && resp.StatusCode == http.StatusBadRequest:
			interval += 5 * time.Second
		case oe.Error == "access_denied":
			return loginEntry{}, exitError{code: ExitFailure, msg: "the sign-in was denied; nothing was saved"}
		case oe.Error == "expired_token":
			return loginEntry{}, exitError{code: ExitFailure, msg: "the code expired before it was approved: run 'sortie login' again"}
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && time.Duration(s)*time.Second > interval {
				interval = time.Duration(s) * time.Second
			}
		default:
			return loginEntry{}, fmt.Errorf("get a token: %w", apiErrorOf(resp, body))
		}
		if !a.env.Now().Before(deadline) {
			return loginEntry{}, exitError{code: ExitFailure, msg: "the code expired before it was approved: run 'sortie login' again"}
		}
	}
}

// apiErrorOf reads an error reply whose body was read already.
func apiErrorOf(resp *http.Response, body []byte) error {
	r := *resp
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	return readAPIError(&r)
}

// tokenPath is the token endpoint.
const tokenPath = "/oauth/token"
