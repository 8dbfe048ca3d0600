package console_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	sortie "github.com/sortie-dev/sortie/e2e/sortietest"
)

// account is the agent identifier of the cluster every scenario deploys to.
const account = "dev-cluster"

// harness is the one server, agent and identity provider the scenarios share.
type harness struct {
	srv           *sortie.Server
	url           string
	dataDir       string
	adminPassword string
	// admin is a token of the bootstrap machine credential (Organization Admin of the
	// default environment), for what the tests set up and check through the API.
	admin string
	shots string
	sso   ssoProvider
}

func start(t *testing.T) *harness {
	t.Helper()
	addr := sortie.FreeAddr(t)
	public := "http://" + addr
	h := &harness{url: public, dataDir: t.TempDir(), shots: screenshotDir(t)}
	h.sso = startSSO(t, public)
	args := []string{
		// Pipelines react within a second; an agent's account goes as soon as its last
		// stream closes, so the Agents page shows a disconnect at once.
		"--pipeline-resync", "300ms", "--pipeline-lease-ttl", "3s", "--hub-grace-period", "1s",
	}
	args = append(args, h.sso.serverFlags()...)
	h.srv = sortie.StartServer(t, sortie.ServerConfig{DataDir: h.dataDir, Addr: addr, PublicURL: public, Args: args})

	id, secret := sortie.AdminCredential(t, h.dataDir)
	h.admin = sortie.Token(t, h.url, id, secret)
	h.adminPassword = adminPassword(t, h.dataDir)
	h.agent(t, account)
	return h
}

// adminPassword reads the admin user's generated password the bootstrap saved.
func adminPassword(t *testing.T, dataDir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dataDir, "admin-credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ AdminLogin, AdminPassword string }
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if c.AdminLogin != "admin" || c.AdminPassword == "" {
		t.Fatalf("admin-credentials.json has no admin user password (adminLogin %q)", c.AdminLogin)
	}
	return c.AdminPassword
}

// agent starts an agent of identifier in the default environment and waits until it is
// connected; the test's end stops it.
func (h *harness) agent(t *testing.T, identifier string) *sortie.Process {
	t.Helper()
	id, secret := sortie.AgentCredential(t, h.url, h.admin, "agent-"+identifier)
	p := sortie.StartAgent(t, cluster.Kubeconfig(), "agent "+identifier, h.url, id, secret, identifier)
	sortie.WaitFor(t, 30*time.Second, "agent "+identifier+" to connect", func() bool {
		return len(sortie.ConnectedAgents(t, h.url, h.admin, identifier)) > 0
	})
	return p
}

// env is what every script gets.
func (h *harness) env() []string {
	return []string{
		"SORTIE_URL=" + h.url,
		"SORTIE_ADMIN_LOGIN=admin",
		"SORTIE_ADMIN_PASSWORD=" + h.adminPassword,
		"SORTIE_TOKEN=" + h.admin,
		"SORTIE_ACCOUNT=" + account,
		"SORTIE_SCREENSHOT_DIR=" + h.shots,
		"SORTIE_CHROMIUM=" + chromiumPath,
	}
}
