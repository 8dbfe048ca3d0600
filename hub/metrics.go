package hub

import "github.com/prometheus/client_golang/prometheus"

// metrics are the hub's Prometheus metrics.
type metrics struct {
	streams        prometheus.Gauge
	closed         *prometheus.CounterVec
	commands       *prometheus.CounterVec
	commandSeconds prometheus.Histogram
	dropped        prometheus.Counter
	forwarded      *prometheus.CounterVec
	// subscriptionResyncs counts subscription inboxes that overflowed.
	subscriptionResyncs prometheus.Counter
	// refusedStreams counts streams refused by Config.MaxStreamsPerIP.
	refusedStreams prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sortie_hub_streams", Help: "Agent streams open on this replica.",
		}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sortie_hub_streams_closed_total",
			Help: "Agent streams closed on this replica, by reason (agent_left, token_expired, server_shutting_down, protocol_error, too_slow, heartbeat_timeout).",
		}, []string{"reason"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sortie_hub_commands_total",
			Help: "Commands sent through this replica, by outcome (succeeded, failed, not_connected, timeout, stream_lost, unavailable, canceled, error).",
		}, []string{"outcome"}),
		commandSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sortie_hub_command_duration_seconds",
			Help:    "Time from Send to its result or error.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sortie_hub_dropped_streams_total",
			Help: "Agent streams dropped because the agent did not keep up (Goodbye TOO_SLOW).",
		}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sortie_hub_forwarded_commands_total",
			Help: "Commands forwarded through Redis: sent to another replica, or received from one.",
		}, []string{"direction"}),
		subscriptionResyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sortie_hub_subscription_overflows_total",
			Help: "Inventory change subscriptions whose inbox was full: their changes were dropped for one resync.",
		}),
		refusedStreams: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sortie_hub_refused_streams_total",
			Help: "Agent streams refused because their address had as many open as the per-address cap allows.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.streams, m.closed, m.commands, m.commandSeconds, m.dropped, m.forwarded, m.subscriptionResyncs, m.refusedStreams)
	}
	return m
}
