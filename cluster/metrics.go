package cluster

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ars-project/ars/fsm"
)

// metrics exposes Raft and membership state. Gauges are read at scrape
// time (a Collector), so they are never stale and cost nothing between
// scrapes.
type metrics struct {
	c             *Cluster
	leaderChanges prometheus.Counter
	applyLatency  *prometheus.HistogramVec
	applyErrors   *prometheus.CounterVec

	raftState   *prometheus.Desc
	term        *prometheus.Desc
	commitIndex *prometheus.Desc
	appliedIdx  *prometheus.Desc
	members     *prometheus.Desc
	voters      *prometheus.Desc
	lastContact *prometheus.Desc
	format      *prometheus.Desc
	diskFree    *prometheus.Desc
	diskHealthy *prometheus.Desc
	diskProbe   *prometheus.Desc
	// replicas and switchOpen describe the replicated state: the same on
	// every node that has applied the same log.
	replicas   *prometheus.Desc
	switchOpen *prometheus.Desc
	// formatRefused counts entries the leader refused because a server
	// does not read their format level yet.
	formatRefused prometheus.Counter
	// fastElections counts elections this node started because the
	// leader's Raft address refused connections (watchLeader).
	fastElections prometheus.Counter
}

func newMetrics(c *Cluster) *metrics {
	return &metrics{
		c: c,
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ars_raft_leadership_acquired_total",
			Help: "Times this node became Raft leader.",
		}),
		applyLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ars_apply_duration_seconds",
			Help:    "Time to commit a command, by path (local on the leader, forwarded from a follower, refused by a node whose data directory is unhealthy).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}, []string{"path"}),
		applyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ars_apply_errors_total",
			Help: "Commands that failed to commit or were rejected by the state machine, by path (local, forwarded, refused).",
		}, []string{"path"}),
		raftState:   prometheus.NewDesc("ars_raft_state", "Raft state of this node (1 for the current state).", []string{"state"}, nil),
		term:        prometheus.NewDesc("ars_raft_term", "Current Raft term.", nil, nil),
		commitIndex: prometheus.NewDesc("ars_raft_commit_index", "Raft commit index.", nil, nil),
		appliedIdx:  prometheus.NewDesc("ars_raft_applied_index", "Last index applied to the state machine.", nil, nil),
		members:     prometheus.NewDesc("ars_members", "Gossip members by status.", []string{"status"}, nil),
		voters:      prometheus.NewDesc("ars_raft_voters", "Voters in the Raft configuration.", nil, nil),
		lastContact: prometheus.NewDesc("ars_raft_last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader).", nil, nil),
		format: prometheus.NewDesc("ars_log_format_level", "Log format level read by this node (scope=node) and by every server of the Raft configuration (scope=cluster, the lowest).",
			[]string{"scope"}, nil),
		diskFree:    prometheus.NewDesc("ars_disk_free_bytes", "Bytes free to the node in its data directory at the last check.", nil, nil),
		diskHealthy: prometheus.NewDesc("ars_disk_healthy", "1 while the data directory passes its check (free space above the minimum, probe write and fsync succeed in time), else 0.", nil, nil),
		diskProbe:   prometheus.NewDesc("ars_disk_probe_seconds", "Duration of the last finished probe of the data directory (write, fsync and remove of a small file).", nil, nil),
		replicas: prometheus.NewDesc("ars_service_replicas", "Replicas of each service by role, as this node's copy of the replicated state has them.",
			[]string{"service", "role"}, nil),
		switchOpen: prometheus.NewDesc("ars_service_switch_open_seconds", "Seconds since the service's open switch was committed (0: no switch open); a switch stays open until its target is verified answering.",
			[]string{"service"}, nil),
		fastElections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ars_raft_fast_elections_total",
			Help: "Elections this node started at once because the leader's Raft address refused connections (its process gone).",
		}),
		formatRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ars_log_format_refused_total",
			Help: "Entries this node refused as leader because a server of the Raft configuration does not read their format level yet.",
		}),
	}
}

func (m *metrics) observeApply(path string, start time.Time, err error) {
	m.applyLatency.WithLabelValues(path).Observe(time.Since(start).Seconds())
	if err != nil {
		m.applyErrors.WithLabelValues(path).Inc()
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.leaderChanges.Describe(ch)
	m.applyLatency.Describe(ch)
	m.applyErrors.Describe(ch)
	m.formatRefused.Describe(ch)
	m.fastElections.Describe(ch)
	for _, d := range []*prometheus.Desc{m.raftState, m.term, m.commitIndex, m.appliedIdx, m.members, m.voters, m.lastContact, m.format, m.diskFree, m.diskHealthy, m.diskProbe, m.replicas, m.switchOpen} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.leaderChanges.Collect(ch)
	m.applyLatency.Collect(ch)
	m.applyErrors.Collect(ch)
	m.formatRefused.Collect(ch)
	m.fastElections.Collect(ch)
	if d, ok := m.c.Disk(); ok && !d.CheckedAt.IsZero() {
		if d.FreeKnown {
			ch <- prometheus.MustNewConstMetric(m.diskFree, prometheus.GaugeValue, float64(d.FreeBytes))
		}
		h := 0.0
		if d.Healthy {
			h = 1
		}
		ch <- prometheus.MustNewConstMetric(m.diskHealthy, prometheus.GaugeValue, h)
		if d.ProbeLatency > 0 {
			ch <- prometheus.MustNewConstMetric(m.diskProbe, prometheus.GaugeValue, d.ProbeLatency.Seconds())
		}
	}
	f := m.c.Format()
	ch <- prometheus.MustNewConstMetric(m.format, prometheus.GaugeValue, float64(f.Node), "node")
	ch <- prometheus.MustNewConstMetric(m.format, prometheus.GaugeValue, float64(f.Cluster), "cluster")
	r := m.c.raft
	state := r.State()
	for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if s == state {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(m.raftState, prometheus.GaugeValue, v, stateName(s))
	}
	ch <- prometheus.MustNewConstMetric(m.term, prometheus.GaugeValue, float64(r.CurrentTerm()))
	ch <- prometheus.MustNewConstMetric(m.commitIndex, prometheus.GaugeValue, float64(r.CommitIndex()))
	ch <- prometheus.MustNewConstMetric(m.appliedIdx, prometheus.GaugeValue, float64(r.AppliedIndex()))
	counts := map[string]int{"alive": 0, "suspect": 0, "dead": 0, "left": 0}
	for _, mi := range m.c.members.list() {
		counts[memberStatus(mi.State)]++
	}
	for status, n := range counts {
		ch <- prometheus.MustNewConstMetric(m.members, prometheus.GaugeValue, float64(n), status)
	}
	ch <- prometheus.MustNewConstMetric(m.voters, prometheus.GaugeValue, float64(m.c.voterCount()))
	lc := 0.0
	if state != raft.Leader {
		if t := r.LastContact(); !t.IsZero() {
			lc = time.Since(t).Seconds()
		}
	}
	ch <- prometheus.MustNewConstMetric(m.lastContact, prometheus.GaugeValue, lc)
	m.collectServices(ch, time.Now())
}

// serviceRoles are the roles ars_service_replicas reports, each service
// every one of them (0 included), so an alert can ask for a count.
var serviceRoles = []fsm.Role{fsm.RoleActive, fsm.RoleStandby, fsm.RoleSuspended, fsm.RoleQuarantined, fsm.RoleRecovering, fsm.RoleMaintenance}

// collectServices reports the replicated service state: replicas by role
// and how long an open switch has been open.
func (m *metrics) collectServices(ch chan<- prometheus.Metric, now time.Time) {
	for _, svc := range m.c.Services() {
		name := svc.Spec.Name
		count := map[fsm.Role]int{}
		for _, rs := range svc.Replicas {
			count[rs.Role]++
		}
		for _, role := range serviceRoles {
			ch <- prometheus.MustNewConstMetric(m.replicas, prometheus.GaugeValue, float64(count[role]), name, string(role))
		}
		open := 0.0
		if in := svc.Intent; in != nil && in.OpenedAt > 0 {
			open = max(0, now.Sub(time.Unix(0, in.OpenedAt)).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(m.switchOpen, prometheus.GaugeValue, open, name)
	}
}
