package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
)

// What the scale benchmark (ars-lab scale) measures on a lab of many
// services (Config.ServiceAddrs): every service settled, DoS attacks on
// any service's active replica, the Raft log and snapshot, and the
// takeover of a new leader after kill -9 of the old one.

// ServiceNames lists the lab's services: Config.Service first, then
// the further ones, sorted.
func (l *Lab) ServiceNames() []string { return l.cfg.serviceNames() }

// services reads every service from the leader (any node without one).
func (l *Lab) services(ctx context.Context) ([]fsm.Service, error) {
	var out []fsm.Service
	read := func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = c.Services(ctx)
		return err
	}
	if ld, err := l.Leader(ctx); err == nil && ld != "" {
		if c, err := l.Client(ld, "reader"); err == nil {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = read(cctx, c)
			cancel()
			c.Close()
			if err == nil {
				return out, nil
			}
		}
	}
	if err := l.anyNode(ctx, "reader", 5*time.Second, read); err != nil {
		return nil, fmt.Errorf("lab: no node listed the services: %w", err)
	}
	return out, nil
}

// SettleAll waits (until ctx ends) until every service of names is
// settled: no switch open, its active replica linked, its standby running
// and answering, its last switch at least dwell ago. It returns the
// services as last read.
func (l *Lab) SettleAll(ctx context.Context, names []string, dwell time.Duration) (map[string]fsm.Service, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		by, why := map[string]fsm.Service{}, ""
		all, err := l.services(ctx)
		if err != nil {
			why = err.Error()
		}
		for _, s := range all {
			by[s.Spec.Name] = s
		}
		for _, n := range names {
			if why != "" {
				break
			}
			s, ok := by[n]
			if !ok {
				why = "service " + n + " is not applied"
			} else if w := l.unsettled(s, dwell); w != "" {
				why = "service " + n + ": " + w
			}
		}
		if why == "" {
			return by, nil
		}
		select {
		case <-ctx.Done():
			return by, fmt.Errorf("lab: the services did not settle (%s): %w", why, ctx.Err())
		case <-tick.C:
		}
	}
}

// ServiceAttack is a DoS on a service's active replica.
type ServiceAttack struct {
	Service, Replica string
	Generation       uint64 // the service's generation before the attack
	At               time.Time
}

// DoSActive wedges the active replica of s (as read by SettleAll).
func (l *Lab) DoSActive(s fsm.Service) (ServiceAttack, error) {
	a, ok := s.Active()
	if !ok {
		return ServiceAttack{}, fmt.Errorf("lab: service %s has no active replica", s.Spec.Name)
	}
	at := ServiceAttack{Service: s.Spec.Name, Replica: a.Name, Generation: s.Generation, At: time.Now()}
	return at, l.DoS(a.Name)
}

// AwaitSwitches waits (until ctx ends) for a completed switch after each
// attack's generation, and returns the records found: all of them, or
// those there were when ctx ended, with an error naming the rest.
func (l *Lab) AwaitSwitches(ctx context.Context, attacks []ServiceAttack) (map[string]fsm.SwitchRecord, error) {
	got := map[string]fsm.SwitchRecord{}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if all, err := l.services(ctx); err == nil {
			for _, a := range attacks {
				i := slices.IndexFunc(all, func(s fsm.Service) bool { return s.Spec.Name == a.Service })
				if i < 0 {
					continue
				}
				for _, h := range all[i].History {
					if h.Generation > a.Generation && h.Done {
						got[a.Service] = h
						break
					}
				}
			}
		}
		if len(got) == len(attacks) {
			return got, nil
		}
		select {
		case <-ctx.Done():
			var missing []string
			for _, a := range attacks {
				if _, ok := got[a.Service]; !ok {
					missing = append(missing, a.Service)
				}
			}
			return got, fmt.Errorf("lab: no switch of %s: %w", strings.Join(missing, ", "), ctx.Err())
		case <-tick.C:
		}
	}
}

// SwitchesBetween counts the switches of every service that started
// within [from, to] (in the services' bounded histories).
func (l *Lab) SwitchesBetween(ctx context.Context, from, to time.Time) (int, error) {
	all, err := l.services(ctx)
	if err != nil {
		return 0, err
	}
	return switchesBetween(all, from, to), nil
}

func switchesBetween(all []fsm.Service, from, to time.Time) int {
	n := 0
	for _, s := range all {
		for _, h := range s.History {
			if at := time.Unix(0, h.StartedAt); !at.Before(from) && !at.After(to) {
				n++
			}
		}
	}
	return n
}

// LeaderStatus is the leader's own status (its Raft indexes).
func (l *Lab) LeaderStatus(ctx context.Context) (api.Status, error) {
	ld, err := l.Leader(ctx)
	if err != nil {
		return api.Status{}, err
	}
	c, err := l.Client(ld, "reader")
	if err != nil {
		return api.Status{}, err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := c.Status(cctx)
	if err != nil {
		return st, fmt.Errorf("lab: status of leader %s: %w", ld, err)
	}
	if st.State != "leader" {
		return st, fmt.Errorf("lab: %s no longer leads", ld)
	}
	return st, nil
}

// SnapshotBytes is the size of a snapshot of the replicated state, as the
// leader streams it (GET /v1/snapshot, operator token).
func (l *Lab) SnapshotBytes(ctx context.Context) (int64, error) {
	ld, err := l.Leader(ctx)
	if err != nil {
		return 0, err
	}
	c, err := l.Client(ld, "operator")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var n countWriter
	if err := c.SnapshotSave(cctx, &n); err != nil {
		return 0, fmt.Errorf("lab: snapshot of leader %s: %w", ld, err)
	}
	return int64(n), nil
}

type countWriter int64

func (w *countWriter) Write(p []byte) (int, error) { *w += countWriter(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)

// nodeMetrics reads a node's /metrics.
func (l *Lab) nodeMetrics(ctx context.Context, node string) (string, error) {
	c, err := l.Client(node, "reader")
	if err != nil {
		return "", err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.Metrics(cctx)
}

// Metric names the takeover reads.
const (
	metricVerdicts = "ars_controller_verdicts_total"
	metricPasses   = "ars_controller_reconcile_passes_total"
)

// metricSum adds up the samples of metric in a text exposition, by the
// value of label (label "": every sample under ""). Comments, other
// metrics and samples without the label are skipped; a value that does
// not parse is an error.
func metricSum(text, metric, label string) (map[string]float64, error) {
	out := map[string]float64{}
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, metric) {
			continue
		}
		rest := line[len(metric):]
		labels := ""
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.Index(rest, "}")
			if end < 0 {
				return nil, fmt.Errorf("lab: metrics line %q: unterminated labels", line)
			}
			labels, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric with this prefix
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("lab: metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("lab: metrics line %q: %w", line, err)
		}
		key, ok := "", label == ""
		if !ok {
			key, ok = labelValue(labels, label)
		}
		if ok {
			out[key] += v
		}
	}
	return out, nil
}

// labelValue finds name="value" in a label list (values as the Prometheus
// client writes them: quoted, with \" and \\ escapes).
func labelValue(labels, name string) (string, bool) {
	for labels != "" {
		k, rest, ok := strings.Cut(labels, "=")
		if !ok || !strings.HasPrefix(rest, `"`) {
			return "", false
		}
		var b strings.Builder
		i := 1
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
			}
			b.WriteByte(rest[i])
		}
		if strings.TrimSpace(k) == name {
			return b.String(), true
		}
		labels = strings.TrimPrefix(rest[min(i+1, len(rest)):], ",")
	}
	return "", false
}

// takeoverCounts is what a node's metrics say of its leaderships: verdict
// transitions per service, and full reconcile passes.
type takeoverCounts struct {
	verdicts map[string]float64
	passes   float64
}

func parseTakeoverCounts(text string) (takeoverCounts, error) {
	v, err := metricSum(text, metricVerdicts, "service")
	if err != nil {
		return takeoverCounts{}, err
	}
	p, err := metricSum(text, metricPasses, "")
	if err != nil {
		return takeoverCounts{}, err
	}
	return takeoverCounts{verdicts: v, passes: p[""]}, nil
}

// judged says whether every service has a verdict transition beyond base;
// reconciled whether a full reconcile pass came beyond base.
func (c takeoverCounts) judged(base takeoverCounts, services []string) bool {
	for _, s := range services {
		if c.verdicts[s] <= base.verdicts[s] {
			return false
		}
	}
	return true
}

func (c takeoverCounts) reconciled(base takeoverCounts) bool { return c.passes > base.passes }

// Takeover is what TakeoverAfterKill saw, each time from the kill; a
// time not reached within the limit is zero.
type Takeover struct {
	Killed, NewLeader            string
	Elected, Judged, Reconciled  time.Duration
	Poll                         time.Duration
	ElectedOK, JudgedOK, ReconOK bool
}

// TakeoverAfterKill kills the leader (SIGKILL) and polls the survivors
// every poll, for at most limit, until one leads and its metrics show
// (against its own counters read just before the kill) a fresh verdict
// for every service (its probers judged each: ars_controller_verdicts_total)
// and a full reconcile pass over every service
// (ars_controller_reconcile_passes_total). The killed node stays down.
func (l *Lab) TakeoverAfterKill(ctx context.Context, poll, limit time.Duration) (Takeover, error) {
	leader, err := l.Leader(ctx)
	if err != nil || leader == "" {
		return Takeover{}, fmt.Errorf("lab: no leader to kill: %v", err)
	}
	t := Takeover{Killed: leader, Poll: poll}
	base := map[string]takeoverCounts{}
	for _, n := range l.nodes.list() {
		if n.Pid == 0 || n.Name == leader {
			continue
		}
		text, err := l.nodeMetrics(ctx, n.Name)
		if err != nil {
			return t, fmt.Errorf("lab: metrics of %s before the kill: %w", n.Name, err)
		}
		if base[n.Name], err = parseTakeoverCounts(text); err != nil {
			return t, err
		}
	}
	if len(base) == 0 {
		return t, errors.New("lab: no node would survive the kill")
	}
	services := l.ServiceNames()
	at := time.Now()
	if err := l.KillNode(leader); err != nil {
		return t, err
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		for n, b := range base {
			if t.NewLeader != "" && n != t.NewLeader {
				continue
			}
			c, err := l.Client(n, "reader")
			if err != nil {
				return t, err
			}
			sctx, scancel := context.WithTimeout(ctx, time.Second)
			st, err := c.Status(sctx)
			scancel()
			c.Close()
			if err != nil || st.State != "leader" {
				continue
			}
			if t.NewLeader == "" {
				t.NewLeader, t.Elected, t.ElectedOK = n, time.Since(at), true
			}
			text, err := l.nodeMetrics(ctx, n)
			if err != nil {
				continue
			}
			now, err := parseTakeoverCounts(text)
			if err != nil {
				return t, err
			}
			since := time.Since(at)
			if !t.JudgedOK && now.judged(b, services) {
				t.Judged, t.JudgedOK = since, true
			}
			if !t.ReconOK && now.reconciled(b) {
				t.Reconciled, t.ReconOK = since, true
			}
		}
		if t.JudgedOK && t.ReconOK {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return t, fmt.Errorf("lab: takeover after the kill of %s (new leader %q, judged %t, reconciled %t): %w",
				leader, t.NewLeader, t.JudgedOK, t.ReconOK, ctx.Err())
		case <-tick.C:
		}
	}
}

// NodePids is each running node's agent pid, and the leader's name.
func (l *Lab) NodePids(ctx context.Context) (map[string]int, string, error) {
	leader, err := l.Leader(ctx)
	if err != nil {
		return nil, "", err
	}
	pids := map[string]int{}
	for _, n := range l.nodes.list() {
		if n.Pid > 0 {
			pids[n.Name] = n.Pid
		}
	}
	return pids, leader, nil
}
