package docker

import "github.com/prometheus/client_golang/prometheus"

// metrics are the driver's Prometheus metrics. Every series carries the
// Docker host's configured name as label "host".
type metrics struct {
	calls         *prometheus.HistogramVec // Engine API round trips by method
	callErrors    *prometheus.CounterVec   // failed round trips by method and kind
	ops           *prometheus.HistogramVec // driver operations (all attempts) by op and result
	watchRestarts *prometheus.CounterVec   // event-stream subscriptions after an error
	events        *prometheus.CounterVec   // engine events that concerned a watched replica
	stale         *prometheus.CounterVec   // containers renamed aside because the engine could not remove them
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "ars", "docker"
	m := &metrics{
		calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "call_duration_seconds",
			Help:    "Docker Engine API round-trip latency by method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"host", "method"}),
		callErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "call_errors_total",
			Help: "Docker Engine API round trips that failed, by method and kind (timeout, unreachable, not_found, conflict, invalid, denied, engine)."}, []string{"host", "method", "kind"}),
		ops: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "operation_duration_seconds",
			Help:    "Driver operations (attach, power-on, …) including retries, by result.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"host", "op", "result"}),
		watchRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "watch_restarts_total",
			Help: "Event-stream subscriptions made again after the stream failed (each one tells watchers to resync)."}, []string{"host"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "events_total",
			Help: "Engine events that concerned a watched replica, by type (container, network)."}, []string{"host", "type"}),
		stale: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "containers_renamed_aside_total",
			Help: "Replica containers the engine could not remove (a leaked root filesystem mount), renamed aside so the replica could be created again; the host needs attention."}, []string{"host"}),
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.callErrors, m.ops, m.watchRestarts, m.events, m.stale)
	}
	return m
}
