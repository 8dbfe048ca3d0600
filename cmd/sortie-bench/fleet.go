package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// fleet is the simulate children of one phase, holding agents between them, and what they
// report.
type fleet struct {
	children []*child

	mu         sync.Mutex // guards connected, failures, lastErr and reconnects
	connected  []int      // per child, from its last status line
	failures   []int64    // per child, from its last status line
	lastErr    string     // the last error a child reported
	reconnects []event
}

// fleetSpec says what a fleet simulates.
type fleetSpec struct {
	mode            string
	url             string
	clientID        string
	secret          string
	agents          int
	perChild        int
	dialConcurrency int
}

// startFleet starts ceil(agents/perChild) simulate children of self, each with an equal share.
func startFleet(self, dir string, spec fleetSpec) (*fleet, error) {
	n := (spec.agents + spec.perChild - 1) / spec.perChild
	f := &fleet{connected: make([]int, n), failures: make([]int64, n)}
	first := 0
	for i := range n {
		count := spec.agents / n
		if i < spec.agents%n {
			count++
		}
		args := []string{"simulate", "-mode", spec.mode, "-url", spec.url,
			"-first", strconv.Itoa(first), "-count", strconv.Itoa(count),
			"-dial-concurrency", strconv.Itoa(spec.dialConcurrency)}
		var env []string
		if spec.mode == modeHub {
			args = append(args, "-client-id", spec.clientID)
			env = append(env, "SORTIE_BENCH_CLIENT_SECRET="+spec.secret)
		}
		c, err := startChild(childSpec{
			name: fmt.Sprintf("simulator %d (%s)", i, spec.mode), bin: self, args: args, env: env,
			logPath:   filepath.Join(dir, fmt.Sprintf("simulate-%s-%d.log", spec.mode, i)),
			onLine:    func(line []byte) { f.record(i, line) },
			withStdin: true,
		})
		if err != nil {
			f.stop()
			return nil, err
		}
		f.children = append(f.children, c)
		first += count
	}
	return f, nil
}

func (f *fleet) record(child int, line []byte) {
	var e event
	if json.Unmarshal(line, &e) != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch e.Event {
	case "status":
		f.connected[child] = e.Connected
		f.failures[child] = e.Failures
		if e.LastError != "" {
			f.lastErr = e.LastError
		}
	case "reconnect":
		f.reconnects = append(f.reconnects, e)
	}
}

// connectedTotal is how many agents the children last said hold a welcomed stream.
func (f *fleet) connectedTotal() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	total := 0
	for _, n := range f.connected {
		total += n
	}
	return total
}

// streamErrors describes the connection attempts and streams the children saw fail (other
// than by a Goodbye).
func (f *fleet) streamErrors() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var total int64
	for _, n := range f.failures {
		total += n
	}
	if total == 0 {
		return "no failed attempts"
	}
	return fmt.Sprintf("%d failed connection attempts or broken streams, the last: %s", total, f.lastErr)
}

// reconnectsSince returns the first reconnect of each agent among those of streams lost at
// or after t.
func (f *fleet) reconnectsSince(t time.Time) []event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []event
	seen := map[string]bool{}
	for _, e := range f.reconnects {
		if e.LostUnixMilli >= t.UnixMilli() && !seen[e.Agent] {
			seen[e.Agent] = true
			out = append(out, e)
		}
	}
	return out
}

// failed returns the failure of a child that exited, if any did.
func (f *fleet) failed() error {
	for _, c := range f.children {
		if c.exited() {
			return c.failure()
		}
	}
	return nil
}

// stop stops every child, in parallel.
func (f *fleet) stop() {
	var wg sync.WaitGroup
	for _, c := range f.children {
		wg.Go(func() { c.stop(15 * time.Second) })
	}
	wg.Wait()
}
