package gateway_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

var benchJSON = flag.String("benchjson", "", "write benchmark results as JSON to this file")

// tokenTargetRatio is what POST /oauth/token should reach of raw signing (issue 9).
const tokenTargetRatio = 0.7

// BenchmarkTokenIssuance measures tokens issued per second through POST /oauth/token on a
// real loopback listener against raw go-jose ES256 signing of the same claims, both measured
// in this run and in rounds that alternate, and reports their ratio (target: >= 0.7).
//
// Profile notes (go test ./gateway -run '^$' -bench TokenIssuance -benchtime 20000x
// -cpuprofile cpu.out, then go tool pprof -top -cum; 1 December 2026, 2 cores shared with
// other work, load average about 20, so the shares matter rather than the seconds). Shares
// of all CPU samples, the raw baseline and the load generator included:
//
//	before (Huma route, go-jose signer, store read per request)   4.34 s of samples
//	  net/http conn.serve (the whole server side)          56.0%
//	    huma.Register wrapper                              44.0%  (Huma itself: 7.1%)
//	    identity Service.token                             35.7%
//	      Service.Sign                                     28.3%
//	        crypto/ecdsa.Sign (the signature)              18.0%
//	        go-jose header marshal, serialize, claims      10.3%
//	      boltstore LookupCredential + JSON decode          5.1%
//	  raw baseline (go-jose jwt.Signed...Serialize)        27.2%
//	  load generator exchange                               6.0%
//	  syscalls 11.5%, mallocgc 17.1%, GC workers 6.9%
//	after                                                         3.49 s of samples
//	  net/http conn.serve                                  44.1%
//	    serveToken (no Huma)                               31.2%
//	      identity signToken                               24.9%
//	        crypto/ecdsa.Sign                              24.1%
//	      the handler outside signToken                     6.3%
//	  raw baseline                                         36.7%
//	  load generator exchange                              10.6%
//	  syscalls 10.9%, mallocgc 20.3% (most of it in ecdsa), GC workers 4.3%
//
// The server's work beyond the signature fell from 2.1 to 0.8 times the signature (conn.serve
// less crypto/ecdsa.Sign: 1.65 s to 0.70 s of samples for the same 20,000 requests); what is
// left is net/http reading the request and writing the reply (the two syscalls alone are 5%).
// allocs/op (server, baseline and load generator together) fell from 454 to 313.
func BenchmarkTokenIssuance(b *testing.B) {
	ts := startServer(b, serverOptions{})
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {ts.admin.Admin.ClientID}, "client_secret": {ts.admin.Secret}}.Encode()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	// The claims of a real token are what the baseline signs.
	var claims map[string]any
	payload := strings.Split(ts.adminToken(b), ".")[1]
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	if err := json.Unmarshal(raw, &claims); err != nil {
		b.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "bench"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		b.Fatal(err)
	}

	// Each load goroutine keeps one HTTP/1.1 connection and writes a prepared request, as a
	// load generator like wrk does, so the run measures the server rather than the Go HTTP
	// client sharing its two cores. net/http's client checks the exchange once first.
	if err := issueWithClient(client, ts.URL, form); err != nil {
		b.Fatal(err)
	}
	request := []byte("POST /oauth/token HTTP/1.1\r\nHost: " + strings.TrimPrefix(ts.URL, "http://") +
		"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " + fmt.Sprint(len(form)) + "\r\n\r\n" + form)
	var conns sync.Map // idle *loadConn -> itself
	issueHTTP := func() error {
		c, err := takeLoadConn(&conns, strings.TrimPrefix(ts.URL, "http://"))
		if err != nil {
			return err
		}
		defer conns.Store(c, c)
		return c.exchange(request)
	}
	signRaw := func() error {
		_, err := jwt.Signed(signer).Claims(claims).Serialize()
		return err
	}

	const rounds = 3
	perRound := max(b.N/rounds, 1)
	var httpTime, rawTime, httpCPU, rawCPU time.Duration
	b.ResetTimer()
	for range rounds {
		wall, cpu := runParallelCPU(b, perRound, signRaw)
		rawTime, rawCPU = rawTime+wall, rawCPU+cpu
		wall, cpu = runParallelCPU(b, perRound, issueHTTP)
		httpTime, httpCPU = httpTime+wall, httpCPU+cpu
	}
	b.StopTimer()

	n := float64(perRound * rounds)
	httpRate, rawRate := n/httpTime.Seconds(), n/rawTime.Seconds()
	ratio := httpRate / rawRate
	// On a machine shared with other work the wall-clock ratio swings with whatever else
	// runs; the process's own CPU time per token (user and system, both sides of the loopback
	// included) barely does, so it is reported beside it.
	cpuRatio := rawCPU.Seconds() / httpCPU.Seconds()
	b.ReportMetric(httpRate, "http-tokens/s")
	b.ReportMetric(rawRate, "raw-sign/s")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(cpuRatio, "cpu-ratio")
	b.Logf("\n%-34s %14s %14s\n%-34s %14.0f %14.1f\n%-34s %14.0f %14.1f\n%-34s %14.2f %14.2f (target >= %.1f)",
		"token issuance (n="+fmt.Sprint(int(n))+")", "per second", "CPU us/token",
		"POST /oauth/token over HTTP", httpRate, httpCPU.Seconds()/n*1e6,
		"raw go-jose ES256 signing", rawRate, rawCPU.Seconds()/n*1e6,
		"ratio (raw = 1)", ratio, cpuRatio, tokenTargetRatio)
	if *benchJSON != "" {
		data, _ := json.MarshalIndent(map[string]any{
			"benchmark": "token_issuance", "n": int(n), "http_tokens_per_second": httpRate,
			"raw_sign_per_second": rawRate, "ratio": ratio, "target_ratio": tokenTargetRatio,
			"http_cpu_us_per_token": httpCPU.Seconds() / n * 1e6, "raw_cpu_us_per_token": rawCPU.Seconds() / n * 1e6,
			"cpu_ratio": cpuRatio,
		}, "", "  ")
		if err := os.WriteFile(*benchJSON, append(data, '\n'), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

func issueWithClient(client *http.Client, baseURL, form string) error {
	resp, err := client.Post(baseURL+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.AccessToken == "" {
		return fmt.Errorf("token: status %d, %v", resp.StatusCode, err)
	}
	return nil
}

// loadConn is one keep-alive HTTP/1.1 connection of the load generator.
type loadConn struct {
	conn net.Conn
	r    *bufio.Reader
}

// takeLoadConn takes an idle connection from the pool, or dials a new one.
func takeLoadConn(pool *sync.Map, addr string) (*loadConn, error) {
	var c *loadConn
	pool.Range(func(k, _ any) bool {
		if _, loaded := pool.LoadAndDelete(k); loaded {
			c = k.(*loadConn)
			return false
		}
		return true
	})
	if c != nil {
		return c, nil
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &loadConn{conn: conn, r: bufio.NewReaderSize(conn, 8192)}, nil
}

// exchange writes a prepared request and reads a 200 response carrying an access token.
func (c *loadConn) exchange(request []byte) error {
	if _, err := c.conn.Write(request); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"access_token":"ey`)) {
		return fmt.Errorf("token: status %d, %v", resp.StatusCode, err)
	}
	return nil
}

// runParallelCPU is runParallel that also returns the CPU time the process spent meanwhile.
func runParallelCPU(b *testing.B, n int, op func() error) (wall, cpu time.Duration) {
	b.Helper()
	before := processCPU(b)
	wall = runParallel(b, n, op)
	return wall, processCPU(b) - before
}

// processCPU is the user and system CPU time of this process so far.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runParallel runs op n times on GOMAXPROCS*4 goroutines and returns the wall time.
func runParallel(b *testing.B, n int, op func() error) time.Duration {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for range runtime.GOMAXPROCS(0) * 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := op(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	if err, _ := firstErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	return d
}
