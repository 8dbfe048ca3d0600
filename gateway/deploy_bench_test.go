package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/sortie-dev/sortie/gateway"
)

// BenchmarkGetPipeline measures GET /pipelines/{id} (token verification, store read, view)
// on a real loopback listener against a static Huma handler returning the same reply on the
// same kind of server, alternating rounds, and reports their ratio (target: >= 0.5).
func BenchmarkGetPipeline(b *testing.B) {
	ts := startServer(b, serverOptions{})
	tok := ts.adminToken(b)
	fakeDeployAgent(b, ts, ts.token(b, ts.admin.Admin.ClientID, ts.admin.Secret, "connect:agentHub"), "prod-west")
	body, err := json.Marshal(gated("bench"))
	if err != nil {
		b.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(authorized(b, "POST", ts.URL+"/pipelines/kubernetes", tok, body))
	if err != nil {
		b.Fatal(err)
	}
	var started struct {
		PipelineID string `json:"pipelineId"`
	}
	err = json.NewDecoder(resp.Body).Decode(&started)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusAccepted {
		b.Fatalf("start: %d %v", resp.StatusCode, err)
	}
	id := started.PipelineID
	reply := getOnce(b, ts.URL+"/pipelines/"+id, tok)
	var static gateway.Pipeline
	if err := json.Unmarshal(reply, &static); err != nil {
		b.Fatal(err)
	}

	// The baseline: the same reply from a handler that does nothing, through Huma and the
	// same server settings.
	mux := http.NewServeMux()
	api := humago.New(mux, huma.DefaultConfig("static", "1"))
	huma.Get(api, "/pipelines/{pipelineId}", func(context.Context, *struct {
		PipelineID string `path:"pipelineId"`
	}) (*struct{ Body gateway.Pipeline }, error) {
		return &struct{ Body gateway.Pipeline }{Body: static}, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- gateway.Serve(ctx, slog.New(slog.DiscardHandler), ln, mux, nil) }()
	b.Cleanup(func() { cancel(); <-served })

	request := func(addr string) []byte {
		return []byte("GET /pipelines/" + id + " HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + tok +
			"\r\nContent-Type: application/json\r\n\r\n")
	}
	load := func(addr string) func() error {
		req := request(addr)
		var conns sync.Map
		return func() error {
			c, err := takeLoadConn(&conns, addr)
			if err != nil {
				return err
			}
			defer conns.Store(c, c)
			return c.get(req)
		}
	}
	real, base := load(strings.TrimPrefix(ts.URL, "http://")), load(ln.Addr().String())
	if err := base(); err != nil {
		b.Fatal(err)
	}

	const rounds = 3
	perRound := max(b.N/rounds, 1)
	var realTime, baseTime time.Duration
	b.ResetTimer()
	for range rounds {
		baseTime += runParallel(b, perRound, base)
		realTime += runParallel(b, perRound, real)
	}
	b.StopTimer()

	n := float64(perRound * rounds)
	realRate, baseRate := n/realTime.Seconds(), n/baseTime.Seconds()
	ratio := realRate / baseRate
	b.ReportMetric(realRate, "get-pipeline/s")
	b.ReportMetric(baseRate, "static-huma/s")
	b.ReportMetric(ratio, "ratio")
	b.Logf("\n%-34s %14s\n%-34s %14.0f\n%-34s %14.0f\n%-34s %14.2f (target >= 0.5)",
		"GET /pipelines/{id} (n="+fmt.Sprint(int(n))+")", "per second",
		"sortie (token, store, view)", realRate, "static Huma handler", baseRate, "ratio", ratio)
	if *benchJSON != "" {
		data, _ := json.MarshalIndent(map[string]any{
			"benchmark": "get_pipeline", "n": int(n), "get_pipeline_per_second": realRate,
			"static_huma_per_second": baseRate, "ratio": ratio, "target_ratio": 0.5,
		}, "", "  ")
		if err := os.WriteFile(*benchJSON, append(data, '\n'), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// get writes a prepared GET and reads a 200 pipeline reply.
func (c *loadConn) get(request []byte) error {
	if _, err := c.conn.Write(request); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"application":"bench"`)) {
		return fmt.Errorf("get pipeline: status %d, %v", resp.StatusCode, err)
	}
	return nil
}

// authorized is a request with a bearer token and, for a body, Content-Type JSON.
func authorized(tb testing.TB, method, url, tok string, body []byte) *http.Request {
	tb.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// getOnce GETs url and wants 200.
func getOnce(tb testing.TB, url, tok string) []byte {
	tb.Helper()
	resp, err := http.DefaultClient.Do(authorized(tb, "GET", url, tok, nil))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		tb.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return data
}
