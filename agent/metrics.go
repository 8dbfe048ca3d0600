package agent

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's Prometheus metrics, all prefixed sortie_agent_.
type metrics struct {
	connected       prometheus.Gauge
	connects        *prometheus.CounterVec
	disconnects     *prometheus.CounterVec
	heartbeats      prometheus.Counter
	tokenRequests   *prometheus.CounterVec
	commands        *prometheus.CounterVec
	commandDuration *prometheus.HistogramVec
	inventoryMsgs   *prometheus.CounterVec
	watchEvents     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sortie_agent_connected", Help: "1 while the agent holds a welcomed stream to the hub.",
		}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sortie_agent_stream_connects_total", Help: "Stream attempts by result (welcomed or error).",
		}, []string{"result"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sortie_agent_stream_disconnects_total", Help: "Welcomed streams that ended, by reason.",
		}, []string{"reason"}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sortie_agent_heartbeats_sent_total", Help: "Heartbeats sent to the hub.",
		}),
		tokenRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sortie_agent_token_requests_total", Help: "Token endpoint requests by result.",
		}, []string{"result"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sortie_agent_commands_total", Help: "Commands executed, by action and outcome (succeeded, failed, duplicate).",
		}, []string{"action", "outcome"}),
		commandDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sortie_agent_command_duration_seconds", Help: "Time to execute a command, by action.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"action"}),
		inventoryMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sortie_agent_inventory_messages_total", Help: "Inventory messages sent, by kind (snapshot chunk or delta).",
		}, []string{"kind"}),
		watchEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sortie_agent_watch_events_total", Help: "ResourceEvents sent for watches.",
		}),
	}
	for _, c := range []prometheus.Collector{m.connected, m.connects, m.disconnects, m.heartbeats, m.tokenRequests,
		m.commands, m.commandDuration, m.inventoryMsgs, m.watchEvents} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("agent: register metrics: %w", err)
		}
	}
	return m, nil
}
