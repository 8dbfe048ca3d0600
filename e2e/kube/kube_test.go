package kube_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/e2e/kube"
)

// client is a bare net/http client of kube-apiserver, configured from a kubeconfig only.
type client struct {
	t      testing.TB
	server string
	token  string
	http   *http.Client
}

// newClient reads the kubeconfig the cluster wrote, as any kubeconfig reader would: its
// current context's server, CA data and token.
func newClient(t testing.TB, path string) *client {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read kubeconfig: %v", err)
	}
	var cfg struct {
		CurrentContext string `json:"current-context"`
		Contexts       []struct {
			Name    string
			Context struct{ Cluster, User string }
		}
		Clusters []struct {
			Name    string
			Cluster struct {
				Server string
				CAData string `json:"certificate-authority-data"`
			}
		}
		Users []struct {
			Name string
			User struct{ Token string }
		}
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("parse kubeconfig: %v", err)
	}
	c := &client{t: t}
	for _, ctx := range cfg.Contexts {
		if ctx.Name != cfg.CurrentContext {
			continue
		}
		for _, cl := range cfg.Clusters {
			if cl.Name == ctx.Context.Cluster {
				c.server = cl.Cluster.Server
				ca, err := base64.StdEncoding.DecodeString(cl.Cluster.CAData)
				if err != nil {
					t.Fatalf("kubeconfig CA data: %v", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(ca) {
					t.Fatalf("kubeconfig CA data holds no certificate")
				}
				c.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
					TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
				}}
			}
		}
		for _, u := range cfg.Users {
			if u.Name == ctx.Context.User {
				c.token = u.User.Token
			}
		}
	}
	if c.server == "" || c.token == "" || c.http == nil {
		t.Fatalf("kubeconfig %s: no server, token or CA for context %q", path, cfg.CurrentContext)
	}
	return c
}

// do sends a request with body (JSON-encoded unless it is []byte) and returns the status and
// response body.
func (c *client) do(method, path, contentType string, body any) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatalf("encode %s %s: %v", method, path, err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.server+path, r)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// must is do that fails the test unless the status is want, and decodes the answer into out.
func (c *client) must(method, path, contentType string, body any, want int, out any) {
	c.t.Helper()
	code, b := c.do(method, path, contentType, body)
	if code != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
}

// eventually polls cond every 200ms until it returns nil, failing t with its last error
// after timeout.
func eventually(t testing.TB, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type condition struct{ Type, Status, Reason string }

func hasCondition(conds []condition, typ, status string) bool {
	return slices.ContainsFunc(conds, func(c condition) bool { return c.Type == typ && c.Status == status })
}

func TestStartServesKubernetesAPI(t *testing.T) {
	t.Parallel()
	cluster := kube.Start(t)
	c := newClient(t, cluster.Kubeconfig())
	if c.server != cluster.Server() || c.token != cluster.Token() {
		t.Errorf("kubeconfig server/token = %s/%s, want the cluster's %s/%s", c.server, c.token, cluster.Server(), cluster.Token())
	}

	var list struct {
		Items []struct{ Metadata struct{ Name string } }
	}
	c.must(http.MethodGet, "/api/v1/namespaces", "", nil, http.StatusOK, &list)
	var names []string
	for _, ns := range list.Items {
		names = append(names, ns.Metadata.Name)
	}
	for _, want := range []string{"default", "kube-system"} {
		if !slices.Contains(names, want) {
			t.Errorf("namespaces = %v, missing %q", names, want)
		}
	}

	cm := map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata":   map[string]any{"name": "e2e-check"},
		"data":       map[string]string{"greeting": "hello"},
	}
	c.must(http.MethodPost, "/api/v1/namespaces/default/configmaps", "application/json", cm, http.StatusCreated, nil)
	var got struct {
		Metadata struct{ UID string }
		Data     map[string]string
	}
	c.must(http.MethodGet, "/api/v1/namespaces/default/configmaps/e2e-check", "", nil, http.StatusOK, &got)
	if got.Data["greeting"] != "hello" || got.Metadata.UID == "" {
		t.Errorf("ConfigMap read back = %+v, want data greeting=hello and a uid", got)
	}

	// Authentication is real: a wrong token is refused, and the CA is the only one trusted.
	bad := *c
	bad.token = "not-" + c.token
	if code, b := bad.do(http.MethodGet, "/api/v1/namespaces", "", nil); code != http.StatusUnauthorized {
		t.Errorf("wrong token: status %d, want 401: %s", code, b)
	}
	_, err := http.Get(cluster.Server() + "/readyz")
	if ce := new(tls.CertificateVerificationError); !errors.As(err, &ce) {
		t.Errorf("GET with the system roots: err = %v, want a certificate verification error", err)
	}
	if !bytes.Equal(cluster.CAData(), mustCAFromKubeconfig(t, cluster.Kubeconfig())) {
		t.Errorf("CAData differs from the kubeconfig's certificate-authority-data")
	}
}

func mustCAFromKubeconfig(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Clusters []struct {
			Cluster struct {
				CAData string `json:"certificate-authority-data"`
			}
		}
	}
	if err := json.Unmarshal(b, &cfg); err != nil || len(cfg.Clusters) != 1 {
		t.Fatalf("parse kubeconfig: %v (%d clusters)", err, len(cfg.Clusters))
	}
	ca, err := base64.StdEncoding.DecodeString(cfg.Clusters[0].Cluster.CAData)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func podTemplate(app, version string) map[string]any {
	return map[string]any{
		"metadata": map[string]any{"labels": map[string]string{"app": app}},
		"spec": map[string]any{
			"containers": []map[string]any{{
				"name":  "app",
				"image": "registry.invalid/" + app + ":" + version,
				"env":   []map[string]string{{"name": "VERSION", "value": version}},
			}},
		},
	}
}

func TestControllersRunDeploymentsAndRollouts(t *testing.T) {
	t.Parallel()
	cluster := kube.Start(t, kube.WithArgoRollouts())
	c := newClient(t, cluster.Kubeconfig())
	const ns = "e2e"
	c.must(http.MethodPost, "/api/v1/namespaces", "application/json", map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns},
	}, http.StatusCreated, nil)

	t.Run("deployment pods become ready on the KWOK node", func(t *testing.T) {
		c := newClient(t, cluster.Kubeconfig())
		c.must(http.MethodPost, "/apis/apps/v1/namespaces/"+ns+"/deployments", "application/json", map[string]any{
			"apiVersion": "apps/v1",
			"kind":       "Deployment",
			"metadata":   map[string]any{"name": "web"},
			"spec": map[string]any{
				"replicas": 2,
				"selector": map[string]any{"matchLabels": map[string]string{"app": "web"}},
				"template": podTemplate("web", "v1"),
			},
		}, http.StatusCreated, nil)

		eventually(t, "deployment web ready", 2*time.Minute, func() error {
			var d struct {
				Status struct{ ReadyReplicas, AvailableReplicas int }
			}
			c.must(http.MethodGet, "/apis/apps/v1/namespaces/"+ns+"/deployments/web", "", nil, http.StatusOK, &d)
			if d.Status.ReadyReplicas != 2 || d.Status.AvailableReplicas != 2 {
				return fmt.Errorf("status %+v", d.Status)
			}
			return nil
		})
		var pods struct {
			Items []struct {
				Metadata struct{ Name string }
				Spec     struct{ NodeName string }
				Status   struct {
					Phase      string
					PodIP      string
					Conditions []condition
				}
			}
		}
		c.must(http.MethodGet, "/api/v1/namespaces/"+ns+"/pods?labelSelector=app%3Dweb", "", nil, http.StatusOK, &pods)
		if len(pods.Items) != 2 {
			t.Fatalf("%d pods, want 2", len(pods.Items))
		}
		for _, p := range pods.Items {
			if p.Spec.NodeName != kube.KWOKNode || p.Status.Phase != "Running" || p.Status.PodIP == "" ||
				!hasCondition(p.Status.Conditions, "Ready", "True") {
				t.Errorf("pod %s: node %q phase %q ip %q conditions %+v, want Running and Ready on %s",
					p.Metadata.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIP, p.Status.Conditions, kube.KWOKNode)
			}
		}
	})

	t.Run("canary rollout reaches its pause step", func(t *testing.T) {
		c := newClient(t, cluster.Kubeconfig())
		const rollouts = "/apis/argoproj.io/v1alpha1/namespaces/" + ns + "/rollouts"
		c.must(http.MethodPost, rollouts, "application/json", map[string]any{
			"apiVersion": "argoproj.io/v1alpha1",
			"kind":       "Rollout",
			"metadata":   map[string]any{"name": "api"},
			"spec": map[string]any{
				"replicas": 2,
				"selector": map[string]any{"matchLabels": map[string]string{"app": "api"}},
				"template": podTemplate("api", "v1"),
				"strategy": map[string]any{"canary": map[string]any{"steps": []map[string]any{
					{"setWeight": 50},
					{"pause": map[string]any{}},
				}}},
			},
		}, http.StatusCreated, nil)

		type rolloutStatus struct {
			Phase            string
			Message          string
			CurrentStepIndex *int
			StableRS         string
			CurrentPodHash   string
			UpdatedReplicas  int
			ReadyReplicas    int
			PauseConditions  []struct{ Reason string }
		}
		get := func() rolloutStatus {
			var r struct{ Status rolloutStatus }
			c.must(http.MethodGet, rollouts+"/api", "", nil, http.StatusOK, &r)
			return r.Status
		}
		// The first version has nothing to shift traffic from: it becomes stable at once.
		eventually(t, "rollout api healthy", 2*time.Minute, func() error {
			s := get()
			if s.Phase != "Healthy" || s.ReadyReplicas != 2 || s.StableRS == "" {
				return fmt.Errorf("status %+v", s)
			}
			return nil
		})
		stable := get().StableRS

		c.must(http.MethodPatch, rollouts+"/api", "application/merge-patch+json", map[string]any{
			"spec": map[string]any{"template": podTemplate("api", "v2")},
		}, http.StatusOK, nil)
		eventually(t, "rollout api paused at its canary step", 2*time.Minute, func() error {
			s := get()
			if s.Phase != "Paused" || s.CurrentStepIndex == nil || *s.CurrentStepIndex != 1 ||
				len(s.PauseConditions) != 1 || s.PauseConditions[0].Reason != "CanaryPauseStep" ||
				s.UpdatedReplicas != 1 || s.CurrentPodHash == stable || s.StableRS != stable {
				return fmt.Errorf("status %+v", s)
			}
			return nil
		})
	})
}
