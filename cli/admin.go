package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) agentsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "agents",
		Short:   "See the agents (clusters) connected to the server",
		Example: `  sortie agents list`,
		Args:    usageArgs(cobra.NoArgs),
		RunE:    needSubcommand,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List connected agents, one line per agent stream",
		Long: `list shows every connected agent replica. Its identifier is the account a target of a
deploy.yml names.`,
		Example: `  sortie agents list
  sortie agents list -o json | jq -r '.[].agentIdentifier'`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var agents []struct {
				AgentIdentifier        string `json:"agentIdentifier"`
				AgentVersion           string `json:"agentVersion"`
				ConnectedAtIso8601     string `json:"connectedAtIso8601"`
				LastHeartbeatAtIso8601 string `json:"lastHeartbeatAtIso8601"`
				IPAddress              string `json:"ipAddress"`
				AgentInstanceUUID      string `json:"agentInstanceUuid"`
			}
			data, err := c.getJSON(cmd.Context(), "/identity/connected-agents", nil, &agents)
			if err != nil {
				return err
			}
			return a.print(json.RawMessage(data), func(w *textWriter) {
				if len(agents) == 0 {
					w.linef("No agents connected. Start one: sortie-agent --hub-url %s ... (see the README).", a.g.addr)
					return
				}
				rows := make([][]string, 0, len(agents))
				for _, ag := range agents {
					rows = append(rows, []string{ag.AgentIdentifier, ag.AgentVersion, ag.ConnectedAtIso8601, ag.LastHeartbeatAtIso8601, orDash(ag.IPAddress), ag.AgentInstanceUUID})
				}
				w.table([]string{"ACCOUNT", "VERSION", "CONNECTED", "LAST HEARTBEAT", "IP", "INSTANCE"}, rows)
			})
		},
	})
	return cmd
}

// credentialView is what the CLI shows of a credential.
type credentialView struct {
	ClientID         string   `json:"clientId"`
	Name             string   `json:"name"`
	Roles            []string `json:"roles"`
	Scopes           []string `json:"scopes"`
	CreatedAtIso8601 string   `json:"createdAtIso8601"`
	ClientSecret     string   `json:"clientSecret"`
}

func (a *app) credentialsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "credentials",
		Aliases: []string{"credential"},
		Short:   "Create, list and delete machine credentials",
		Example: `  sortie credentials create ci-pipeline --role "Deployments Full Access"
  sortie credentials list`,
		Args: usageArgs(cobra.NoArgs),
		RunE: needSubcommand,
	}
	var roles []string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a machine credential; its secret is shown this once",
		Long: `create makes a machine credential in your environment with the given roles (the server's
GET /roles lists them: Deployments Full Access, Remote Network Agent, Organization Admin).
Its secret is printed once and never again; store it safely. A name that exists already is
a conflict (exit 3) and changes nothing.`,
		Example: `  sortie credentials create ci-pipeline --role "Deployments Full Access"
  sortie credentials create agent-prod --role "Remote Network Agent" -o json > agent.json`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			data, err := c.do(cmd.Context(), request{method: http.MethodPost, path: "/credentials",
				body: map[string]any{"name": args[0], "roles": nonNil(roles)}, want: http.StatusCreated})
			if err != nil {
				return err
			}
			var cr credentialView
			if err := json.Unmarshal(data, &cr); err != nil {
				return fmt.Errorf("the server's reply is not a credential: %w", err)
			}
			return a.print(json.RawMessage(data), func(w *textWriter) {
				w.linef("Created credential %q.", cr.Name)
				w.linef("  client id:     %s", cr.ClientID)
				w.linef("  client secret: %s", cr.ClientSecret)
				w.linef("  roles:         %s", orDash(strings.Join(cr.Roles, ", ")))
				w.linef("The secret is shown only now: store it safely.")
			})
		},
	}
	create.Flags().StringArrayVar(&roles, "role", nil, "a role to grant (repeatable)")
	_ = create.RegisterFlagCompletionFunc("role", cobra.FixedCompletions(
		[]string{"Deployments Full Access", "Remote Network Agent", "Organization Admin"}, cobra.ShellCompDirectiveNoFileComp))

	list := &cobra.Command{
		Use:     "list",
		Short:   "List the machine credentials of your environment (never their secrets)",
		Example: `  sortie credentials list -o yaml`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var creds []credentialView
			data, err := c.getJSON(cmd.Context(), "/credentials", nil, &creds)
			if err != nil {
				return err
			}
			return a.print(json.RawMessage(data), func(w *textWriter) {
				rows := make([][]string, 0, len(creds))
				for _, cr := range creds {
					rows = append(rows, []string{cr.ClientID, cr.Name, orDash(strings.Join(cr.Roles, ", ")), cr.CreatedAtIso8601})
				}
				w.table([]string{"CLIENT ID", "NAME", "ROLES", "CREATED"}, rows)
			})
		},
	}

	del := &cobra.Command{
		Use:   "delete CLIENT_ID",
		Short: "Delete a machine credential; the server refuses its tokens from then on",
		Example: `  sortie credentials delete 0b6f...
  sortie credentials list -o json | jq -r '.[] | select(.name=="old") | .clientId' | xargs sortie credentials delete`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.do(cmd.Context(), request{method: http.MethodDelete, path: "/credentials/" + url.PathEscape(args[0]), want: http.StatusNoContent}); err != nil {
				return err
			}
			return a.print(map[string]any{"clientId": args[0], "deleted": true}, func(w *textWriter) {
				w.linef("Deleted credential %s.", args[0])
			})
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}
