package main

import (
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePipelinesConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		sizes      []int
		topologies []string
		err        string
	}{
		{name: "defaults", sizes: []int{100, 500, 1000}, topologies: []string{"single", "replicas"}},
		{name: "small default sizes drop zero and repeats", args: []string{"-pipelines", "3"}, sizes: []int{1, 3}, topologies: []string{"single", "replicas"}},
		{name: "explicit sizes sorted", args: []string{"-sizes", "50, 10,50", "-topologies", "replicas"}, sizes: []int{10, 50}, topologies: []string{"replicas"}},
		{name: "bad size", args: []string{"-sizes", "10,x"}, err: `-sizes: "x" is not a positive count`},
		{name: "zero size", args: []string{"-sizes", "0"}, err: `-sizes: "0" is not a positive count`},
		{name: "unknown topology", args: []string{"-topologies", "single,three"}, err: `unknown topology "three"`},
		{name: "no agents", args: []string{"-agents", "0"}, err: "must be positive"},
		{name: "poll too fast", args: []string{"-poll", "1ms"}, err: "-poll must be at least 10ms"},
		{name: "stray argument", args: []string{"extra"}, err: "unexpected arguments: extra"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parsePipelinesConfig(tt.args, io.Discard)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.sizes, c.Sizes); diff != "" {
				t.Errorf("sizes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.topologies, c.Topologies); diff != "" {
				t.Errorf("topologies (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPipelineRunFinish(t *testing.T) {
	t.Parallel()
	r := pipelineRun{
		Idle: memory{RSS: 100 << 20, HeapInuse: 40 << 20}, Active: memory{RSS: 110 << 20, HeapInuse: 45 << 20},
		ActiveWhenMeasured: 1024,
		startToPaused:      []float64{0.3, 0.1, 0.2}, changeToSucceeded: []float64{0.05},
	}
	r.finish()
	if r.RSSPerPipeline != 10<<10 || r.HeapPerPipeline != 5<<10 {
		t.Errorf("per pipeline: RSS %v heap %v, want 10 KiB and 5 KiB", r.RSSPerPipeline, r.HeapPerPipeline)
	}
	if want := (latencies{P50: 0.2, P99: 0.3, Max: 0.3}); r.StartToPaused != want {
		t.Errorf("start->paused %+v, want %+v", r.StartToPaused, want)
	}
	if want := (latencies{P50: 0.05, P99: 0.05, Max: 0.05}); r.ChangeToSucceeded != want {
		t.Errorf("change->succeeded %+v, want %+v", r.ChangeToSucceeded, want)
	}
	empty := pipelineRun{Active: memory{RSS: 1}}
	empty.finish()
	if empty.RSSPerPipeline != 0 {
		t.Errorf("with nothing active the memory per pipeline is %v, want 0 (not a division by zero)", empty.RSSPerPipeline)
	}
}
