package gateway_test

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sortie-dev/sortie/gateway"
)

func TestLimitConnsPerIP(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ln := gateway.LimitConnsPerIP(inner, 2, slog.New(slog.DiscardHandler), reg)
	refused := func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "sortie_http_connections_refused_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return -1
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	await := func() net.Conn {
		select {
		case c := <-accepted:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no connection accepted")
			return nil
		}
	}
	dial()
	first := await()
	dial()
	await()
	// The third from the same address is closed by the server before it sends anything.
	third := dial()
	buf := make([]byte, 1)
	_ = third.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := third.Read(buf); err == nil || n != 0 {
		t.Fatalf("the connection over the limit is open: read %d, %v", n, err)
	}
	if got := refused(); got != 1 {
		t.Errorf("sortie_http_connections_refused_total = %v, want 1", got)
	}
	select {
	case c := <-accepted:
		t.Fatalf("a connection over the limit was handed to the server: %v", c.RemoteAddr())
	default:
	}
	// Closing one gives its slot back: closing it twice gives back only one.
	first.Close()
	first.Close()
	dial()
	await()
	fourth := dial()
	_ = fourth.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := fourth.Read(buf); err == nil {
		t.Fatal("a double close gave back two slots")
	}
}
