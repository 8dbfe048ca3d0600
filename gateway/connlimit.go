package gateway

import (
	"log/slog"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// LimitConnsPerIP returns ln with at most max connections open at once from one remote IP
// address (no limit when max <= 0), so one host cannot take every file descriptor the
// process may have. A connection over the limit is closed as soon as it is accepted,
// before a byte is read, logged at debug level and counted in
// sortie_http_connections_refused_total (registered with reg when not nil).
func LimitConnsPerIP(ln net.Listener, max int, log *slog.Logger, reg prometheus.Registerer) net.Listener {
	if max <= 0 {
		return ln
	}
	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "sortie_http_connections_refused_total",
		Help: "Connections closed at once because their address had as many open as the per-address cap allows."})
	if reg != nil {
		reg.MustRegister(refused)
	}
	return &limitListener{Listener: ln, max: max, open: map[string]int{}, refused: func(ip string) {
		refused.Inc()
		log.Debug("connection refused: too many open from one address", "ip", ip, "max", max)
	}}
}

type limitListener struct {
	net.Listener
	max     int
	refused func(ip string)

	mu   sync.Mutex // guards open
	open map[string]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr())
		l.mu.Lock()
		if l.open[ip] >= l.max {
			l.mu.Unlock()
			_ = c.Close()
			if l.refused != nil {
				l.refused(ip)
			}
			continue
		}
		l.open[ip]++
		l.mu.Unlock()
		return &limitedConn{Conn: c, release: func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.open[ip]--; l.open[ip] <= 0 {
				delete(l.open, ip)
			}
		}}, nil
	}
}

// limitedConn gives its slot back once, when it closes.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func remoteIP(a net.Addr) string {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
