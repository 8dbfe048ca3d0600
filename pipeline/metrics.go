package pipeline

import "github.com/prometheus/client_golang/prometheus"

// metrics are the engine's sortie_pipeline_* metrics.
type metrics struct {
	started          prometheus.Counter
	finished         *prometheus.CounterVec
	held             prometheus.Gauge
	reconcileSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		started: prometheus.NewCounter(prometheus.CounterOpts{Name: "sortie_pipelines_started_total",
			Help: "Pipelines stored by this replica."}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sortie_pipelines_finished_total",
			Help: "Pipelines this replica saw finish, by final status."}, []string{"status"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sortie_pipelines_held",
			Help: "Active pipelines whose lease this replica holds."}),
		reconcileSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sortie_pipeline_reconcile_seconds",
			Help: "Time of one reconcile pass.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
	}
	if reg != nil {
		reg.MustRegister(m.started, m.finished, m.held, m.reconcileSeconds)
	}
	return m
}
