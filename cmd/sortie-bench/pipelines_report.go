package main

import (
	"fmt"
	"io"
)

// pipelinesResult is the outcome of `sortie-bench pipelines`, as printed and as JSON.
type pipelinesResult struct {
	Benchmark     string        `json:"benchmark"`
	Agents        int           `json:"agents"`
	Canary        string        `json:"canary"`
	PollSeconds   float64       `json:"poll_seconds"`
	ResyncSeconds float64       `json:"pipeline_resync_seconds"`
	WallSeconds   float64       `json:"wall_seconds"`
	Runs          []pipelineRun `json:"runs"`
}

// pipelineRun is one size on one topology. Latencies are in seconds.
type pipelineRun struct {
	Topology  string `json:"topology"`
	Replicas  int    `json:"replicas"`
	Pipelines int    `json:"pipelines"`
	Succeeded int    `json:"succeeded"`
	// FirstVersionsSeconds: from the first start of the first versions until all succeeded.
	FirstVersionsSeconds float64 `json:"first_versions_seconds"`
	// StartRequestsSeconds: sending all second-version starts until the last 202.
	StartRequestsSeconds float64 `json:"start_requests_seconds"`
	// AllPausedSeconds: from the first start until the last pipeline showed PAUSED.
	AllPausedSeconds float64 `json:"all_paused_seconds"`
	// FinishSeconds: from the tick that ended every timed pause until the last SUCCEEDED.
	FinishSeconds float64 `json:"finish_seconds"`
	// StartToPaused: from sending each pipeline's start until its status was PAUSED (the
	// engine applied the Rollout through the agent, and the Rollout's reported pause reached
	// the pipeline's state), as recorded in the pipeline's event history.
	StartToPaused latencies `json:"start_to_paused_seconds"`
	// ChangeToSucceeded: the tick that changed every Rollout (its timed pause ended, it went
	// to 100% and healthy) until the pipeline's status was SUCCEEDED, recorded the same way.
	ChangeToSucceeded latencies `json:"rollout_change_to_succeeded_seconds"`
	// FromHistory counts the pipelines whose history held both transitions; the rest are
	// timed by the status poll that first showed them (up to one poll period late).
	FromHistory int `json:"latencies_from_history"`
	// Idle is the servers' memory (summed over replicas) with every first version finished
	// and nothing active; Active with the second versions held at their pause.
	Idle               memory  `json:"idle"`
	Active             memory  `json:"active"`
	ActiveWhenMeasured int     `json:"active_when_measured"`
	RSSPerPipeline     float64 `json:"rss_bytes_per_active_pipeline"`
	HeapPerPipeline    float64 `json:"heap_inuse_bytes_per_active_pipeline"`

	startToPaused, changeToSucceeded []float64
}

// latencies summarizes a distribution in seconds.
type latencies struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func summarize(xs []float64) latencies {
	s := sortedCopy(xs)
	if len(s) == 0 {
		return latencies{}
	}
	return latencies{P50: percentile(s, 50), P99: percentile(s, 99), Max: s[len(s)-1]}
}

func (r *pipelineRun) finish() {
	r.StartToPaused, r.ChangeToSucceeded = summarize(r.startToPaused), summarize(r.changeToSucceeded)
	if n := float64(r.ActiveWhenMeasured); n > 0 {
		r.RSSPerPipeline = (r.Active.RSS - r.Idle.RSS) / n
		r.HeapPerPipeline = (r.Active.HeapInuse - r.Idle.HeapInuse) / n
	}
}

func (r *pipelinesResult) print(w io.Writer) {
	fmt.Fprintf(w, "\nsortie-bench pipelines: canary [%s] over %d simulated agents in one tenant, resync %gs\n\n",
		r.Canary, r.Agents, r.ResyncSeconds)
	const row = "%-10s %5s %9s | %7s %7s %7s %7s | %7s %7s | %7s %7s | %9s %9s\n"
	fmt.Fprintf(w, row, "", "", "", "wall s", "", "", "", "start->", "paused", "change->", "done", "per active", "pipeline")
	fmt.Fprintf(w, row, "topology", "N", "succeeded", "v1", "starts", "paused", "done", "p50", "p99", "p50", "p99", "RSS", "heap")
	for _, x := range r.Runs {
		fmt.Fprintf(w, row, fmt.Sprintf("%s/%d", x.Topology, x.Replicas), fmt.Sprint(x.Pipelines), fmt.Sprint(x.Succeeded),
			fmt.Sprintf("%.1f", x.FirstVersionsSeconds), fmt.Sprintf("%.1f", x.StartRequestsSeconds),
			fmt.Sprintf("%.1f", x.AllPausedSeconds), fmt.Sprintf("%.1f", x.FinishSeconds),
			ms(x.StartToPaused.P50), ms(x.StartToPaused.P99), ms(x.ChangeToSucceeded.P50), ms(x.ChangeToSucceeded.P99),
			bytesIEC(x.RSSPerPipeline), bytesIEC(x.HeapPerPipeline))
	}
	fmt.Fprintf(w, "\n"+
		"wall: v1 = first versions, first start to all SUCCEEDED; starts = sending the N canary starts until the last 202;\n"+
		"      paused = first start to the last PAUSED; done = the tick ending every pause to the last SUCCEEDED.\n"+
		"start->paused: sending a start until the engine recorded its target PAUSED at the timed pause.\n"+
		"change->done: the tick that ends every Rollout's pause until the engine recorded the pipeline SUCCEEDED.\n"+
		"memory: the servers' RSS and Go heap in use (summed) with N held at their pause, minus with none active, over N.\n"+
		"Total wall time %.1fs.\n", r.WallSeconds)
}

func ms(s float64) string { return fmt.Sprintf("%.0fms", 1000*s) }
