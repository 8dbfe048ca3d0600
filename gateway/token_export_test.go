package gateway

import (
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
)

// HumaTokenHandler serves the token endpoint through its Huma operation, with the gateway's
// Huma middlewares and settings, as the route was served before serveToken took it over:
// tests hold serveToken's replies to these.
func (g *Gateway) HumaTokenHandler() http.Handler {
	mux := http.NewServeMux()
	api := humago.New(mux, apiConfig())
	api.UseMiddleware(g.restAuth, g.refuseDuplicateKeys)
	op := tokenOperation()
	op.Metadata = map[string]any{scopeKey: Public}
	if hasJSONBody[tokenInput]() {
		op.Metadata[jsonBodyKey] = true
	}
	op.MaxBodyBytes = maxBodyBytes
	op.BodyReadTimeout = g.bodyReadTimeout()
	huma.Register(api, op, g.humaToken)
	return mux
}
