package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// pipelineMediaType is what the Armory CLI sends, in Content-Type and Accept, to start a
// pipeline.
const pipelineMediaType = "application/vnd.start.kubernetes.pipeline.v2+json"

// statuses is the one status enum of the API.
var statuses = []string{"NOT_STARTED", "QUEUED", "RUNNING", "PAUSED", "AWAITING_APPROVAL", "SUCCEEDED", "FAILED", "CANCELLED", "REJECTED"}

// finished reports whether a pipeline in status s has ended.
func finished(s string) bool {
	switch s {
	case "SUCCEEDED", "FAILED", "CANCELLED", "REJECTED":
		return true
	}
	return false
}

// pipelineView is the part of GET /pipelines/{id} the CLI shows.
type pipelineView struct {
	ID                 string         `json:"id"`
	Application        string         `json:"application"`
	Status             string         `json:"status"`
	StartedAtIso8601   *string        `json:"startedAtIso8601"`
	CompletedAtIso8601 *string        `json:"completedAtIso8601"`
	BlockedBy          *string        `json:"blockedBy"`
	Message            string         `json:"message"`
	Environments       []targetView   `json:"environments"`
	Decisions          []decisionView `json:"decisions"`
}

type targetView struct {
	Name        string     `json:"name"`
	Account     string     `json:"account"`
	Namespace   string     `json:"namespace"`
	Status      string     `json:"status"`
	Strategy    string     `json:"strategy"`
	CurrentStep int        `json:"currentStep"`
	TotalSteps  int        `json:"totalSteps"`
	Weight      int        `json:"weight"`
	PauseInfo   *pauseView `json:"pauseInfo"`
	Message     string     `json:"message"`
}

type pauseView struct {
	Reason           string   `json:"reason"`
	Step             string   `json:"step"`
	EndTimeIso8601   *string  `json:"endTimeIso8601"`
	RequiresRoles    []string `json:"requiresRoles"`
	ExpiresAtIso8601 *string  `json:"expiresAtIso8601"`
}

type decisionView struct {
	Action string `json:"action"`
	Step   string `json:"step"`
	Target string `json:"target"`
	Actor  struct {
		Type string `json:"type"`
		Name string `json:"name"`
		ID   string `json:"id"`
	} `json:"actor"`
	AtIso8601 string `json:"atIso8601"`
}

// parseTime reads an RFC 3339 time the server wrote; nil or bad is zero.
func parseTime(s *string) time.Time {
	if s == nil {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339, *s)
	return t
}

func clock(t time.Time) string { return t.UTC().Format("15:04:05Z") }

// leftOf is the time left until end, rounded up to the second, never negative.
func leftOf(end, now time.Time) time.Duration {
	d := end.Sub(now)
	if d <= 0 {
		return 0
	}
	return (d + time.Second - time.Nanosecond).Truncate(time.Second)
}

// waitingFor says what a paused target waits for.
func waitingFor(id string, tg targetView, now time.Time) string {
	p := tg.PauseInfo
	if p == nil {
		return ""
	}
	if p.Reason == "timed" {
		end := parseTime(p.EndTimeIso8601)
		if end.IsZero() {
			return fmt.Sprintf("timed pause (step %s)", p.Step)
		}
		return fmt.Sprintf("timed pause, %s left (until %s, step %s)", leftOf(end, now), clock(end), p.Step)
	}
	s := fmt.Sprintf("awaiting approval of step %s", p.Step)
	if len(p.RequiresRoles) > 0 {
		s += "; may approve: " + strings.Join(p.RequiresRoles, ", ")
	} else {
		s += "; may approve: anyone with manage:deploy"
	}
	if exp := parseTime(p.ExpiresAtIso8601); !exp.IsZero() {
		s += "; expires " + clock(exp)
	}
	return s + fmt.Sprintf(" (sortie deploy approve %s --step %s)", id, p.Step)
}

// decisionLine says who did what.
func decisionLine(d decisionView) string {
	past := map[string]string{"approve": "approved", "resume": "resumed", "abort": "aborted"}[d.Action]
	if past == "" {
		past = d.Action
	}
	what := d.Step
	if what == "" {
		what = d.Target
	}
	if what == "" {
		what = "the pipeline"
	}
	at := d.AtIso8601
	if t, err := time.Parse(time.RFC3339, at); err == nil {
		at = clock(t)
	}
	return fmt.Sprintf("%s %s by %s (%s %s) at %s", past, what, d.Actor.Name, d.Actor.Type, d.Actor.ID, at)
}

func (a *app) deployCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Start, follow, approve and abort deployments",
		Example: `  sortie deploy start -f examples/canary/deploy.yml --watch
  sortie deploy list --status AWAITING_APPROVAL
  sortie deploy approve 5f0c6a1e-...`,
		Args: usageArgs(cobra.NoArgs),
		RunE: needSubcommand,
	}
	cmd.AddCommand(a.deployStartCommand(), a.deployStatusCommand(), a.deployListCommand(), a.deployApproveCommand(), a.deployAbortCommand())
	return cmd
}

func (a *app) deployStartCommand() *cobra.Command {
	var (
		file     string
		watch    bool
		targets  []string
		contexts map[string]string
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "start -f deploy.yml",
		Short: "Start a pipeline from a deploy.yml",
		Long: `start sends a deploy.yml (the Armory CD-as-a-Service format) to POST /pipelines/kubernetes
as the Armory CLI does: the file as JSON, plus every manifest its path entries name (relative
to the deploy file; a directory means every .yaml and .yml file under it), --add-context
values and the -t target filter. The file is checked first; when something is wrong nothing
is sent.

With --watch it follows the pipeline until it ends and exits 0 only when it SUCCEEDED. On a
terminal the view is redrawn in place; otherwise one line is printed per change (with
-o json, one JSON object per line). The view is read by polling GET /pipelines/{id} every
--poll-interval.`,
		Example: `  sortie deploy start -f examples/canary/deploy.yml --watch
  sortie deploy start -f deploy.yml -t staging --add-context commit=$(git rev-parse HEAD)
  sortie deploy start -f deploy.yml -o json | jq -r .pipelineId`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usagef("-f is required: the deploy.yml to start")
			}
			if interval <= 0 {
				return usagef("--poll-interval %v: must be positive", interval)
			}
			if _, empty := contexts[""]; empty {
				return usagef("--add-context: a key is empty; use key=value")
			}
			df, err := readDeployFile(file)
			if err != nil {
				return err
			}
			body, err := df.body(targets, contexts)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			data, err := c.do(cmd.Context(), request{method: http.MethodPost, path: "/pipelines/kubernetes", body: body,
				contentType: pipelineMediaType, accept: pipelineMediaType, want: http.StatusAccepted})
			if err != nil {
				return err
			}
			var started struct {
				PipelineID string   `json:"pipelineId"`
				Warnings   []string `json:"warnings"`
			}
			if err := json.Unmarshal(data, &started); err != nil || started.PipelineID == "" {
				return fmt.Errorf("the server accepted the pipeline but its reply names no pipelineId")
			}
			for _, w := range started.Warnings {
				fmt.Fprintln(a.env.Stderr, "sortie: warning:", w)
			}
			if !watch {
				return a.print(json.RawMessage(data), func(w *textWriter) {
					w.linef("Started pipeline %s.", started.PipelineID)
					w.linef("Follow it with: sortie deploy status %s --watch", started.PipelineID)
				})
			}
			if a.g.output == "text" {
				fmt.Fprintf(a.env.Stdout, "Started pipeline %s.\n", started.PipelineID)
			}
			return a.watch(cmd.Context(), c, started.PipelineID, interval)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "the deploy.yml to start (required)")
	f.BoolVarP(&watch, "watch", "w", false, "follow the pipeline until it ends; exit 0 only when it SUCCEEDED")
	f.StringArrayVarP(&targets, "target", "t", nil, "deploy only this target (repeatable); default: every target")
	// A map flag, as in the Armory CLI: --add-context a=1,b=2 sets two keys, so its users'
	// scripts mean the same here.
	f.StringToStringVar(&contexts, "add-context", nil, "key=value added to the pipeline's context (repeatable; a=1,b=2 sets two keys)")
	f.DurationVar(&interval, "poll-interval", time.Second, "how often --watch reads the pipeline")
	_ = cmd.MarkFlagFilename("file", "yml", "yaml")
	return cmd
}

func (a *app) deployStatusCommand() *cobra.Command {
	var (
		watch    bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status PIPELINE_ID",
		Short: "Show a pipeline: its targets, steps, pauses and decisions",
		Example: `  sortie deploy status 5f0c6a1e-...
  sortie deploy status 5f0c6a1e-... --watch
  sortie deploy status 5f0c6a1e-... -o json | jq -r .status`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completePipelines,
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval <= 0 {
				return usagef("--poll-interval %v: must be positive", interval)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if watch {
				return a.watch(cmd.Context(), c, args[0], interval)
			}
			var p pipelineView
			data, err := c.getJSON(cmd.Context(), "/pipelines/"+url.PathEscape(args[0]), nil, &p)
			if err != nil {
				return err
			}
			return a.print(json.RawMessage(data), func(w *textWriter) { writeStatus(w, &p, a.env.Now()) })
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the pipeline until it ends; exit 0 only when it SUCCEEDED")
	cmd.Flags().DurationVar(&interval, "poll-interval", time.Second, "how often --watch reads the pipeline")
	return cmd
}

// writeStatus is the text of deploy status.
func writeStatus(w *textWriter, p *pipelineView, now time.Time) {
	w.linef("Pipeline %s (application %s): %s", p.ID, p.Application, p.Status)
	if p.BlockedBy != nil {
		w.linef("Queued behind pipeline %s.", *p.BlockedBy)
	}
	if p.Message != "" {
		w.linef("Message: %s", p.Message)
	}
	if t := parseTime(p.StartedAtIso8601); !t.IsZero() {
		line := "Started " + t.UTC().Format(time.RFC3339)
		if c := parseTime(p.CompletedAtIso8601); !c.IsZero() {
			line += ", completed " + c.UTC().Format(time.RFC3339)
		}
		w.linef("%s.", line)
	}
	rows := make([][]string, 0, len(p.Environments))
	for _, tg := range p.Environments {
		rows = append(rows, []string{tg.Name, tg.Account + "/" + tg.Namespace, tg.Status,
			fmt.Sprintf("%d/%d", tg.CurrentStep, tg.TotalSteps), fmt.Sprintf("%d%%", tg.Weight), orDash(waitingFor(p.ID, tg, now) + tg.Message)})
	}
	w.table([]string{"TARGET", "ACCOUNT/NAMESPACE", "STATUS", "STEP", "WEIGHT", "WAITING FOR / MESSAGE"}, rows)
	for _, d := range p.Decisions {
		w.linef("%s", decisionLine(d))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) deployListCommand() *cobra.Command {
	var (
		application string
		status      []string
		limit       int
		pageToken   string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List pipelines, newest first",
		Example: `  sortie deploy list
  sortie deploy list --application web --status RUNNING,AWAITING_APPROVAL
  sortie deploy list -o json | jq -r '.pipelines[].id'`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if application != "" {
				q.Set("application", application)
			}
			for _, s := range status {
				for v := range strings.SplitSeq(s, ",") {
					v = strings.ToUpper(strings.TrimSpace(v))
					if v == "" {
						continue
					}
					if !slices.Contains(statuses, v) {
						return usagef("--status %q: use one of %s", v, strings.Join(statuses, ", "))
					}
					q.Add("status", v)
				}
			}
			if limit < 1 || limit > 500 {
				return usagef("--limit %d: use 1 to 500", limit)
			}
			q.Set("limit", strconv.Itoa(limit))
			if pageToken != "" {
				q.Set("pageToken", pageToken)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var list struct {
				Pipelines     []pipelineView `json:"pipelines"`
				NextPageToken string         `json:"nextPageToken"`
			}
			data, err := c.getJSON(cmd.Context(), "/pipelines", q, &list)
			if err != nil {
				return err
			}
			return a.print(json.RawMessage(data), func(w *textWriter) {
				if len(list.Pipelines) == 0 {
					w.linef("No pipelines.")
					return
				}
				rows := make([][]string, 0, len(list.Pipelines))
				for _, p := range list.Pipelines {
					var tgs []string
					for _, tg := range p.Environments {
						tgs = append(tgs, tg.Name+":"+tg.Status)
					}
					started := "-"
					if t := parseTime(p.StartedAtIso8601); !t.IsZero() {
						started = t.UTC().Format(time.RFC3339)
					}
					rows = append(rows, []string{p.ID, p.Application, p.Status, orDash(strings.Join(tgs, ",")), started})
				}
				w.table([]string{"ID", "APPLICATION", "STATUS", "TARGETS", "STARTED"}, rows)
				if list.NextPageToken != "" {
					w.linef("More: sortie deploy list --page-token %s", list.NextPageToken)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&application, "application", "", "only this application's pipelines")
	f.StringSliceVar(&status, "status", nil, "only pipelines in these statuses (comma-separated or repeated)")
	f.IntVar(&limit, "limit", 50, "page size, 1 to 500")
	f.StringVar(&pageToken, "page-token", "", "the page after the one that printed this token")
	_ = cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions(statuses, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// actionReply is the reply of approve and abort.
type actionReply struct {
	Message        string `json:"message"`
	NumberAffected int    `json:"numberAffected"`
}

func (a *app) deployApproveCommand() *cobra.Command {
	var step string
	cmd := &cobra.Command{
		Use:   "approve PIPELINE_ID",
		Short: "Approve a step awaiting approval (default: every one of the pipeline)",
		Long: `approve records your approval of a manual pause (who and when are visible in the
pipeline). With --step only that step; without it every step of the pipeline that awaits
approval. Nothing awaiting approval is a conflict (exit 3); a step that requires a role you
lack is refused (403).`,
		Example: `  sortie deploy approve 5f0c6a1e-...
  sortie deploy approve 5f0c6a1e-... --step prod/canary/3`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completePipelines,
		RunE: func(cmd *cobra.Command, args []string) error {
			var body any
			if step != "" {
				body = map[string]string{"step": step}
			}
			return a.act(cmd, args[0], "approve", body)
		},
	}
	cmd.Flags().StringVar(&step, "step", "", "the ref of the step to approve (deploy status shows it)")
	return cmd
}

func (a *app) deployAbortCommand() *cobra.Command {
	return &cobra.Command{
		Use:               "abort PIPELINE_ID",
		Short:             "Abort a pipeline: stop every active target and roll it back",
		Example:           `  sortie deploy abort 5f0c6a1e-...`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completePipelines,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.act(cmd, args[0], "abort", nil)
		},
	}
}

func (a *app) act(cmd *cobra.Command, id, action string, body any) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	data, err := c.do(cmd.Context(), request{method: http.MethodPost, path: "/pipelines/" + url.PathEscape(id) + "/" + action, body: body})
	if err != nil {
		return err
	}
	var r actionReply
	_ = json.Unmarshal(data, &r)
	return a.print(json.RawMessage(data), func(w *textWriter) {
		msg := r.Message
		if msg != "" {
			msg = strings.ToUpper(msg[:1]) + msg[1:]
		}
		w.linef("%s.", msg)
	})
}

// completePipelines offers the ids of active pipelines for shell completion.
func (a *app) completePipelines(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	if err := a.preRun(cmd, nil); err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := a.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var list struct {
		Pipelines []pipelineView `json:"pipelines"`
	}
	q := url.Values{"status": {"QUEUED,RUNNING,PAUSED,AWAITING_APPROVAL"}, "limit": {"100"}}
	if _, err := c.getJSON(cmd.Context(), "/pipelines", q, &list); err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	out := make([]cobra.Completion, 0, len(list.Pipelines))
	for _, p := range list.Pipelines {
		out = append(out, cobra.CompletionWithDesc(p.ID, p.Application+" "+p.Status))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
