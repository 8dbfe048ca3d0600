package main

import (
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	text := `# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 3.301376e+06
sortie_hub_streams 42
sortie_hub_streams_closed_total{reason="agent left"} 3
sortie_hub_streams_closed_total{reason="too_slow"} 2 1700000000000
not_a_number NaNx
`
	got, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"go_memstats_heap_inuse_bytes":    3301376,
		"sortie_hub_streams":              42,
		"sortie_hub_streams_closed_total": 5,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseMetrics (-want +got):\n%s", diff)
	}
}

func TestPercentileAndMedian(t *testing.T) {
	t.Parallel()
	sorted := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{name: "p50 of ten", got: percentile(sorted, 50), want: 5},
		{name: "p90 of ten", got: percentile(sorted, 90), want: 9},
		{name: "p99 of ten is the max", got: percentile(sorted, 99), want: 10},
		{name: "p0 is the min", got: percentile(sorted, 0), want: 1},
		{name: "empty", got: percentile(nil, 50), want: 0},
		{name: "median of odd count", got: median([]float64{5, 1, 3}), want: 3},
		{name: "median of even count", got: median([]float64{4, 1, 3, 2}), want: 2.5},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestHistogram(t *testing.T) {
	t.Parallel()
	r := agentsResult{Storm: &stormResult{times: []float64{0.2, 1.5, 1.7, 3.9}}}
	r.finish(time.Second)
	want := []bucket{{From: 0, To: 1, Agents: 1}, {From: 1, To: 2, Agents: 2}, {From: 2, To: 3, Agents: 0}, {From: 3, To: 4, Agents: 1}}
	if diff := cmp.Diff(want, r.Storm.Histogram); diff != "" {
		t.Errorf("histogram (-want +got):\n%s", diff)
	}
	if r.Storm.Reported != 4 || r.Storm.Max != 3.9 {
		t.Errorf("reported %d, max %v; want 4, 3.9", r.Storm.Reported, r.Storm.Max)
	}
}

func TestSweepFlag(t *testing.T) {
	t.Parallel()
	cfg, err := parseAgentsConfig([]string{"-sweep", "1000, 5000,19000"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{1000, 5000, 19000}, cfg.Sweep); diff != "" {
		t.Errorf("sweep (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"1000,x", "5000,1000", "0", "1000,1000"} {
		if _, err := parseAgentsConfig([]string{"-sweep", bad}, io.Discard); err == nil || !strings.Contains(err.Error(), "-sweep") {
			t.Errorf("-sweep %s: %v, want an error naming -sweep", bad, err)
		}
	}
}

// TestSweepReport: the table has a row per size with its ratio, a missed target says so,
// and the plot is a PNG of the size asked for.
func TestSweepReport(t *testing.T) {
	t.Parallel()
	size := func(n int, hub, bare float64) agentsResult {
		r := agentsResult{Agents: n, Processes: 1}
		r.Hub.After = memory{RSS: hub * float64(n), HeapInuse: hub / 2 * float64(n), Goroutines: 3 * float64(n)}
		r.Bare.After = memory{RSS: bare * float64(n), HeapInuse: bare / 2 * float64(n), Goroutines: 3 * float64(n)}
		r.Hub.perAgent(n)
		r.Bare.perAgent(n)
		r.finish(time.Second)
		return r
	}
	res := sweepResult{Benchmark: "agents", HeartbeatSeconds: 20, TargetMemoryRatio: targetMemoryRatio,
		Sizes: []agentsResult{size(1000, 60<<10, 50<<10), size(5000, 55<<10, 50<<10), size(10000, 70<<10, 50<<10)}}
	res.finish()
	var out strings.Builder
	res.print(&out)
	for _, want := range []string{"    1000   60.0 KiB   50.0 KiB    1.20", "   10000   70.0 KiB   50.0 KiB    1.40   35.0 KiB   25.0 KiB    1.40    3.0 / 3.0  RSS target MISSED", "3.0 / 3.0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, out.String())
		}
	}
	if res.MemoryWithinTarget {
		t.Error("memory_within_target with a size over the target")
	}
	path := filepath.Join(t.TempDir(), "memory.png")
	if err := writePlot(res, path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the plot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 300 {
		t.Errorf("plot of %dx%d pixels, want a readable size", b.Dx(), b.Dy())
	}
	if err := writePlot(res, filepath.Join(t.TempDir(), "memory.svg")); err == nil {
		t.Error("writePlot to a .svg name: no error")
	}
}
