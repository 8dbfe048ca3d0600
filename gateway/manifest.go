package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"text/template"

	"github.com/danielgtaylor/huma/v2"

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

// yamlQuote renders a string as a YAML scalar; JSON strings are valid YAML.
func yamlQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

var agentManifest = template.Must(template.New("agent").Funcs(template.FuncMap{"q": yamlQuote}).Parse(`# Sortie agent {{.ID}}: apply with kubectl apply -f -
# The Secret holds a newly created machine credential (role Remote Network Agent).
apiVersion: v1
kind: Namespace
metadata:
  name: {{q .NS}}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: sortie-agent
  namespace: {{q .NS}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{q .Name}}
rules:
  # The agent applies whatever the deployments contain, so it needs every permission.
  - apiGroups: ["*"]
    resources: ["*"]
    verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{q .Name}}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{q .Name}}
subjects:
  - kind: ServiceAccount
    name: sortie-agent
    namespace: {{q .NS}}
---
apiVersion: v1
kind: Secret
metadata:
  name: sortie-agent-credentials
  namespace: {{q .NS}}
type: Opaque
stringData:
  clientId: {{q .ClientID}}
  clientSecret: {{q .Secret}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: sortie-agent
  namespace: {{q .NS}}
  labels:
    app.kubernetes.io/name: sortie-agent
spec:
  replicas: 2
  selector:
    matchLabels:
      app.kubernetes.io/name: sortie-agent
  template:
    metadata:
      labels:
        app.kubernetes.io/name: sortie-agent
    spec:
      serviceAccountName: sortie-agent
      containers:
        - name: agent
          image: {{q .Image}}
          args: ["--health-addr=0.0.0.0:8081"]
          env:
            - name: SORTIE_AGENT_HUB_URL
              value: {{q .HubURL}}
            - name: SORTIE_AGENT_AGENT_IDENTIFIER
              value: {{q .ID}}
            - name: SORTIE_AGENT_CLIENT_ID
              valueFrom:
                secretKeyRef: {name: sortie-agent-credentials, key: clientId}
            - name: SORTIE_AGENT_CLIENT_SECRET
              valueFrom:
                secretKeyRef: {name: sortie-agent-credentials, key: clientSecret}
            - name: NODE_IP
              valueFrom:
                fieldRef: {fieldPath: status.hostIP}
          ports:
            - {name: health, containerPort: 8081}
          # /healthz is 200 only while the agent holds a stream to Sortie: it gates readiness,
          # never liveness, so a Sortie outage does not restart every agent.
          readinessProbe:
            httpGet: {path: /healthz, port: health}
          resources:
            requests: {cpu: 50m, memory: 64Mi}
            limits: {memory: 256Mi}
`))

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
		err = agentManifest.Execute(&buf, map[string]string{
			"ID": in.AgentIdentifier, "NS": in.Namespace, "Name": "sortie-agent-" + in.Namespace,
			"ClientID": cred.ClientID, "Secret": secret, "Image": in.Image, "HubURL": g.id.Issuer(),
		})
		if err != nil {
			return nil, restError(ctx, g.log, err)
		}
		return &agentManifestOutput{ContentType: "application/yaml", Body: buf.Bytes()}, nil
	})
}
