package probe

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the probe metrics of any number of Probers, labelled by
// service. It is a prometheus.Collector that the caller registers (nothing is
// registered globally); a nil *Metrics records nothing.
type Metrics struct {
	duration  *prometheus.HistogramVec
	results   *prometheus.CounterVec
	verdicts  *prometheus.CounterVec
	detection *prometheus.HistogramVec
	state     *prometheus.GaugeVec
	inFlight  *prometheus.GaugeVec
	skipped   *prometheus.CounterVec
}

// NewMetrics returns unregistered probe metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ars_probe_duration_seconds",
			Help:    "Probe latency, by service and outcome (ok: a valid answer; fail: anything else, timeouts included).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1},
		}, []string{"service", "outcome"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ars_probe_results_total",
			Help: "Probe results by service and reason (ok, timeout, network, truncated, rcode_<name>, question_mismatch, id_mismatch, malformed, unexpected_answer, missing_record).",
		}, []string{"service", "reason"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ars_probe_verdicts_total",
			Help: "Verdict transitions by service and new state (up, down).",
		}, []string{"service", "state"}),
		detection: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ars_probe_detection_seconds",
			Help:    "Time from the start of the first failed probe of an outage to the DOWN verdict.",
			Buckets: []float64{.05, .1, .15, .2, .25, .3, .4, .5, .75, 1, 1.5, 2, 3, 5},
		}, []string{"service"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ars_probe_state",
			Help: "Current verdict by service: 0 unknown, 1 up, 2 down.",
		}, []string{"service"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ars_probe_in_flight",
			Help: "Probes currently in flight, by service.",
		}, []string{"service"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ars_probe_skipped_total",
			Help: "Scheduled probes not started because the in-flight limit was reached, by service.",
		}, []string{"service"}),
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.duration, m.results, m.verdicts, m.detection, m.state, m.inFlight, m.skipped}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *Metrics) observeResult(service string, r Result) {
	if m == nil || r.Reason == ReasonCanceled {
		return
	}
	outcome := "fail"
	if r.OK {
		outcome = "ok"
	}
	m.duration.WithLabelValues(service, outcome).Observe(r.RTT.Seconds())
	m.results.WithLabelValues(service, r.Label()).Inc()
}

func (m *Metrics) observeTransition(service string, t Transition) {
	if m == nil {
		return
	}
	m.verdicts.WithLabelValues(service, t.To.String()).Inc()
	m.setState(service, t.To)
	if t.To == StateDown {
		m.detection.WithLabelValues(service).Observe(t.Detection.Seconds())
	}
}

func (m *Metrics) setState(service string, s State) {
	if m == nil {
		return
	}
	m.state.WithLabelValues(service).Set(float64(s))
}

func (m *Metrics) setInFlight(service string, n int) {
	if m == nil {
		return
	}
	m.inFlight.WithLabelValues(service).Set(float64(n))
}

func (m *Metrics) skip(service string) {
	if m == nil {
		return
	}
	m.skipped.WithLabelValues(service).Inc()
}

// forget drops a service's series when its Prober stops, so that a service
// that moved to another leader does not leave stale gauges behind.
func (m *Metrics) forget(service string) {
	if m == nil {
		return
	}
	m.state.DeleteLabelValues(service)
	m.inFlight.DeleteLabelValues(service)
}

var _ prometheus.Collector = (*Metrics)(nil)
