package vsphere

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the driver's Prometheus metrics. Every series carries the
// vCenter host as label "vcenter".
type Metrics struct {
	SessionsLive  *prometheus.GaugeVec     // live sessions held (0 or 1 per vCenter; transient ones in per-operation mode)
	Logins        *prometheus.CounterVec   // successful logins by kind: initial, relogin, per_operation
	Relogins      *prometheus.CounterVec   // transparent re-logins after the session was found gone
	LoginErrors   *prometheus.CounterVec   // failed logins
	Calls         *prometheus.HistogramVec // SOAP round-trip latency by method
	CallErrors    *prometheus.CounterVec   // SOAP round trips that failed, by method and kind (fault type, timeout, network)
	Ops           *prometheus.HistogramVec // driver operation latency (all attempts) by op and result
	KeepAlives    *prometheus.CounterVec   // keep-alive checks by result: ok, relogin, error
	WatchRebuilds *prometheus.CounterVec   // property-collector watch rebuilds
}

// NewMetrics creates the metrics and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "ars", "vsphere"
	m := &Metrics{
		SessionsLive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "sessions_live",
			Help: "vCenter sessions this node holds now (one while it leads; 0 otherwise)."}, []string{"vcenter"}),
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "logins_total",
			Help: "Successful vCenter logins by kind (initial, relogin, per_operation)."}, []string{"vcenter", "kind"}),
		Relogins: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "relogins_total",
			Help: "Transparent re-logins after vCenter dropped the session (expired, terminated)."}, []string{"vcenter"}),
		LoginErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "login_errors_total",
			Help: "Failed vCenter logins."}, []string{"vcenter"}),
		Calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "call_duration_seconds",
			Help:    "vCenter SOAP round-trip latency by method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"vcenter", "method"}),
		CallErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "call_errors_total",
			Help: "vCenter SOAP round trips that failed, by method and kind (vSphere fault type, timeout, network)."}, []string{"vcenter", "method", "kind"}),
		Ops: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "operation_duration_seconds",
			Help:    "Driver operations (attach, power-on, …) including retries, by result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"vcenter", "op", "result"}),
		KeepAlives: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "keepalives_total",
			Help: "Session keep-alive checks by result (ok, relogin, error)."}, []string{"vcenter", "result"}),
		WatchRebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "watch_rebuilds_total",
			Help: "Property-collector watch rebuilds (after a re-login, an error or a new replica)."}, []string{"vcenter"}),
	}
	if reg != nil {
		reg.MustRegister(m.SessionsLive, m.Logins, m.Relogins, m.LoginErrors, m.Calls, m.CallErrors, m.Ops, m.KeepAlives, m.WatchRebuilds)
	}
	return m
}
