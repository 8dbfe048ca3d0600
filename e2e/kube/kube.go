// Package kube starts a private, real Kubernetes control plane for end-to-end tests: etcd
// and kube-apiserver on free loopback ports, and on request kube-controller-manager,
// kube-scheduler, a KWOK fake node (its pods become Running and Ready without containers)
// and the Argo Rollouts controller with its CRDs.
//
// The binaries are built from source from the modules pinned in e2e/tools by e2e/build.sh,
// and cached. Start finds them through SORTIE_E2E_BIN (a bin directory made by build.sh) or
// runs build.sh itself; the first build takes about ten minutes on two cores, longer than
// go test's default -timeout, so test commands run build.sh first and export its last line:
//
//	export SORTIE_E2E_BIN="$(e2e/build.sh | tail -n1)"
//	go test ./e2e/...
//
// The package imports only the standard library, so the module that uses it does not take
// on Kubernetes dependencies; tests talk to the cluster with whatever client they test.
package kube

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvBin names the environment variable holding the directory of prebuilt binaries (the
// last line build.sh prints). Unset, Start runs e2e/build.sh.
const EnvBin = "SORTIE_E2E_BIN"

// Timeouts for each start-up phase; generous because go test runs packages in parallel on
// small machines.
const (
	readyTimeout = 2 * time.Minute
	tailLines    = 60
)

// The cluster's fixed network settings.
const (
	serviceCIDR = "10.96.0.0/16"
	// KWOKNode is the name of the fake node WithControllers registers.
	KWOKNode = "kwok-node-0"
)

// Option changes what Start runs.
type Option func(*options)

type options struct {
	controllers bool
	rollouts    bool
}

// WithControllers also runs kube-controller-manager, kube-scheduler and KWOK, and registers
// one fake node (KWOKNode), so Deployments get pods that are scheduled and become Ready.
func WithControllers() Option {
	return func(o *options) { o.controllers = true }
}

// WithArgoRollouts also applies the Argo Rollouts CRDs and runs its controller. It implies
// WithControllers, since Rollouts manage ReplicaSets.
func WithArgoRollouts() Option {
	return func(o *options) { o.controllers, o.rollouts = true, true }
}

// Cluster is a running control plane. Its methods are safe for concurrent use.
type Cluster struct {
	dir        string
	bin        string
	etcdURL    string
	server     string
	token      string
	tokens     map[string]string // bearer token by user name
	caData     []byte
	kubeconfig string
	http       *http.Client

	stopOnce sync.Once
	// procs is written only while the cluster starts, then only read.
	procs []*proc
}

// Start starts a cluster for t and stops it in t.Cleanup; on failure it fails t with the
// logs of what did not start. When t fails, the tails of all logs are printed.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	c, err := start(t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("start kube cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube cluster logs (in %s):\n%s", c.dir, c.logTails(tailLines))
		}
		c.Stop()
	})
	return c
}

// Main starts one cluster for all tests of a package, runs them and stops it, and returns
// the exit code for os.Exit; start-up costs seconds, so tests that can share a cluster (each
// in its own namespace) use it from TestMain:
//
//	var cluster *kube.Cluster
//
//	func TestMain(m *testing.M) { os.Exit(kube.Main(m, &cluster, kube.WithControllers())) }
//
// When a test fails the tails of the cluster's logs go to stderr.
func Main(m *testing.M, shared **Cluster, opts ...Option) int {
	dir, err := os.MkdirTemp("", "sortie-e2e-kube-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	c, err := start(dir, opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube: start cluster: %v\n", err)
		return 1
	}
	defer c.Stop()
	*shared = c
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "kube cluster logs:\n%s\n", c.logTails(tailLines))
	}
	return code
}

// Kubeconfig returns the path of a kubeconfig for the admin user (a bearer token in group
// system:masters) that trusts the cluster's CA.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// Server returns the https URL of kube-apiserver.
func (c *Cluster) Server() string { return c.server }

// Token returns the admin user's bearer token.
func (c *Cluster) Token() string { return c.token }

// CAData returns the PEM certificate clients must trust to reach Server.
func (c *Cluster) CAData() []byte { return bytes.Clone(c.caData) }

// Stop stops every process of the cluster, newest first, and waits for them. Later calls do
// nothing.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		for i := len(c.procs) - 1; i >= 0; i-- {
			c.procs[i].stop()
		}
	})
}

// logTails returns the last n lines of every process log.
func (c *Cluster) logTails(n int) string {
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintf(&b, "--- %s (%s) ---\n%s\n", p.name, p.log, p.tail(n))
	}
	return b.String()
}

// start starts a cluster with its files in dir. On error nothing is left running.
func start(dir string, opts ...Option) (_ *Cluster, err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bin: bin}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := c.startEtcd(); err != nil {
		return nil, err
	}
	if err := c.startAPIServer(o); err != nil {
		return nil, err
	}
	if o.controllers {
		if err := c.startControllers(); err != nil {
			return nil, err
		}
	}
	if o.rollouts {
		if err := c.startRollouts(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// binDir returns the directory of the binaries: EnvBin, or what build.sh prints last.
func binDir() (string, error) {
	if d := os.Getenv(EnvBin); d != "" {
		return d, nil
	}
	_, file, _, ok := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "build.sh")
	if _, err := os.Stat(script); !ok || err != nil {
		return "", fmt.Errorf("e2e/build.sh not found next to the kube package source; run it and set %s to the last line it prints", EnvBin)
	}
	cmd := exec.Command("bash", script)
	cmd.Stderr = os.Stderr // build progress
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("run %s: %w", script, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), nil
}

// assetDir returns a folder build.sh copies next to bin (CRDs, KWOK stages).
func (c *Cluster) assetDir(name string) string {
	return filepath.Join(filepath.Dir(c.bin), name)
}

// startRetrying runs attempt up to three times while it fails because a port it picked was
// taken in the meantime by someone else.
func startRetrying(attempt func() (*proc, error)) error {
	for i := 0; ; i++ {
		p, err := attempt()
		if err == nil {
			return nil
		}
		if p == nil {
			return err
		}
		p.stop()
		if !p.portInUse() || i == 2 {
			return err
		}
	}
}

func (c *Cluster) startEtcd() error {
	return startRetrying(func() (*proc, error) {
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		p, err := startProc(c.bin, c.dir, "etcd", "etcd", []string{
			"--name=sortie-e2e",
			"--data-dir=" + filepath.Join(c.dir, "etcd-data"),
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=sortie-e2e=" + peer,
			"--unsafe-no-fsync=true", // a throwaway store: durability buys nothing
			"--log-level=warn",
		}, nil)
		if err != nil {
			return nil, err
		}
		hc := &http.Client{Timeout: 5 * time.Second}
		err = waitFor("etcd", readyTimeout, []*proc{p}, func() (bool, error) {
			resp, err := hc.Get(client + "/health")
			if err != nil {
				return false, err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"health":"true"`)), nil
		})
		if err != nil {
			return p, err
		}
		c.procs = append(c.procs, p)
		c.etcdURL = client
		return p, nil
	})
}

func (c *Cluster) startAPIServer(o options) error {
	pki := filepath.Join(c.dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	_, svcNet, _ := net.ParseCIDR(serviceCIDR)
	svcIP := append(net.IP(nil), svcNet.IP.To4()...)
	svcIP[3]++ // the first service IP is the kubernetes Service's
	caData, err := servingCert(filepath.Join(pki, "apiserver.crt"), filepath.Join(pki, "apiserver.key"), svcIP)
	if err != nil {
		return err
	}
	if err := serviceAccountKeys(filepath.Join(pki, "sa.key"), filepath.Join(pki, "sa.pub")); err != nil {
		return err
	}
	c.caData = caData
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caData)
	c.http = &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}

	// One user per component, all in system:masters: these are test clusters, and the names
	// tell in audit and logs who did what.
	var tokens strings.Builder
	c.tokens = map[string]string{}
	for _, user := range []string{"admin", "kube-controller-manager", "kube-scheduler", "kwok", "argo-rollouts"} {
		tok, err := newToken()
		if err != nil {
			return err
		}
		c.tokens[user] = tok
		fmt.Fprintf(&tokens, "%s,%s,%s,\"system:masters\"\n", tok, user, user)
	}
	c.token = c.tokens["admin"]
	tokenFile := filepath.Join(pki, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(tokens.String()), 0o600); err != nil {
		return err
	}

	var extra []string
	if !o.controllers {
		// Without kube-controller-manager no namespace gets its default ServiceAccount, and
		// the ServiceAccount admission plugin would reject every Pod.
		extra = append(extra, "--disable-admission-plugins=ServiceAccount")
	}
	return startRetrying(func() (*proc, error) {
		ports, err := freePorts(1)
		if err != nil {
			return nil, err
		}
		c.server = fmt.Sprintf("https://127.0.0.1:%d", ports[0])
		p, err := startProc(c.bin, c.dir, "kube-apiserver", "kube-apiserver", append([]string{
			"--etcd-servers=" + c.etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", ports[0]),
			"--tls-cert-file=" + filepath.Join(pki, "apiserver.crt"),
			"--tls-private-key-file=" + filepath.Join(pki, "apiserver.key"),
			"--cert-dir=" + filepath.Join(c.dir, "apiserver-certs"),
			"--token-auth-file=" + tokenFile,
			"--authorization-mode=Node,RBAC",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
			"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
			"--service-cluster-ip-range=" + serviceCIDR,
			"--allow-privileged=true",
			// 127.0.0.1 is not a valid endpoint address: don't publish one for the
			// kubernetes Service (nothing runs in-cluster here).
			"--endpoint-reconciler-type=none",
			"--profiling=false",
		}, extra...), nil)
		if err != nil {
			return nil, err
		}
		err = waitFor("kube-apiserver /readyz", readyTimeout, []*proc{p}, func() (bool, error) {
			code, body, err := c.do(http.MethodGet, "/readyz", "", nil)
			if err != nil {
				return false, err
			}
			if code != http.StatusOK {
				return false, fmt.Errorf("readyz %d: %s", code, body)
			}
			return true, nil
		})
		if err != nil {
			return p, err
		}
		c.procs = append(c.procs, p)
		c.kubeconfig, err = c.writeKubeconfig("admin", "admin")
		return p, err
	})
}

// writeKubeconfig writes a kubeconfig for user (a token) to dir/<name>.kubeconfig and
// returns its path. It is JSON, which every kubeconfig reader accepts as YAML.
func (c *Cluster) writeKubeconfig(name, user string) (string, error) {
	type named struct {
		Name    string         `json:"name"`
		Cluster map[string]any `json:"cluster,omitempty"`
		User    map[string]any `json:"user,omitempty"`
		Context map[string]any `json:"context,omitempty"`
	}
	cfg := map[string]any{
		"apiVersion": "v1",
		"kind":       "Config",
		"clusters": []named{{Name: "sortie-e2e", Cluster: map[string]any{
			"server":                     c.server,
			"certificate-authority-data": base64.StdEncoding.EncodeToString(c.caData),
		}}},
		"users": []named{{Name: user, User: map[string]any{"token": c.tokens[user]}}},
		"contexts": []named{{Name: "sortie-e2e", Context: map[string]any{
			"cluster": "sortie-e2e", "user": user, "namespace": "default",
		}}},
		"current-context": "sortie-e2e",
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.dir, name+".kubeconfig")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	return path, nil
}

// do sends one request to kube-apiserver as admin and returns the status and body.
func (c *Cluster) do(method, path, contentType string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, c.server+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// errStatus is returned by mustDo for an unexpected HTTP status.
var errStatus = errors.New("unexpected status")

// mustDo is do that also fails on a status other than want.
func (c *Cluster) mustDo(method, path, contentType string, body []byte, want ...int) ([]byte, error) {
	code, b, err := c.do(method, path, contentType, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for _, w := range want {
		if code == w {
			return b, nil
		}
	}
	return b, fmt.Errorf("%s %s: %w %d: %s", method, path, errStatus, code, b)
}
