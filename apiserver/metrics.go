package apiserver

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// serverMetrics are the API's request metrics; all methods are no-ops when
// no Registerer was configured.
type serverMetrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	forwarded *prometheus.CounterVec
	authFail  *prometheus.CounterVec
	alerts    *prometheus.CounterVec
}

func newServerMetrics(reg prometheus.Registerer) (*serverMetrics, error) {
	m := &serverMetrics{}
	if reg == nil {
		return m, nil
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ars_http_requests_total",
		Help: "API requests by route pattern and HTTP status code.",
	}, []string{"route", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ars_http_request_duration_seconds",
		Help:    "API request handling time by route pattern.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route"})
	m.forwarded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ars_http_forwarded_total",
		Help: "Leader-only API requests this follower forwarded to the leader, by route.",
	}, []string{"route"})
	m.authFail = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ars_http_auth_failures_total",
		Help: "API requests rejected by authentication (unauthenticated) or authorization (forbidden).",
	}, []string{"reason"})
	m.alerts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ars_alerts_total",
		Help: "Alerts posted to this node as leader, by kind and result (committed, duplicate; refused: rate_limited, ledger_full).",
	}, []string{"kind", "result"})
	var err error
	if m.alerts, err = register(reg, m.alerts); err != nil {
		return nil, err
	}
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.forwarded, err = register(reg, m.forwarded); err != nil {
		return nil, err
	}
	if m.authFail, err = register(reg, m.authFail); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the identical collector registered
// before (a second server on the same registry shares the series).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		var zero C
		return zero, fmt.Errorf("transport: registering metrics: %w", err)
	}
	return c, nil
}

func (m *serverMetrics) observe(route, code string, forwarded bool, d time.Duration) {
	if m.requests == nil {
		return
	}
	m.requests.WithLabelValues(route, code).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
	if forwarded {
		m.forwarded.WithLabelValues(route).Inc()
	}
}

func (m *serverMetrics) authFailure(reason string) {
	if m.authFail == nil {
		return
	}
	m.authFail.WithLabelValues(reason).Inc()
}

func (m *serverMetrics) alert(kind, result string) {
	if m.alerts == nil {
		return
	}
	m.alerts.WithLabelValues(kind, result).Inc()
}
