package notify

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the notifier's Prometheus metrics, every series labelled by
// the sink's name ("sink").
type Metrics struct {
	Delivered      *prometheus.CounterVec // events a sink accepted
	FailedAttempts *prometheus.CounterVec // delivery attempts that failed (each retry counts)
	Failed         *prometheus.CounterVec // events given up after the last attempt
	Dropped        *prometheus.CounterVec // events dropped because the sink's queue was full
	QueueLength    *prometheus.GaugeVec   // events waiting in the sink's queue
	Cursor         *prometheus.GaugeVec   // the last cursor this node recorded for the sink
}

// NewMetrics creates the metrics and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "ars", "notify"
	m := &Metrics{
		Delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "delivered_total",
			Help: "Events a notification sink accepted (the executable exited 0, the webhook answered 2xx)."}, []string{"sink"}),
		FailedAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "failed_attempts_total",
			Help: "Delivery attempts that failed (a non-zero exit, a timeout, a non-2xx answer, no answer); every retry counts."}, []string{"sink"}),
		Failed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "failed_total",
			Help: "Events given up after the sink's last attempt."}, []string{"sink"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dropped_total",
			Help: "Events dropped because the sink's queue was full."}, []string{"sink"}),
		QueueLength: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "queue_length",
			Help: "Events waiting in the sink's queue on this node (0 on a follower)."}, []string{"sink"}),
		Cursor: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "cursor_index",
			Help: "The last cursor (log index) this node committed for the sink while leading."}, []string{"sink"}),
	}
	if reg != nil {
		reg.MustRegister(m.Delivered, m.FailedAttempts, m.Failed, m.Dropped, m.QueueLength, m.Cursor)
	}
	return m
}
