package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"
)

// isTerminal reports whether r or w is a terminal.
func isTerminal(rw any) bool {
	f, ok := rw.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// maxPollFailures is how many reads in a row may fail (the server restarting, a network
// blip) before --watch gives up.
const maxPollFailures = 5

// snapshot is one read of the pipeline: the reply as sent and what the CLI shows of it.
type snapshot struct {
	raw json.RawMessage
	p   *pipelineView
}

// poller reads one pipeline.
type poller struct {
	c        *client
	id       string
	failures int
}

// next reads the pipeline; an error is returned only when reading has failed too often or
// cannot succeed (401, 403, 404).
func (p *poller) next(ctx context.Context) (*snapshot, error) {
	var v pipelineView
	data, err := p.c.getJSON(ctx, "/pipelines/"+url.PathEscape(p.id), nil, &v)
	if err == nil {
		p.failures = 0
		return &snapshot{raw: data, p: &v}, nil
	}
	var ae *apiError
	if ctx.Err() != nil || (errors.As(err, &ae) && ae.Status < 500) {
		return nil, err
	}
	p.failures++
	if p.failures >= maxPollFailures {
		return nil, fmt.Errorf("stopped watching after %d failed reads: %w", p.failures, err)
	}
	return nil, nil
}

// watch follows a pipeline until it ends: a live view on a terminal with -o text, else one
// line (or one JSON/YAML document) per change. It returns nil only for SUCCEEDED.
func (a *app) watch(ctx context.Context, c *client, id string, interval time.Duration) error {
	p := &poller{c: c, id: id}
	var last *snapshot
	var err error
	if a.g.output == "text" && isTerminal(a.env.Stdout) {
		last, err = a.watchLive(ctx, p, interval)
	} else {
		last, err = a.watchLines(ctx, p, interval)
	}
	if err != nil {
		if ctx.Err() != nil {
			return exitError{ExitFailure, fmt.Sprintf("stopped watching pipeline %s; it keeps running (sortie deploy status %s --watch)", id, id)}
		}
		return err
	}
	return outcome(last.p)
}

// outcome is the exit of a finished pipeline.
func outcome(p *pipelineView) error {
	if p.Status == "SUCCEEDED" {
		return nil
	}
	msg := fmt.Sprintf("pipeline %s ended %s", p.ID, p.Status)
	if p.Message != "" {
		msg += ": " + p.Message
	}
	return exitError{ExitFailure, msg}
}

// watchLines prints a line per change, each stamped with the time.
func (a *app) watchLines(ctx context.Context, p *poller, interval time.Duration) (*snapshot, error) {
	seen := map[string]string{}
	var lastRaw string
	for {
		s, err := p.next(ctx)
		if err != nil {
			return nil, err
		}
		if s != nil {
			if err := a.printChanges(s, seen, &lastRaw); err != nil {
				return nil, err
			}
			if finished(s.p.Status) {
				return s, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// printChanges writes what changed since the last snapshot: with -o json one compact JSON
// object per changed snapshot, with -o yaml one document, else one line per changed fact.
func (a *app) printChanges(s *snapshot, seen map[string]string, lastRaw *string) error {
	out := a.env.Stdout
	switch a.g.output {
	case "json", "yaml":
		compact, err := encodeJSON(s.raw, false)
		if err != nil {
			return err
		}
		if string(compact) == *lastRaw {
			return nil
		}
		*lastRaw = string(compact)
		if a.g.output == "json" {
			_, err = fmt.Fprintf(out, "%s\n", compact)
			return err
		}
		y, err := yaml.JSONToYAML(compact)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "---\n%s", y)
		return err
	}
	now := a.env.Now()
	stamp := clock(now)
	for _, f := range facts(s.p, now) {
		if seen[f.key] == f.text {
			continue
		}
		seen[f.key] = f.text
		if _, err := fmt.Fprintf(out, "%s %s\n", stamp, f.text); err != nil {
			return err
		}
	}
	return nil
}

type fact struct{ key, text string }

// facts are the lines of the line view; a line is printed again when its text changes. A
// timed pause says when it ends rather than counting down, so it prints once.
func facts(p *pipelineView, now time.Time) []fact {
	head := fmt.Sprintf("pipeline %s %s", p.ID, p.Status)
	if p.BlockedBy != nil {
		head += " (queued behind " + *p.BlockedBy + ")"
	}
	if p.Message != "" {
		head += ": " + p.Message
	}
	// Decisions first: they cause what follows in the same read.
	out := make([]fact, 0, len(p.Decisions)+1+len(p.Environments))
	for i, d := range p.Decisions {
		out = append(out, fact{fmt.Sprintf("decision/%d", i), decisionLine(d)})
	}
	out = append(out, fact{"pipeline", head})
	for _, tg := range p.Environments {
		line := fmt.Sprintf("target %s: %s, step %d/%d, weight %d%%", tg.Name, tg.Status, tg.CurrentStep, tg.TotalSteps, tg.Weight)
		if tp := tg.PauseInfo; tp != nil {
			if tp.Reason == "timed" {
				line += fmt.Sprintf(", timed pause until %s (step %s)", clock(parseTime(tp.EndTimeIso8601)), tp.Step)
			} else {
				line += ", " + waitingFor(p.ID, tg, now)
			}
		}
		if tg.Message != "" {
			line += ": " + tg.Message
		}
		out = append(out, fact{"target/" + tg.Name, line})
	}
	return out
}

// Messages of the live view.
type (
	snapshotMsg struct{ s *snapshot }
	pollErrMsg  struct{ err error }
	tickMsg     struct{}
)

// liveModel is the bubbletea model of the live view.
type liveModel struct {
	id          string
	now         func() time.Time
	s           *snapshot
	err         error
	interrupted bool
	st          liveStyles
}

type liveStyles struct {
	title, dim, ok, bad, wait lipgloss.Style
}

func newLiveStyles(r *lipgloss.Renderer) liveStyles {
	return liveStyles{
		title: r.NewStyle().Bold(true),
		dim:   r.NewStyle().Faint(true),
		ok:    r.NewStyle().Foreground(lipgloss.Color("2")).Bold(true),
		bad:   r.NewStyle().Foreground(lipgloss.Color("1")).Bold(true),
		wait:  r.NewStyle().Foreground(lipgloss.Color("3")),
	}
}

// countdownTick redraws the pause countdown between reads.
const countdownTick = 250 * time.Millisecond

func tick() tea.Cmd { return tea.Tick(countdownTick, func(time.Time) tea.Msg { return tickMsg{} }) }

func (m *liveModel) Init() tea.Cmd { return tick() }

func (m *liveModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case snapshotMsg:
		m.s = msg.s
		if finished(m.s.p.Status) {
			return m, tea.Quit
		}
	case pollErrMsg:
		m.err = msg.err
		return m, tea.Quit
	case tickMsg:
		return m, tick()
	case tea.KeyMsg:
		if msg.Type == tea.KeyCtrlC || msg.String() == "q" {
			m.interrupted = true
			return m, tea.Quit
		}
	}
	return m, nil
}

func (m *liveModel) statusStyle(s string) lipgloss.Style {
	switch s {
	case "SUCCEEDED":
		return m.st.ok
	case "FAILED", "CANCELLED", "REJECTED":
		return m.st.bad
	case "PAUSED", "AWAITING_APPROVAL", "QUEUED":
		return m.st.wait
	}
	return m.st.title
}

func (m *liveModel) View() string {
	if m.s == nil {
		return fmt.Sprintf("Pipeline %s: reading...\n", m.id)
	}
	p, now := m.s.p, m.now()
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s  %s\n", m.st.title.Render("Pipeline "+p.ID), m.st.dim.Render("application "+p.Application), m.statusStyle(p.Status).Render(p.Status))
	if p.BlockedBy != nil {
		fmt.Fprintf(&b, "  queued behind pipeline %s\n", *p.BlockedBy)
	}
	if p.Message != "" {
		fmt.Fprintf(&b, "  %s\n", p.Message)
	}
	width := 0
	for _, tg := range p.Environments {
		width = max(width, len(tg.Name))
	}
	for _, tg := range p.Environments {
		const cells = 20
		filled := tg.Weight * cells / 100
		bar := strings.Repeat("█", filled) + strings.Repeat("░", cells-filled)
		// Pad before styling: escape sequences have no width.
		fmt.Fprintf(&b, "  %-*s  %s  step %d/%d  %s %3d%%  %s\n", width, tg.Name, m.statusStyle(tg.Status).Render(fmt.Sprintf("%-17s", tg.Status)),
			tg.CurrentStep, tg.TotalSteps, bar, tg.Weight, m.st.dim.Render(tg.Account+"/"+tg.Namespace))
		if w := waitingFor(p.ID, tg, now); w != "" {
			fmt.Fprintf(&b, "  %-*s  %s\n", width, "", m.st.wait.Render(w))
		}
		if tg.Message != "" {
			fmt.Fprintf(&b, "  %-*s  %s\n", width, "", tg.Message)
		}
	}
	for _, d := range p.Decisions {
		fmt.Fprintf(&b, "  %s %s\n", map[bool]string{true: "✗", false: "✓"}[d.Action == "abort"], decisionLine(d))
	}
	if !finished(p.Status) && !m.interrupted && m.err == nil {
		b.WriteString(m.st.dim.Render("  q or Ctrl+C stops watching; the pipeline keeps running.") + "\n")
	}
	return b.String()
}

// watchLive runs the live view until the pipeline ends, reading fails or the user quits.
func (a *app) watchLive(ctx context.Context, p *poller, interval time.Duration) (*snapshot, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	model := &liveModel{id: p.id, now: a.env.Now, st: newLiveStyles(lipgloss.NewRenderer(a.env.Stdout))}
	var in io.Reader
	if isTerminal(a.env.Stdin) {
		in = a.env.Stdin
	}
	prog := tea.NewProgram(model, tea.WithContext(lctx), tea.WithOutput(a.env.Stdout), tea.WithInput(in),
		tea.WithEnvironment([]string{"TERM=" + a.env.Getenv("TERM"), "COLORTERM=" + a.env.Getenv("COLORTERM"), "NO_COLOR=" + a.env.Getenv("NO_COLOR")}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			s, err := p.next(lctx)
			if err != nil {
				if lctx.Err() == nil {
					prog.Send(pollErrMsg{err})
				}
				return
			}
			if s != nil {
				prog.Send(snapshotMsg{s})
				if finished(s.p.Status) {
					return
				}
			}
			select {
			case <-lctx.Done():
				return
			case <-time.After(interval):
			}
		}
	}()
	_, runErr := prog.Run()
	cancel()
	<-done
	switch {
	case model.err != nil:
		return nil, model.err
	case model.interrupted:
		return nil, exitError{ExitFailure, fmt.Sprintf("stopped watching pipeline %s; it keeps running (sortie deploy status %s --watch)", p.id, p.id)}
	case runErr != nil && ctx.Err() == nil:
		return nil, fmt.Errorf("live view: %w", runErr)
	case model.s == nil || !finished(model.s.p.Status):
		return nil, context.Canceled
	}
	return model.s, nil
}
