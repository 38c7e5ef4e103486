package lab

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab/netlab"
)

// The lab's client queries the service address at this interval, and a
// query counts as lost if no valid answer comes within ClientTimeout.
const (
	ClientInterval = 5 * time.Millisecond
	ClientTimeout  = 250 * time.Millisecond
)

// probeClient keeps one measuring client running for the lab's lifetime:
// a netlab.Client stops after netlab.MaxQueries, so a fresh one follows.
type probeClient struct {
	mu  sync.Mutex
	cur *netlab.Client
	// prev is the client cur replaced (closed; its results stay), so that
	// an outage asked for across a renewal still sees both halves.
	prev *netlab.Client
}

func (p *probeClient) get() *netlab.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// runClient runs measuring clients until ctx ends.
func (l *Lab) runClient(ctx context.Context) error {
	c, err := l.Net.NewClient(ClientInterval, ClientTimeout)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	l.client.mu.Lock()
	l.client.cur = c
	l.client.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			c.Run(ctx)
			if ctx.Err() != nil {
				c.Close()
				return
			}
			next, err := l.Net.NewClient(ClientInterval, ClientTimeout)
			if err != nil {
				l.log.Error("lab: measuring client not renewed", "err", err)
				return
			}
			l.client.mu.Lock()
			l.client.prev, l.client.cur = c, next
			l.client.mu.Unlock()
			// The old client's last queries are still in flight: let their
			// answers arrive before its socket closes, or they count as a
			// loss that never ends (chaos seed 49 at a renewal: a 1-query
			// "outage" never answered again).
			select {
			case <-ctx.Done():
			case <-time.After(ClientTimeout):
			}
			c.Close()
			c = next
		}
	}()
	return nil
}

// Outage is what the lab's client saw between from and to, across one
// renewal of the client (the one before and the current one, as one
// sequence: a gap running across the renewal is one gap, and it ends at
// the new client's first answer — counted in two halves, the old half
// looked like a gap never answered again: chaos seed 83 of one run).
func (l *Lab) Outage(from, to time.Time) (netlab.Outage, error) {
	l.client.mu.Lock()
	prev, c := l.client.prev, l.client.cur
	l.client.mu.Unlock()
	if c == nil {
		return netlab.Outage{}, fmt.Errorf("lab: no measuring client (the lab runs without nodes)")
	}
	return netlab.Outages(from, to, prev, c), nil
}

// Event is one attack as the lab measured it: the switch the cluster
// made and the outage its client saw.
type Event struct {
	Attack  time.Time         `json:"attack"`
	Switch  *fsm.SwitchRecord `json:"switch,omitempty"`
	Sent    int               `json:"sent"`
	Lost    int               `json:"lost_queries"`
	Gaps    int               `json:"gaps"`
	Longest float64           `json:"downtime_ms"` // the longest run of lost queries
	// Recovered says whether the service answered again after the last
	// loss within the wait.
	Recovered bool `json:"recovered"`
}

// Generation is the service's switch generation now, as a node reports it.
func (l *Lab) Generation(ctx context.Context) (uint64, error) {
	s, err := l.service(ctx)
	return s.Generation, err
}

// service is the lab's service as the cluster holds it, read from the
// leader when it answers (leaderFirst).
func (l *Lab) service(ctx context.Context) (fsm.Service, error) {
	return l.serviceNamed(ctx, l.cfg.Service)
}

// serviceNamed is service for any of the lab's services.
func (l *Lab) serviceNamed(ctx context.Context, name string) (fsm.Service, error) {
	var s fsm.Service
	err := l.leaderFirst(ctx, time.Second, func(ctx context.Context, c *api.Client) error {
		var err error
		s, err = c.Service(ctx, name)
		return err
	})
	if err != nil {
		return fsm.Service{}, fmt.Errorf("lab: no node answered for service %s: %w", name, err)
	}
	return s, nil
}

// leaderFirst runs fn with a reader client of the leader, when a node
// names one that answers, else of any node: a node just restarted serves
// the state of its last snapshot until it has caught up, so what it says
// can be far behind. A chaos attack on "the active replica" read from one
// wedged the standby instead (seed 80 of 2026-12-07), and the alert
// ledger read from one lacked the schedule's alerts (seed 87). Without a
// leader any node's copy is the best there is.
func (l *Lab) leaderFirst(ctx context.Context, timeout time.Duration, fn func(context.Context, *api.Client) error) error {
	if ld, err := l.Leader(ctx); err == nil && ld != "" {
		if c, err := l.Client(ld, "reader"); err == nil {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			err = fn(cctx, c)
			cancel()
			c.Close()
			if err == nil {
				return nil
			}
		}
	}
	return l.anyNode(ctx, "reader", timeout, fn)
}

// Await waits (until ctx ends) for a completed switch of a generation after
// gen, then for the service to answer for settle without a loss, and
// returns what the client saw from attack on. Without a switch in time it
// still reports the outage, with Switch nil.
func (l *Lab) Await(ctx context.Context, attack time.Time, gen uint64, settle time.Duration) (Event, error) {
	ev := Event{Attack: attack}
	if l.client.get() == nil {
		return ev, fmt.Errorf("lab: no measuring client (the lab runs without nodes)")
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for ev.Switch == nil {
		if s, err := l.service(ctx); err == nil {
			for i := range s.History {
				if h := s.History[i]; h.Generation > gen && h.Done {
					ev.Switch = &h
					break
				}
			}
		}
		if ev.Switch != nil {
			break
		}
		select {
		case <-ctx.Done():
			return l.summarize(ev), fmt.Errorf("lab: no switch after the attack: %w", ctx.Err())
		case <-tick.C:
		}
	}
	// Answered for settle with no loss: the outage is over.
	for {
		// l.Outage, not the client of the attack's time: a renewal of the
		// client meanwhile would leave this window empty.
		o, _ := l.Outage(time.Now().Add(-settle-ClientTimeout), time.Now().Add(-ClientTimeout))
		if o.Sent > 0 && o.Lost == 0 && time.Since(attack) > settle+ClientTimeout {
			ev.Recovered = true
			break
		}
		select {
		case <-ctx.Done():
			return l.summarize(ev), fmt.Errorf("lab: the service did not answer again: %w", ctx.Err())
		case <-tick.C:
		}
	}
	return l.summarize(ev), nil
}

func (l *Lab) summarize(ev Event) Event {
	o, _ := l.Outage(ev.Attack, time.Now().Add(-ClientTimeout))
	ev.Sent, ev.Lost, ev.Gaps = o.Sent, o.Lost, o.Gaps
	ev.Longest = float64(o.Longest.Microseconds()) / 1000
	return ev
}
