package kube

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// componentHealthy returns a readiness check of a component's own HTTPS endpoint. The
// component serves it with a certificate it made itself, so only the answer is checked.
func componentHealthy(url string) func() (bool, error) {
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // a loopback health check of our own child
		}},
	}
	return func() (bool, error) {
		resp, err := client.Get(url)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return true, nil
	}
}

// startComponent starts a Kubernetes component that serves HTTPS health on a free port
// (secure-port) and waits for healthPath.
func (c *Cluster) startComponent(name, healthPath string, args []string) error {
	kubeconfig, err := c.writeKubeconfig(name, name)
	if err != nil {
		return err
	}
	return startRetrying(func() (*proc, error) {
		ports, err := freePorts(1)
		if err != nil {
			return nil, err
		}
		all := append([]string{
			"--kubeconfig=" + kubeconfig,
			"--authentication-kubeconfig=" + kubeconfig,
			"--authorization-kubeconfig=" + kubeconfig,
			// The cluster has no client CA, so there is no client-ca ConfigMap to look up.
			"--authentication-skip-lookup=true",
			"--bind-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", ports[0]),
			"--cert-dir=" + filepath.Join(c.dir, name+"-certs"),
			"--leader-elect=false",
			"--profiling=false",
		}, args...)
		p, err := startProc(c.bin, c.dir, name, name, all, nil)
		if err != nil {
			return nil, err
		}
		url := fmt.Sprintf("https://127.0.0.1:%d%s", ports[0], healthPath)
		if err := waitFor(name+" "+healthPath, readyTimeout, []*proc{p}, componentHealthy(url)); err != nil {
			return p, err
		}
		c.procs = append(c.procs, p)
		return p, nil
	})
}

// startControllers runs kube-controller-manager, kube-scheduler and KWOK, registers the fake
// node and waits until it is Ready and the default namespace has its ServiceAccount.
func (c *Cluster) startControllers() error {
	pki := filepath.Join(c.dir, "pki")
	if err := c.startComponent("kube-controller-manager", "/healthz", []string{
		"--service-account-private-key-file=" + filepath.Join(pki, "sa.key"),
		"--root-ca-file=" + filepath.Join(pki, "apiserver.crt"),
	}); err != nil {
		return err
	}
	if err := c.startComponent("kube-scheduler", "/readyz", nil); err != nil {
		return err
	}
	if err := c.startKWOK(); err != nil {
		return err
	}
	controllers := c.procs[len(c.procs)-3:]
	err := waitFor("default ServiceAccount", readyTimeout, controllers, func() (bool, error) {
		code, body, err := c.do(http.MethodGet, "/api/v1/namespaces/default/serviceaccounts/default", "", nil)
		if err != nil {
			return false, err
		}
		if code != http.StatusOK {
			return false, fmt.Errorf("status %d: %s", code, body)
		}
		return true, nil
	})
	return err
}

// startKWOK runs KWOK with the stages build.sh copied (node initialise and lease heartbeat,
// pods become Ready at once), registers KWOKNode and waits until it is Ready.
func (c *Cluster) startKWOK() error {
	stages, err := filepath.Glob(filepath.Join(c.assetDir("kwok-stages"), "*.yaml"))
	if err != nil || len(stages) == 0 {
		return fmt.Errorf("no KWOK stages in %s (made by e2e/build.sh): %v", c.assetDir("kwok-stages"), err)
	}
	kubeconfig, err := c.writeKubeconfig("kwok", "kwok")
	if err != nil {
		return err
	}
	home := filepath.Join(c.dir, "kwok-home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	p, err := startProc(c.bin, c.dir, "kwok", "kwok", []string{
		"--kubeconfig=" + kubeconfig,
		"--config=" + strings.Join(stages, ","),
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--node-lease-duration-seconds=40",
		"--cidr=10.244.0.0/16",
		"--node-ip=127.0.0.1",
	}, []string{"HOME=" + home}) // no user ~/.kwok/kwok.yaml sneaks in
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)

	node := map[string]any{
		"apiVersion": "v1",
		"kind":       "Node",
		"metadata": map[string]any{
			"name": KWOKNode,
			"annotations": map[string]string{
				"kwok.x-k8s.io/node":           "fake",
				"node.alpha.kubernetes.io/ttl": "0",
			},
			"labels": map[string]string{
				"kubernetes.io/arch":     "amd64",
				"kubernetes.io/hostname": KWOKNode,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/role":     "agent",
				"type":                   "kwok",
			},
		},
		"status": map[string]any{
			"allocatable": map[string]string{"cpu": "32", "memory": "256Gi", "pods": "110"},
			"capacity":    map[string]string{"cpu": "32", "memory": "256Gi", "pods": "110"},
		},
	}
	body, err := json.Marshal(node)
	if err != nil {
		return err
	}
	if _, err := c.mustDo(http.MethodPost, "/api/v1/nodes", "application/json", body, http.StatusCreated); err != nil {
		return fmt.Errorf("register KWOK node: %w", err)
	}
	return waitFor("KWOK node Ready", readyTimeout, []*proc{p}, func() (bool, error) {
		b, err := c.mustDo(http.MethodGet, "/api/v1/nodes/"+KWOKNode, "", nil, http.StatusOK)
		if err != nil {
			return false, err
		}
		var n struct {
			Status struct {
				Conditions []struct{ Type, Status string } `json:"conditions"`
			} `json:"status"`
		}
		if err := json.Unmarshal(b, &n); err != nil {
			return false, err
		}
		return slices.ContainsFunc(n.Status.Conditions, func(c struct{ Type, Status string }) bool {
			return c.Type == "Ready" && c.Status == "True"
		}), nil
	})
}

// startRollouts applies the Argo Rollouts CRDs, waits until they are established and runs
// the controller.
func (c *Cluster) startRollouts() error {
	crdDir := c.assetDir("argo-rollouts-crds")
	files, err := filepath.Glob(filepath.Join(crdDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no Argo Rollouts CRDs in %s (made by e2e/build.sh): %v", crdDir, err)
	}
	const crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
	var names []string
	for _, f := range files {
		y, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		// kube-apiserver decodes YAML bodies itself.
		b, err := c.mustDo(http.MethodPost, crds, "application/yaml", y, http.StatusCreated)
		if err != nil {
			return fmt.Errorf("apply %s: %w", filepath.Base(f), err)
		}
		var crd struct {
			Metadata struct{ Name string } `json:"metadata"`
		}
		if err := json.Unmarshal(b, &crd); err != nil {
			return fmt.Errorf("apply %s: %w", filepath.Base(f), err)
		}
		names = append(names, crd.Metadata.Name)
	}
	for _, name := range names {
		err := waitFor("CRD "+name+" Established", readyTimeout, c.procs, func() (bool, error) {
			b, err := c.mustDo(http.MethodGet, crds+"/"+name, "", nil, http.StatusOK)
			if err != nil {
				return false, err
			}
			var crd struct {
				Status struct {
					Conditions []struct{ Type, Status string } `json:"conditions"`
				} `json:"status"`
			}
			if err := json.Unmarshal(b, &crd); err != nil {
				return false, err
			}
			return slices.ContainsFunc(crd.Status.Conditions, func(c struct{ Type, Status string }) bool {
				return c.Type == "Established" && c.Status == "True"
			}), nil
		})
		if err != nil {
			return err
		}
	}

	kubeconfig, err := c.writeKubeconfig("argo-rollouts", "argo-rollouts")
	if err != nil {
		return err
	}
	return startRetrying(func() (*proc, error) {
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		p, err := startProc(c.bin, c.dir, "rollouts-controller", "rollouts-controller", []string{
			"--kubeconfig=" + kubeconfig,
			"--leader-elect=false",
			fmt.Sprintf("--healthzPort=%d", ports[0]),
			fmt.Sprintf("--metricsPort=%d", ports[1]),
		}, nil)
		if err != nil {
			return nil, err
		}
		healthz := fmt.Sprintf("http://127.0.0.1:%d/healthz", ports[0])
		hc := &http.Client{Timeout: 5 * time.Second}
		err = waitFor("rollouts-controller /healthz", readyTimeout, []*proc{p}, func() (bool, error) {
			resp, err := hc.Get(healthz)
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
		if err != nil {
			return p, err
		}
		c.procs = append(c.procs, p)
		return p, nil
	})
}
