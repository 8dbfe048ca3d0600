package main

import (
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
	r := agentsResult{Storm: stormResult{times: []float64{0.2, 1.5, 1.7, 3.9}}}
	r.finish(time.Second)
	want := []bucket{{From: 0, To: 1, Agents: 1}, {From: 1, To: 2, Agents: 2}, {From: 2, To: 3, Agents: 0}, {From: 3, To: 4, Agents: 1}}
	if diff := cmp.Diff(want, r.Storm.Histogram); diff != "" {
		t.Errorf("histogram (-want +got):\n%s", diff)
	}
	if r.Storm.Reported != 4 || r.Storm.Max != 3.9 {
		t.Errorf("reported %d, max %v; want 4, 3.9", r.Storm.Reported, r.Storm.Max)
	}
}
