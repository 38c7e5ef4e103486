package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ars-project/ars/fsm"
)

// PaperMinSpacing is the least time between the starts of two probes in the
// paper profile when spec.Interval is 0 ("back to back"): a server that
// answers or fails at once is probed at most 100 times a second, not in a
// busy loop. It does not change detection by timeouts (each takes Timeout).
const PaperMinSpacing = 10 * time.Millisecond

// ErrRunning is returned by Run when the Prober is already running.
var ErrRunning = errors.New("prober already running")

// QueryFunc sends one probe. Query is the production one; a replacement
// must return by spec.Timeout and when ctx ends.
type QueryFunc func(ctx context.Context, addr string, spec fsm.ProbeSpec) Result

// Config configures a Prober.
type Config struct {
	// Service names the target in metrics (label "service").
	Service string
	// Addr is the service address, "IP:port".
	Addr string
	// Spec is the probe; New normalizes it (fsm defaults).
	Spec fsm.ProbeSpec

	// Clock defaults to SystemClock(); Query defaults to Query.
	Clock Clock
	Query QueryFunc

	// OnResult and OnTransition, when set, are called from Run's goroutine,
	// one at a time, in completion order: OnResult for every result (not
	// for probes cancelled because Run is stopping), then OnTransition if
	// that result changed the verdict; OnTransition also when the window
	// runs out, with Status already reporting the verdict it announces.
	// They must not block for long: the schedule waits for them.
	OnResult     func(Result)
	OnTransition func(Transition)

	// Metrics, when set, records probe latency, results by reason, verdicts
	// and detection times.
	Metrics *Metrics
}

// Prober probes one service on the schedule of its profile and keeps the
// verdict:
//
//   - ars: a probe starts every spec.Interval on a fixed grid, each in its
//     own goroutine with spec.Timeout, so probes overlap; at most
//     MaxInFlight = ceil(Timeout/Interval)+1 are in flight (a slot that
//     finds the limit reached is skipped and counted).
//   - paper: one probe at a time; the next starts when the previous one
//     finished, and no sooner than spec.Interval (PaperMinSpacing when 0)
//     after the previous start.
type Prober struct {
	cfg         Config
	spec        fsm.ProbeSpec
	clock       Clock
	query       QueryFunc
	paper       bool
	interval    time.Duration
	maxInFlight int

	running atomic.Bool
	mu      sync.Mutex
	status  Status
}

// New checks cfg and returns a Prober; it starts nothing.
func New(cfg Config) (*Prober, error) {
	spec := normalize(cfg.Spec)
	if _, err := netip.ParseAddrPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("%w: address %q: %w", ErrInvalidSpec, cfg.Addr, err)
	}
	if _, err := compile(spec); err != nil {
		return nil, err
	}
	if _, err := NewVerdict(spec, time.Time{}); err != nil {
		return nil, err
	}
	if spec.Interval < 0 {
		return nil, fmt.Errorf("%w: interval: %s must be >= 0", ErrInvalidSpec, spec.Interval)
	}
	p := &Prober{
		cfg:      cfg,
		spec:     spec,
		clock:    cfg.Clock,
		query:    cfg.Query,
		paper:    spec.Profile == fsm.ProfilePaper,
		interval: time.Duration(spec.Interval),
	}
	if p.clock == nil {
		p.clock = SystemClock()
	}
	if p.query == nil {
		p.query = Query
	}
	if p.paper {
		p.maxInFlight = 1
		if p.interval == 0 {
			p.interval = PaperMinSpacing
		}
	} else {
		if p.interval <= 0 {
			return nil, fmt.Errorf("%w: interval: must be > 0 for profile %q", ErrInvalidSpec, spec.Profile)
		}
		timeout := time.Duration(spec.Timeout)
		p.maxInFlight = int((timeout+p.interval-1)/p.interval) + 1
	}
	return p, nil
}

// Spec is the normalized probe spec the Prober uses.
func (p *Prober) Spec() fsm.ProbeSpec { return p.spec }

// MaxInFlight is the most probes the Prober keeps in flight.
func (p *Prober) MaxInFlight() int { return p.maxInFlight }

// Status is the current verdict; safe to call at any time.
func (p *Prober) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func (p *Prober) setStatus(s Status) {
	p.mu.Lock()
	p.status = s
	p.mu.Unlock()
}

// Run probes until ctx ends, then cancels the probes in flight, waits for
// them and returns nil. Each Run starts from a fresh verdict. It returns
// ErrRunning if the Prober is already running.
func (p *Prober) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer p.running.Store(false)

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		p.cfg.Metrics.forget(p.cfg.Service)
	}()

	start := p.clock.Now()
	v, err := NewVerdict(p.spec, start)
	if err != nil {
		return err // New checked the spec already
	}
	p.setStatus(v.Status())
	p.cfg.Metrics.setState(p.cfg.Service, StateUnknown)
	p.cfg.Metrics.setInFlight(p.cfg.Service, 0)

	results := make(chan Result, p.maxInFlight) // never blocks a probe: at most maxInFlight send
	launch := p.clock.NewTimer(0)
	defer launch.Stop()
	deadline := p.clock.NewTimer(time.Hour)
	deadline.Stop()
	defer deadline.Stop()

	var (
		inFlight  int
		next      = start // ars: the grid slot being served
		lastStart time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return nil

		case <-launch.C():
			now := p.clock.Now()
			if inFlight < p.maxInFlight {
				inFlight++
				lastStart = now
				wg.Add(1)
				go p.probe(ctx, &wg, now, results)
				p.cfg.Metrics.setInFlight(p.cfg.Service, inFlight)
			} else {
				p.cfg.Metrics.skip(p.cfg.Service)
			}
			if !p.paper {
				next = nextSlot(next, now, p.interval)
				launch.Reset(next.Sub(now))
			}

		case r := <-results:
			inFlight--
			p.cfg.Metrics.setInFlight(p.cfg.Service, inFlight)
			now := p.clock.Now()
			if r.Reason != ReasonCanceled {
				p.cfg.Metrics.observeResult(p.cfg.Service, r)
				if p.cfg.OnResult != nil {
					p.cfg.OnResult(r)
				}
				t, ok := v.Observe(r, now)
				p.setStatus(v.Status())
				if ok {
					p.transition(t)
				}
			}
			if p.paper {
				at := lastStart.Add(p.interval)
				if at.Before(now) {
					at = now
				}
				launch.Reset(at.Sub(now))
			}
			p.arm(v, deadline, now)

		case <-deadline.C():
			now := p.clock.Now()
			if t, ok := v.Advance(now); ok {
				p.setStatus(v.Status())
				p.transition(t)
			}
			p.arm(v, deadline, now)
		}
	}
}

// nextSlot is the first grid slot (prev + k·interval, k >= 1) after now.
func nextSlot(prev, now time.Time, interval time.Duration) time.Time {
	next := prev.Add(interval)
	if !next.After(now) {
		next = next.Add((now.Sub(next)/interval + 1) * interval)
	}
	return next
}

// arm sets the deadline timer to the verdict's deadline, or stops it.
func (p *Prober) arm(v *Verdict, t Timer, now time.Time) {
	if at, ok := v.Deadline(); ok {
		t.Reset(at.Sub(now))
	} else {
		t.Stop()
	}
}

// transition announces t. The status is set first: a callback that reads
// Status (the controller weighs the evidence on a transition) sees the
// verdict the transition announces, not the one before it.
func (p *Prober) transition(t Transition) {
	p.cfg.Metrics.observeTransition(p.cfg.Service, t)
	if p.cfg.OnTransition != nil {
		p.cfg.OnTransition(t)
	}
}

// probe runs one query; Start is stamped with the Prober's clock so that the
// verdict sees one time base.
func (p *Prober) probe(ctx context.Context, wg *sync.WaitGroup, start time.Time, results chan<- Result) {
	defer wg.Done()
	r := p.query(ctx, p.cfg.Addr, p.spec)
	r.Start = start
	results <- r
}
