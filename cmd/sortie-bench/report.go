package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Targets of the agents benchmark: RSS per idle agent against the bare server's, and the
// time until every agent is back after a restart.
const (
	targetMemoryRatio  = 1.2
	targetStormSeconds = 30
)

// sweepResult is the outcome of `sortie-bench agents`, as printed and as JSON: one
// agentsResult per agent count, the last with the reconnect storm.
type sweepResult struct {
	Benchmark          string         `json:"benchmark"`
	HeartbeatSeconds   float64        `json:"heartbeat_seconds"`
	TargetMemoryRatio  float64        `json:"target_memory_ratio"`
	TargetStormSeconds float64        `json:"target_storm_seconds"`
	Sizes              []agentsResult `json:"sizes"`
	// MemoryWithinTarget holds when the RSS ratio is within target at every size.
	MemoryWithinTarget bool `json:"memory_within_target"`
}

// agentsResult is the outcome at one agent count.
type agentsResult struct {
	Agents     int         `json:"agents"`
	Processes  int         `json:"simulator_processes"`
	Hub        memoryPhase `json:"hub"`
	Bare       memoryPhase `json:"bare"`
	RSSRatio   float64     `json:"rss_per_agent_ratio"`
	HeapRatio  float64     `json:"heap_per_agent_ratio"`
	StackRatio float64     `json:"stack_per_agent_ratio"`
	// HubGoroutines and BareGoroutines are the goroutines each server added per agent.
	HubGoroutines      float64      `json:"hub_goroutines_per_agent"`
	BareGoroutines     float64      `json:"bare_goroutines_per_agent"`
	MemoryWithinTarget bool         `json:"memory_within_target"` // the RSS ratio
	Storm              *stormResult `json:"reconnect_storm,omitempty"`
	StormWithinTarget  bool         `json:"storm_within_target,omitempty"`
}

// memoryPhase is one server's memory before and after the agents connected.
type memoryPhase struct {
	Before         memory  `json:"before"`
	After          memory  `json:"after"`
	RSSPerAgent    float64 `json:"rss_bytes_per_agent"`
	HeapPerAgent   float64 `json:"heap_inuse_bytes_per_agent"`
	StackPerAgent  float64 `json:"stack_inuse_bytes_per_agent"`
	ConnectSeconds float64 `json:"connect_seconds"`
	// ConnectCPUSeconds is the server's CPU time (user and system) spent while the agents
	// connected: less sensitive to a busy machine than ConnectSeconds.
	ConnectCPUSeconds float64 `json:"connect_cpu_seconds"`
}

func (p *memoryPhase) perAgent(n int) {
	p.RSSPerAgent = (p.After.RSS - p.Before.RSS) / float64(n)
	p.HeapPerAgent = (p.After.HeapInuse - p.Before.HeapInuse) / float64(n)
	p.StackPerAgent = (p.After.StackInuse - p.Before.StackInuse) / float64(n)
}

// stormResult is the reconnect storm after SIGTERM and a restart on the same port and data.
// Times are from the SIGTERM unless said otherwise.
type stormResult struct {
	ShutdownSeconds              float64 `json:"shutdown_seconds"`
	ListeningSeconds             float64 `json:"listening_seconds"`
	HealthySeconds               float64 `json:"healthy_seconds"`
	AllBackSeconds               float64 `json:"all_back_seconds"`
	AllBackAfterListeningSeconds float64 `json:"all_back_after_listening_seconds"`
	// ServerCPUSeconds is the new server's CPU time from its start until all were back.
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	// The rest comes from the simulators: each agent's time from losing its stream to the
	// next Welcome.
	Reported    int       `json:"agents_reported"`
	P50         float64   `json:"reconnect_p50_seconds"`
	P90         float64   `json:"reconnect_p90_seconds"`
	P99         float64   `json:"reconnect_p99_seconds"`
	Max         float64   `json:"reconnect_max_seconds"`
	MaxAttempts int       `json:"max_attempts"`
	Histogram   []bucket  `json:"histogram"`
	times       []float64 // per agent, seconds
}

// bucket is one bar of the reconnect-time histogram: agents back within [From, To) seconds.
type bucket struct {
	From   float64 `json:"from_seconds"`
	To     float64 `json:"to_seconds"`
	Agents int     `json:"agents"`
}

// ratio is a/b, or 0 when the baseline b is not positive (too noisy to compare).
func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// finish computes ratios, percentiles and the histogram.
func (r *agentsResult) finish(width time.Duration) {
	r.RSSRatio = ratio(r.Hub.RSSPerAgent, r.Bare.RSSPerAgent)
	r.HeapRatio = ratio(r.Hub.HeapPerAgent, r.Bare.HeapPerAgent)
	r.StackRatio = ratio(r.Hub.StackPerAgent, r.Bare.StackPerAgent)
	r.HubGoroutines = (r.Hub.After.Goroutines - r.Hub.Before.Goroutines) / float64(r.Agents)
	r.BareGoroutines = (r.Bare.After.Goroutines - r.Bare.Before.Goroutines) / float64(r.Agents)
	r.MemoryWithinTarget = r.RSSRatio > 0 && r.RSSRatio <= targetMemoryRatio
	s := r.Storm
	if s == nil {
		return
	}
	r.StormWithinTarget = s.AllBackSeconds > 0 && s.AllBackSeconds <= targetStormSeconds
	t := sortedCopy(s.times)
	s.Reported = len(t)
	s.P50, s.P90, s.P99 = percentile(t, 50), percentile(t, 90), percentile(t, 99)
	if len(t) > 0 {
		s.Max = t[len(t)-1]
		w := width.Seconds()
		s.Histogram = make([]bucket, int(s.Max/w)+1)
		for i := range s.Histogram {
			s.Histogram[i] = bucket{From: float64(i) * w, To: float64(i+1) * w}
		}
		for _, x := range t {
			s.Histogram[int(x/w)].Agents++
		}
	}
}

func (r *sweepResult) finish() {
	r.MemoryWithinTarget = len(r.Sizes) > 0
	for _, s := range r.Sizes {
		r.MemoryWithinTarget = r.MemoryWithinTarget && s.MemoryWithinTarget
	}
}

func (r *sweepResult) print(w io.Writer) {
	fmt.Fprintf(w, "\nsortie-bench agents: simulated agents in child processes, one TCP connection each, heartbeat %gs\n\n", r.HeartbeatSeconds)
	const row = "%8s %10s %10s %7s %10s %10s %7s %12s  %s\n"
	fmt.Fprintf(w, "idle memory per agent (RSS and Go heap in use), sortie hub against a bare connect-go server\n")
	fmt.Fprintf(w, row, "agents", "hub RSS", "bare RSS", "ratio", "hub heap", "bare heap", "ratio", "goroutines", "")
	for _, s := range r.Sizes {
		verdict := ""
		if !s.MemoryWithinTarget {
			verdict = "RSS target MISSED"
		}
		fmt.Fprintf(w, row, fmt.Sprint(s.Agents), bytesIEC(s.Hub.RSSPerAgent), bytesIEC(s.Bare.RSSPerAgent), fmt.Sprintf("%.2f", s.RSSRatio),
			bytesIEC(s.Hub.HeapPerAgent), bytesIEC(s.Bare.HeapPerAgent), fmt.Sprintf("%.2f", s.HeapRatio),
			fmt.Sprintf("%.1f / %.1f", s.HubGoroutines, s.BareGoroutines), verdict)
	}
	fmt.Fprintf(w, "(target: RSS ratio <= %.2f; goroutines: hub / bare, per agent)\n", r.TargetMemoryRatio)
	if len(r.Sizes) > 0 {
		r.Sizes[len(r.Sizes)-1].print(w)
	}
}

func (r *agentsResult) print(w io.Writer) {
	fmt.Fprintf(w, "\n%d agents in %d simulator process(es):\n", r.Agents, r.Processes)
	const row = "%-32s %22s %22s %7s %8s\n"
	target := fmt.Sprintf("<= %.1f", targetMemoryRatio)
	fmt.Fprintf(w, row, "idle memory", "sortie hub", "bare connect-go", "ratio", "target")
	fmt.Fprintf(w, row, "  RSS per agent", bytesIEC(r.Hub.RSSPerAgent), bytesIEC(r.Bare.RSSPerAgent), fmt.Sprintf("%.2f", r.RSSRatio), target)
	fmt.Fprintf(w, row, "  Go heap in use per agent", bytesIEC(r.Hub.HeapPerAgent), bytesIEC(r.Bare.HeapPerAgent), fmt.Sprintf("%.2f", r.HeapRatio), "")
	fmt.Fprintf(w, row, "  goroutine stacks per agent", bytesIEC(r.Hub.StackPerAgent), bytesIEC(r.Bare.StackPerAgent), fmt.Sprintf("%.2f", r.StackRatio), "")
	fmt.Fprintf(w, row, "  goroutines per agent", fmt.Sprintf("%.1f", r.HubGoroutines), fmt.Sprintf("%.1f", r.BareGoroutines), "", "")
	fmt.Fprintf(w, row, "  RSS before -> with agents", bytesIEC(r.Hub.Before.RSS)+" -> "+bytesIEC(r.Hub.After.RSS),
		bytesIEC(r.Bare.Before.RSS)+" -> "+bytesIEC(r.Bare.After.RSS), "", "")
	fmt.Fprintf(w, row, "  heap before -> with agents", bytesIEC(r.Hub.Before.HeapInuse)+" -> "+bytesIEC(r.Hub.After.HeapInuse),
		bytesIEC(r.Bare.Before.HeapInuse)+" -> "+bytesIEC(r.Bare.After.HeapInuse), "", "")
	fmt.Fprintf(w, row, "  time to connect all", fmt.Sprintf("%.1fs", r.Hub.ConnectSeconds), fmt.Sprintf("%.1fs", r.Bare.ConnectSeconds), "", "")
	fmt.Fprintf(w, row, "  server CPU per agent connecting", fmt.Sprintf("%.2fms", 1000*r.Hub.ConnectCPUSeconds/float64(r.Agents)),
		fmt.Sprintf("%.2fms", 1000*r.Bare.ConnectCPUSeconds/float64(r.Agents)), fmt.Sprintf("%.2f", ratio(r.Hub.ConnectCPUSeconds, r.Bare.ConnectCPUSeconds)), "")
	fmt.Fprintln(w)

	s := r.Storm
	if s == nil {
		return
	}
	fmt.Fprintf(w, "%-40s %10s %8s\n", "reconnect storm (from SIGTERM)", "seconds", "target")
	fmt.Fprintf(w, "%-40s %10.2f\n", "  old server exited", s.ShutdownSeconds)
	fmt.Fprintf(w, "%-40s %10.2f\n", "  new server listening", s.ListeningSeconds)
	fmt.Fprintf(w, "%-40s %10.2f\n", "  new server answered /healthz", s.HealthySeconds)
	verdict := fmt.Sprintf("<= %d", targetStormSeconds)
	if !r.StormWithinTarget {
		verdict += " MISSED"
	}
	fmt.Fprintf(w, "%-40s %10.2f %8s\n", fmt.Sprintf("  all %d back (server's stream gauge)", r.Agents), s.AllBackSeconds, verdict)
	fmt.Fprintf(w, "%-40s %10.2f\n", "  all back, counted from listening", s.AllBackAfterListeningSeconds)
	fmt.Fprintf(w, "%-40s %10.2f\n", "  new server's CPU seconds until then", s.ServerCPUSeconds)
	fmt.Fprintf(w, "  each agent's time from losing its stream to the next Welcome (%d agents, up to %d attempts):\n"+
		"    p50 %.2fs  p90 %.2fs  p99 %.2fs  max %.2fs\n", s.Reported, s.MaxAttempts, s.P50, s.P90, s.P99, s.Max)
	peak := 0
	for _, b := range s.Histogram {
		peak = max(peak, b.Agents)
	}
	for _, b := range s.Histogram {
		bar := 0
		if peak > 0 {
			bar = (b.Agents*50 + peak - 1) / peak
		}
		fmt.Fprintf(w, "    %5.1f-%5.1fs %6d %s\n", b.From, b.To, b.Agents, strings.Repeat("#", bar))
	}
}

// bytesIEC formats a byte count (possibly negative or fractional) with a binary unit.
func bytesIEC(v float64) string {
	abs := math.Abs(v)
	switch {
	case abs >= 1<<30:
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	case abs >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case abs >= 1<<10:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", v)
	}
}
