package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	sortieagent "github.com/sortie-dev/sortie/charts/sortie-agent"
	"github.com/sortie-dev/sortie/hub"
	"github.com/sortie-dev/sortie/identity"
)

// defaultAgentImage is the image the manifest runs unless ?image= names another; build it
// from cmd/sortie-agent and push it where the cluster can pull it.
const defaultAgentImage = "sortie-agent:latest"

var (
	namespacePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	imagePattern     = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._/:@-]{0,254}$`)
)

type agentManifestInput struct {
	AgentIdentifier string `query:"agentIdentifier" required:"true" doc:"The account name deployment targets will use."`
	Namespace       string `query:"namespace" doc:"Namespace to install the agent into." default:"sortie"`
	Image           string `query:"image" doc:"The sortie-agent container image." default:"sortie-agent:latest"`
}

// Resolve validates every parameter at once, each problem with its field.
func (in *agentManifestInput) Resolve(huma.Context) []error {
	var errs []error
	// The rule of Hello.agent_identifier in hub.proto, worded as the hub and the agent word it.
	if err := hub.CheckIdentifier(in.AgentIdentifier); err != nil {
		errs = append(errs, &huma.ErrorDetail{Location: "query.agentIdentifier", Message: err.Error(), Value: in.AgentIdentifier})
	}
	if !namespacePattern.MatchString(in.Namespace) {
		errs = append(errs, &huma.ErrorDetail{Location: "query.namespace", Message: "must be a Kubernetes namespace name (lowercase letters, digits and '-', at most 63)", Value: in.Namespace})
	}
	if !imagePattern.MatchString(in.Image) {
		errs = append(errs, &huma.ErrorDetail{Location: "query.image", Message: "must be a container image reference", Value: in.Image})
	}
	return errs
}

type agentManifestOutput struct {
	ContentType string `header:"Content-Type"`
	Body        []byte
}

// agentRelease is the base name of the manifest's objects (the Helm chart names them after
// its release: helm install sortie-agent gives the same names).
const agentRelease = "sortie-agent"

// renderAgentManifest renders the sortie-agent chart's template, the one `helm install`
// uses, with the namespace created too (kubectl apply has no --create-namespace).
func renderAgentManifest(w io.Writer, id, namespace, image, hubURL, clientID, secret string) error {
	repo, tag, digest := splitImage(image)
	return sortieagent.Render(w, sortieagent.Release{Name: agentRelease, Namespace: namespace}, map[string]any{
		"agentIdentifier": id,
		"hubUrl":          hubURL,
		"credentials":     map[string]any{"clientId": clientID, "clientSecret": secret},
		"image":           map[string]any{"repository": repo, "tag": tag, "digest": digest},
		"createNamespace": true,
	})
}

// splitImage splits an image reference into the chart's image.repository, image.tag and
// image.digest. A reference without tag or digest keeps "latest", as a container runtime
// would pull it.
func splitImage(ref string) (repo, tag, digest string) {
	if r, d, ok := strings.Cut(ref, "@"); ok {
		return r, "", d
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i], ref[i+1:], ""
	}
	return ref, "latest", ""
}

func (g *Gateway) registerAgentManifest() {
	register(g, identity.ScopeManageCredentials, huma.Operation{
		OperationID: "get-agent-manifest", Method: http.MethodGet, Path: "/kubernetes/agent/manifest",
		Summary: "Get a ready-to-apply manifest that installs an agent", Tags: []string{"Infrastructure"},
		Description: "Creates a machine credential named agent-<agentIdentifier> with the Remote Network " +
			"Agent role and returns YAML (Namespace, ServiceAccount, ClusterRole and binding, a Secret " +
			"holding the credential, a Deployment with 2 replicas). The secret is in this reply only. " +
			"Asking again for the same identifier is a 409 and creates nothing: delete the credential " +
			"(DELETE /credentials/{id}) to issue a new manifest.",
		Errors: []int{http.StatusConflict},
		Responses: map[string]*huma.Response{"200": {
			Description: "Kubernetes manifests",
			Content:     map[string]*huma.MediaType{"application/yaml": {Schema: &huma.Schema{Type: "string"}}},
		}},
	}, func(ctx context.Context, in *agentManifestInput) (*agentManifestOutput, error) {
		cred, secret, err := g.id.CreateCredential(ctx, principalFrom(ctx), "agent-"+in.AgentIdentifier,
			[]string{identity.RoleRemoteNetworkAgent})
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		var buf bytes.Buffer
		if err := renderAgentManifest(&buf, in.AgentIdentifier, in.Namespace, in.Image, g.id.Issuer(), cred.ClientID, secret); err != nil {
			return nil, restError(ctx, g.log, err)
		}
		return &agentManifestOutput{ContentType: "application/yaml", Body: buf.Bytes()}, nil
	})
}
