package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// memory is what a server process uses, in bytes: resident set size, Go heap in use, and
// goroutine stacks in use (not part of the heap, but of the RSS).
type memory struct {
	RSS        float64 `json:"rss_bytes"`
	HeapInuse  float64 `json:"heap_inuse_bytes"`
	StackInuse float64 `json:"stack_inuse_bytes"`
	Goroutines float64 `json:"goroutines"`
}

// memorySamples is how many samples, memorySampleEvery apart, make one measurement.
const (
	memorySamples     = 5
	memorySampleEvery = 400 * time.Millisecond
)

// measureMemory samples a server's memory a few times and returns the median of each value:
// the Go heap in use moves with every collection, and one sample can catch a peak.
func measureMemory(ctx context.Context, pid int, baseURL string) (memory, error) {
	var rss, heap, stack, goroutines []float64
	for i := range memorySamples {
		if i > 0 {
			select {
			case <-ctx.Done():
				return memory{}, ctx.Err()
			case <-time.After(memorySampleEvery):
			}
		}
		r, err := processRSS(pid)
		if err != nil {
			return memory{}, err
		}
		m, err := scrapeMetrics(ctx, baseURL)
		if err != nil {
			return memory{}, err
		}
		h, ok := m["go_memstats_heap_inuse_bytes"]
		if !ok {
			return memory{}, fmt.Errorf("%s/metrics has no go_memstats_heap_inuse_bytes", baseURL)
		}
		rss, heap = append(rss, r), append(heap, h)
		stack, goroutines = append(stack, m["go_memstats_stack_inuse_bytes"]), append(goroutines, m["go_goroutines"])
	}
	return memory{RSS: median(rss), HeapInuse: median(heap), StackInuse: median(stack), Goroutines: median(goroutines)}, nil
}

// processRSS reads VmRSS of a process from /proc.
func processRSS(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read RSS (Linux only): %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest) // "12345 kB"
			if len(fields) == 2 && fields[1] == "kB" {
				kb, err := strconv.ParseFloat(fields[0], 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// scrapeMetrics reads a Prometheus text exposition and returns each metric name with the
// sum of its series.
func scrapeMetrics(ctx context.Context, baseURL string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape metrics: status %d", resp.StatusCode)
	}
	return parseMetrics(resp.Body)
}

var metricsClient = &http.Client{Timeout: 10 * time.Second}

func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		// name{labels} value [timestamp]; label values may hold spaces, so cut at the brace.
		name, rest := line, ""
		if i := strings.IndexByte(line, '{'); i >= 0 {
			name = line[:i]
			if j := strings.LastIndexByte(line, '}'); j > i {
				rest = line[j+1:]
			}
		} else if i := strings.IndexByte(line, ' '); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}

// median returns the median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile returns the p-th percentile (0..100) of sorted xs, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// clockTicks is the unit of CPU times in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const clockTicks = 100

// processCPU returns the CPU time (user and system) a process has used so far, in seconds.
func processCPU(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time (Linux only): %w", err)
	}
	// The command name in parentheses may hold spaces; the fields after it are plain.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is the state (field 3); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return (utime + stime) / clockTicks, nil
}
