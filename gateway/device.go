package gateway

import (
	"context"
	"net/http"
	"strconv"

	"github.com/danielgtaylor/huma/v2"

	"github.com/sortie-dev/sortie/identity"
)

// devicePath is the device authorization endpoint (RFC 8628 section 3.1).
const devicePath = "/oauth/device_authorization"

type deviceInput struct {
	ContentType string `header:"Content-Type" doc:"application/x-www-form-urlencoded"`
	RawBody     []byte `contentType:"application/x-www-form-urlencoded" doc:"client_id=sortie-cli and an optional scope"`
}

// registerDeviceAuthorization serves the device authorization endpoint: the start of
// `sortie login` without a client secret. The device code is then polled at the token
// endpoint with grant_type=urn:ietf:params:oauth:grant-type:device_code.
func (g *Gateway) registerDeviceAuthorization() {
	register(g, Public, huma.Operation{
		OperationID: "oauth-device-authorization", Method: http.MethodPost, Path: devicePath,
		Summary: "Start a device sign-in (OAuth 2.0 device authorization grant)", Tags: []string{"Identity"},
		Description: "Replies 200 `{device_code, user_code, verification_uri, verification_uri_complete, " +
			"expires_in, interval}`. A person opens verification_uri, signs in and approves user_code " +
			"(IdentityService.ApproveDevice); the client polls POST /oauth/token with " +
			"grant_type=" + identity.GrantDeviceCode + ", client_id=" + identity.DeviceClientID + " and device_code, " +
			"no faster than interval seconds, and gets authorization_pending, slow_down, access_denied, " +
			"expired_token or the token (once). Failures use RFC 6749 bodies `{error, error_description}`.",
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized},
	}, func(ctx context.Context, in *deviceInput) (*tokenOutput, error) {
		out := &tokenOutput{CacheControl: "no-store", Pragma: "no-cache"}
		req, oerr := identity.ParseDeviceAuthorizationRequest(in.ContentType, in.RawBody)
		if oerr == nil {
			var resp identity.DeviceAuthorization
			if resp, oerr = g.id.StartDevice(ctx, req); oerr == nil {
				out.Status, out.Body = http.StatusOK, resp
				return out, nil
			}
		}
		out.Status, out.Body = oerr.Status, oerr
		if oerr.RetryAfterSeconds > 0 {
			out.RetryAfter = strconv.Itoa(oerr.RetryAfterSeconds)
		}
		return out, nil
	})
}
