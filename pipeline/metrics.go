package pipeline

import "github.com/prometheus/client_golang/prometheus"

// metrics are the engine's sortie_pipeline_* metrics.
type metrics struct {
	started          prometheus.Counter
	finished         *prometheus.CounterVec
	held             prometheus.Gauge
	reconcileSeconds prometheus.Histogram
	hintsReceived    prometheus.Counter
	hintsLost        prometheus.Counter
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
		hintsReceived: prometheus.NewCounter(prometheus.CounterOpts{Name: "sortie_pipeline_wakeups_received_total",
			Help: "Wake-up hints from other replicas for pipelines this replica drives."}),
		hintsLost: prometheus.NewCounter(prometheus.CounterOpts{Name: "sortie_pipeline_wakeups_unpublished_total",
			Help: "Wake-up hints this replica could not publish to the others (the holder's resync catches up)."}),
	}
	if reg != nil {
		reg.MustRegister(m.started, m.finished, m.held, m.reconcileSeconds, m.hintsReceived, m.hintsLost)
	}
	return m
}
