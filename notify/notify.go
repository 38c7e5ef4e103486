package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cluster"
	"github.com/ars-project/ars/fsm"
)

// Defaults of a sink's settings.
const (
	DefaultCursorInterval = time.Second
	DefaultExecTimeout    = 10 * time.Second
	DefaultWebhookTimeout = 5 * time.Second
	DefaultMaxAttempts    = 5
	DefaultQueue          = 1024
	DefaultBackoff        = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	// readBatch is how many events a sink's reader takes at once.
	readBatch = 256
)

// Source is what the notifier needs of the node: its event log, the
// committed cursors, and the Apply path every other command takes.
// *cluster.Cluster implements it.
type Source interface {
	Events(after uint64, max int) ([]cluster.Event, <-chan struct{}, error)
	EventRange() (oldest, last uint64)
	NotifyCursor(sink string) uint64
	Apply(ctx context.Context, cmd []byte) (fsm.Result, error)
}

// SinkConfig is one sink: a name (its cursor's and its metrics' label) and
// exactly one of Exec and Webhook.
type SinkConfig struct {
	Name    string
	Exec    *ExecConfig
	Webhook *WebhookConfig
}

// Config is the notifier's configuration.
type Config struct {
	Source Source
	Sinks  []SinkConfig
	Logger *slog.Logger
	// Metrics may be nil (then nothing is counted).
	Metrics *Metrics
	// CursorInterval is how often, at most, the leader commits a sink's
	// cursor (only when it moved). Default DefaultCursorInterval.
	CursorInterval time.Duration
}

// deliverer hands one event to a sink; an error is one failed attempt.
type deliverer interface {
	deliver(ctx context.Context, e cluster.Event, body []byte) error
}

// sink is one configured sink, ready to run.
type sink struct {
	name        string
	kind        string // "exec" | "webhook"
	d           deliverer
	queue       int
	maxAttempts int
	backoff     time.Duration
	maxBackoff  time.Duration
}

// Notifier delivers the committed events to the sinks while this node leads.
type Notifier struct {
	src      Source
	sinks    []*sink
	log      *slog.Logger
	m        *Metrics
	interval time.Duration
	// started, when set, is called once the sinks' starting indexes are
	// known (tests wait for it).
	started func()
}

// New checks the configuration and builds the sinks (a webhook's secret is
// read here). It starts nothing: Run does, on the leader.
func New(cfg Config) (*Notifier, error) {
	if cfg.Source == nil {
		return nil, errors.New("notify: no event source")
	}
	n := &Notifier{src: cfg.Source, log: cfg.Logger, m: cfg.Metrics, interval: cfg.CursorInterval}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.m == nil {
		n.m = NewMetrics(nil)
	}
	if n.interval <= 0 {
		n.interval = DefaultCursorInterval
	}
	seen := map[string]bool{}
	for i, sc := range cfg.Sinks {
		if !fsm.SinkNameRE.MatchString(sc.Name) {
			return nil, fmt.Errorf("notify: sink %d: name %q must match %s", i, sc.Name, fsm.SinkNameRE)
		}
		if seen[sc.Name] {
			return nil, fmt.Errorf("notify: sink %q is configured twice", sc.Name)
		}
		seen[sc.Name] = true
		var (
			s   *sink
			err error
		)
		switch {
		case (sc.Exec == nil) == (sc.Webhook == nil):
			return nil, fmt.Errorf("notify: sink %q: give exactly one of exec and webhook", sc.Name)
		case sc.Exec != nil:
			s, err = newExecSink(*sc.Exec)
		default:
			s, err = newWebhookSink(*sc.Webhook)
		}
		if err != nil {
			return nil, fmt.Errorf("notify: sink %q: %w", sc.Name, err)
		}
		s.name = sc.Name
		n.sinks = append(n.sinks, s)
	}
	return n, nil
}

// Sinks names the configured sinks.
func (n *Notifier) Sinks() []string {
	out := make([]string, len(n.sinks))
	for i, s := range n.sinks {
		out[i] = s.name
	}
	return out
}

// Run delivers events until ctx ends; it is leader work
// (cluster.OnLeader), started after the leader's barrier, so the committed
// cursors it starts from are every earlier leader's last.
func (n *Notifier) Run(ctx context.Context) {
	if len(n.sinks) == 0 {
		return
	}
	runs := make([]*run, len(n.sinks))
	var wg sync.WaitGroup
	for i, s := range n.sinks {
		r := &run{n: n, s: s, q: make(chan cluster.Event, s.queue)}
		r.start = n.startIndex(s.name)
		r.handled.Store(r.start)
		runs[i] = r
		n.m.QueueLength.WithLabelValues(s.name).Set(0)
		wg.Add(2)
		go func() { defer wg.Done(); r.read(ctx) }()
		go func() { defer wg.Done(); r.work(ctx) }()
	}
	if n.started != nil {
		n.started()
	}
	n.recordCursors(ctx, runs)
	wg.Wait()
	for _, s := range n.sinks {
		n.m.QueueLength.WithLabelValues(s.name).Set(0)
	}
}

// startIndex is where a sink starts on this leader: after its committed
// cursor, or, when none was ever recorded (a new sink, or a cluster below
// format level 3), with the oldest event this node holds — at least once
// means resending rather than missing what an earlier leader may not have
// delivered.
func (n *Notifier) startIndex(name string) uint64 {
	if c := n.src.NotifyCursor(name); c > 0 {
		n.log.Info("notify: sink resumes after its recorded cursor", "sink", name, "index", c)
		return c
	}
	oldest, last := n.src.EventRange()
	n.log.Info("notify: sink has no recorded cursor; delivering every event this node holds", "sink", name, "after", oldest, "last", last)
	return oldest
}

// recordCursors commits, every interval, the cursor of each sink that
// moved past its committed one, until ctx ends.
func (n *Notifier) recordCursors(ctx context.Context, runs []*run) {
	tick := time.NewTicker(n.interval)
	defer tick.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, r := range runs {
			h := r.handled.Load()
			if h <= n.src.NotifyCursor(r.s.name) {
				continue
			}
			data, err := fsm.Encode(0, fsm.NotifyCursor{Sink: r.s.name, Index: h})
			if err != nil {
				n.log.Error("notify: encoding a cursor", "sink", r.s.name, "err", err)
				continue
			}
			_, err = n.src.Apply(ctx, data)
			switch {
			case err == nil:
				n.m.Cursor.WithLabelValues(r.s.name).Set(float64(h))
				continue
			case errors.Is(err, fsm.ErrNeedsUpgrade):
				if !warned {
					n.log.Warn("notify: the cluster is below log format level 3, so the sinks' cursors are not recorded; "+
						"notifications go on, and a new leader starts each sink after the newest event it holds (events may be missed or resent)",
						"err", err)
					warned = true
				}
			case ctx.Err() != nil:
				return
			default:
				n.log.Warn("notify: recording a cursor failed; retried at the next interval", "sink", r.s.name, "index", h, "err", err)
			}
			break // the other sinks' cursors would fail the same way
		}
	}
}

// run is one sink while this node leads: a reader that queues the events
// and a worker that delivers them, in order.
type run struct {
	n     *Notifier
	s     *sink
	q     chan cluster.Event
	start uint64
	// handled is the index of the last event the worker finished
	// (delivered or given up), or start: what the cursor records.
	handled atomic.Uint64
}

// read queues every event after start but the cursors themselves; a full
// queue drops the event (counted, logged) rather than wait: the reader
// never falls behind the log because a sink is slow.
func (r *run) read(ctx context.Context) {
	after := r.start
	for {
		evs, more, err := r.n.src.Events(after, readBatch)
		var gone *cluster.EventsGoneError
		if errors.As(err, &gone) {
			r.n.log.Warn("notify: events were lost to the sink: this node no longer holds them (a snapshot replaced its state)",
				"sink", r.s.name, "after", after, "from", gone.Floor)
			after = gone.Floor
			continue
		}
		for _, e := range evs {
			after = e.Index
			if e.Type == fsm.CmdNotifyCursor {
				continue
			}
			select {
			case r.q <- e:
				r.n.m.QueueLength.WithLabelValues(r.s.name).Inc()
			default:
				r.n.m.Dropped.WithLabelValues(r.s.name).Inc()
				r.n.log.Warn("notify: sink queue full; event dropped", "sink", r.s.name, "index", e.Index, "type", e.Type, "queue", cap(r.q))
			}
		}
		if len(evs) == readBatch {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-more:
		}
	}
}

// work delivers the queued events one at a time, retrying each with
// exponential backoff up to the sink's attempts.
func (r *run) work(ctx context.Context) {
	for {
		var e cluster.Event
		select {
		case <-ctx.Done():
			return
		case e = <-r.q:
		}
		r.n.m.QueueLength.WithLabelValues(r.s.name).Dec()
		ev := api.Event{Index: e.Index, Term: e.Term, Type: string(e.Type), Service: e.Service,
			Refused: e.Refused, Error: e.Error, Body: e.Body}
		ev.Detail = ev.Describe()
		body, err := json.Marshal(ev)
		if err != nil {
			r.n.log.Error("notify: encoding an event", "sink", r.s.name, "index", e.Index, "err", err)
			r.handled.Store(e.Index)
			continue
		}
		if !r.deliver(ctx, e, body) {
			return // leadership ended mid-delivery: the next leader resends it
		}
		r.handled.Store(e.Index)
	}
}

// deliver tries an event up to the sink's attempts; false when ctx ended
// before it was delivered or given up.
func (r *run) deliver(ctx context.Context, e cluster.Event, body []byte) bool {
	wait := r.s.backoff
	for attempt := 1; ; attempt++ {
		err := r.s.d.deliver(ctx, e, body)
		if err == nil {
			r.n.m.Delivered.WithLabelValues(r.s.name).Inc()
			r.n.log.Debug("notify: delivered", "sink", r.s.name, "index", e.Index, "type", e.Type, "attempt", attempt)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		r.n.m.FailedAttempts.WithLabelValues(r.s.name).Inc()
		if attempt >= r.s.maxAttempts {
			r.n.m.Failed.WithLabelValues(r.s.name).Inc()
			r.n.log.Error("notify: event not delivered; giving up", "sink", r.s.name, "kind", r.s.kind,
				"index", e.Index, "type", e.Type, "attempts", attempt, "err", err)
			return true
		}
		r.n.log.Warn("notify: delivery failed; retrying", "sink", r.s.name, "kind", r.s.kind,
			"index", e.Index, "type", e.Type, "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, r.s.maxBackoff)
	}
}
