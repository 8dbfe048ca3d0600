package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// agentsResult is the outcome of `sortie-bench agents`, as printed and as JSON.
type agentsResult struct {
	Benchmark          string      `json:"benchmark"`
	Agents             int         `json:"agents"`
	Processes          int         `json:"simulator_processes"`
	HeartbeatSeconds   float64     `json:"heartbeat_seconds"`
	Hub                memoryPhase `json:"hub"`
	Bare               memoryPhase `json:"bare"`
	RSSRatio           float64     `json:"rss_per_agent_ratio"`
	HeapRatio          float64     `json:"heap_per_agent_ratio"`
	StackRatio         float64     `json:"stack_per_agent_ratio"`
	TargetMemoryRatio  float64     `json:"target_memory_ratio"`
	MemoryWithinTarget bool        `json:"memory_within_target"` // RSS and heap ratios both
	StormWithinTarget  bool        `json:"storm_within_target"`
	Storm              stormResult `json:"reconnect_storm"`
	TargetStormSeconds float64     `json:"target_storm_seconds"`
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
	r.MemoryWithinTarget = r.RSSRatio > 0 && r.RSSRatio <= r.TargetMemoryRatio && r.HeapRatio > 0 && r.HeapRatio <= r.TargetMemoryRatio
	r.StormWithinTarget = r.Storm.AllBackSeconds > 0 && r.Storm.AllBackSeconds <= r.TargetStormSeconds
	s := &r.Storm
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

func (r *agentsResult) print(w io.Writer) {
	fmt.Fprintf(w, "\nsortie-bench agents: %d simulated agents in %d process(es), one TCP connection each, heartbeat %gs\n\n",
		r.Agents, r.Processes, r.HeartbeatSeconds)
	const row = "%-32s %22s %22s %7s %8s\n"
	fmt.Fprintf(w, row, "idle memory", "sortie hub", "bare connect-go", "ratio", "target")
	fmt.Fprintf(w, row, "  RSS per agent", bytesIEC(r.Hub.RSSPerAgent), bytesIEC(r.Bare.RSSPerAgent), fmt.Sprintf("%.2f", r.RSSRatio), "<= 1.5")
	fmt.Fprintf(w, row, "  Go heap in use per agent", bytesIEC(r.Hub.HeapPerAgent), bytesIEC(r.Bare.HeapPerAgent), fmt.Sprintf("%.2f", r.HeapRatio), "<= 1.5")
	fmt.Fprintf(w, row, "  goroutine stacks per agent", bytesIEC(r.Hub.StackPerAgent), bytesIEC(r.Bare.StackPerAgent), fmt.Sprintf("%.2f", r.StackRatio), "")
	fmt.Fprintf(w, row, "  goroutines per agent", fmt.Sprintf("%.1f", (r.Hub.After.Goroutines-r.Hub.Before.Goroutines)/float64(r.Agents)),
		fmt.Sprintf("%.1f", (r.Bare.After.Goroutines-r.Bare.Before.Goroutines)/float64(r.Agents)), "", "")
	fmt.Fprintf(w, row, "  RSS before -> with agents", bytesIEC(r.Hub.Before.RSS)+" -> "+bytesIEC(r.Hub.After.RSS),
		bytesIEC(r.Bare.Before.RSS)+" -> "+bytesIEC(r.Bare.After.RSS), "", "")
	fmt.Fprintf(w, row, "  heap before -> with agents", bytesIEC(r.Hub.Before.HeapInuse)+" -> "+bytesIEC(r.Hub.After.HeapInuse),
		bytesIEC(r.Bare.Before.HeapInuse)+" -> "+bytesIEC(r.Bare.After.HeapInuse), "", "")
	fmt.Fprintf(w, row, "  time to connect all", fmt.Sprintf("%.1fs", r.Hub.ConnectSeconds), fmt.Sprintf("%.1fs", r.Bare.ConnectSeconds), "", "")
	fmt.Fprintf(w, row, "  server CPU per agent connecting", fmt.Sprintf("%.2fms", 1000*r.Hub.ConnectCPUSeconds/float64(r.Agents)),
		fmt.Sprintf("%.2fms", 1000*r.Bare.ConnectCPUSeconds/float64(r.Agents)), fmt.Sprintf("%.2f", ratio(r.Hub.ConnectCPUSeconds, r.Bare.ConnectCPUSeconds)), "")
	fmt.Fprintln(w)

	s := r.Storm
	fmt.Fprintf(w, "%-40s %10s %8s\n", "reconnect storm (from SIGTERM)", "seconds", "target")
	fmt.Fprintf(w, "%-40s %10.2f\n", "  old server exited", s.ShutdownSeconds)
	fmt.Fprintf(w, "%-40s %10.2f\n", "  new server listening", s.ListeningSeconds)
	fmt.Fprintf(w, "%-40s %10.2f\n", "  new server answered /healthz", s.HealthySeconds)
	verdict := "<= 30"
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
