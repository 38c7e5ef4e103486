package lab

import (
	"context"
	"time"

	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab/bench"
)

// The repeated-dos scenario: a DoS on whichever replica serves, again and
// again, under the policy a service gets by default. What it asks is
// whether ars keeps moving the service while it has somewhere clean to go,
// and what each attack costs a client then.

// SetPolicy re-applies the lab's service with policy p and returns the
// policy the cluster holds afterwards, read back through the API (with the
// defaults the API fills in), so that a caller can tell what it runs with.
// The node read may be a follower a moment behind the leader: it reads
// again, for up to 5 s, until the node holds p with those defaults, and
// returns what it read last either way.
func (l *Lab) SetPolicy(ctx context.Context, p fsm.PolicySpec) (fsm.PolicySpec, error) {
	l.cfg.Policy = p
	if err := l.applyService(ctx); err != nil {
		return fsm.PolicySpec{}, err
	}
	want := fsm.ServiceSpec{Policy: p}
	want.Normalize()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err := l.service(ctx)
		if err != nil {
			return fsm.PolicySpec{}, err
		}
		if s.Spec.Policy == want.Policy || time.Now().After(deadline) {
			return s.Spec.Policy, nil
		}
		if err := sleepUntil(ctx, time.Now().Add(50*time.Millisecond)); err != nil {
			return s.Spec.Policy, err
		}
	}
}

// RepeatedDoSTrial runs one trial of repeated-dos. It waits for a steady
// service whose last switch is at least quiet ago (the policy's whole
// window, so that switches of earlier scenarios or trials do not count
// against this one), then every every, count times, wedges the replica the
// cluster holds active (as a dos trial does), unless that replica is still
// down from an earlier attack of this trial. After the last one it waits,
// for at most limit, until every attacked replica has been switched away
// from and the client is answered again, and then reads what the cluster
// recorded and what the client saw.
func (l *Lab) RepeatedDoSTrial(ctx context.Context, every time.Duration, count int, quiet, limit time.Duration) (bench.RepeatedTrial, error) {
	s, err := l.Steady(ctx, quiet)
	if err != nil {
		return bench.RepeatedTrial{}, err
	}
	b := &repeatedBook{gen0: s.Generation, every: every}
	start := time.Now()
	for i := range count {
		if err := sleepUntil(ctx, start.Add(time.Duration(i)*every)); err != nil {
			return bench.RepeatedTrial{}, err
		}
		b.due++
		// An open switch has not made its new active serve yet: let it
		// close (briefly) so that the attack meets the replica that serves.
		if s, err = l.closedIntent(ctx, time.Second); err != nil {
			return bench.RepeatedTrial{}, err
		}
		a, ok := s.Active()
		if !ok || b.down(s.History, a.Name) {
			continue
		}
		clean := cleanRunning(s, a.Name, l.running)
		if err := l.DoS(a.Name); err != nil {
			return bench.RepeatedTrial{}, err
		}
		b.attacked(a.Name, time.Now(), s.Generation, clean)
	}
	end, err := l.awaitRepeated(ctx, b, limit)
	if err != nil {
		return bench.RepeatedTrial{}, err
	}
	if s, err = l.service(ctx); err != nil {
		return bench.RepeatedTrial{}, err
	}
	t := b.trial(s.History)
	for k := range t.Attacks {
		to := end
		if k+1 < len(b.attacks) {
			to = b.attacks[k+1].at
		}
		o, err := l.Outage(b.attacks[k].at, to)
		if err != nil {
			return bench.RepeatedTrial{}, err
		}
		t.Attacks[k].Outage, t.Attacks[k].Lost = o.Longest, o.Lost
	}
	return t, nil
}

// closedIntent reads the service, waiting up to wait for an open switch to
// close; it returns the last state read either way.
func (l *Lab) closedIntent(ctx context.Context, wait time.Duration) (fsm.Service, error) {
	deadline := time.Now().Add(wait)
	for {
		s, err := l.service(ctx)
		if err != nil || s.Intent == nil || time.Now().After(deadline) {
			return s, err
		}
		if err := sleepUntil(ctx, time.Now().Add(50*time.Millisecond)); err != nil {
			return s, err
		}
	}
}

// awaitRepeated waits until every attack of b has been switched away from
// (the switch verified) and the client has been answered for the last
// 300 ms, or until limit has passed; it returns the end of the trial's
// measurement window.
func (l *Lab) awaitRepeated(ctx context.Context, b *repeatedBook, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	const settle = 300 * time.Millisecond
	for {
		now := time.Now()
		if s, err := l.service(ctx); err == nil && b.resolved(s.History) {
			o, err := l.Outage(now.Add(-settle-ClientTimeout), now.Add(-ClientTimeout))
			if err == nil && o.Sent > 0 && o.Lost == 0 {
				return now.Add(-ClientTimeout), nil
			}
		}
		if now.After(deadline) {
			// Let the last queries settle: the outage is read up to now.
			if err := sleepUntil(ctx, now.Add(ClientTimeout)); err != nil {
				return now, err
			}
			return now, nil
		}
		if err := sleepUntil(ctx, now.Add(50*time.Millisecond)); err != nil {
			return now, err
		}
	}
}

// running says whether the lab has a replica running (powered on, not
// suspended).
func (l *Lab) running(name string) bool {
	p, _ := l.applied(name)
	return p == "poweredOn"
}

// cleanRunning lists the replicas of s other than target that the service
// could switch to now: clean (not quarantined or recovering), not in
// maintenance, and running.
func cleanRunning(s fsm.Service, target string, running func(string) bool) []string {
	var out []string
	for _, r := range s.Replicas {
		if r.Name != target && r.Role.Eligible() && r.Clean && running(r.Name) {
			out = append(out, r.Name)
		}
	}
	return out
}

// repeatedBook is the per-attack bookkeeping of one repeated-dos trial,
// kept apart from the lab so that it can be tested on recorded states.
type repeatedBook struct {
	gen0    uint64        // the service's generation before the first attack
	every   time.Duration // the schedule's period
	due     int
	attacks []bookAttack
}

type bookAttack struct {
	target string
	at     time.Time
	gen    uint64 // the service's generation when the attack came
	clean  []string
}

func (b *repeatedBook) attacked(target string, at time.Time, gen uint64, clean []string) {
	b.attacks = append(b.attacks, bookAttack{target: target, at: at, gen: gen, clean: clean})
}

// down says whether target is still down from an attack of this trial: its
// last attack has no switch away from it in history yet. Such a replica is
// not attacked again (it would count one outage twice).
func (b *repeatedBook) down(history []fsm.SwitchRecord, target string) bool {
	for i := len(b.attacks) - 1; i >= 0; i-- {
		if a := b.attacks[i]; a.target == target {
			_, ok := switchAway(history, a.target, a.gen)
			return !ok
		}
	}
	return false
}

// resolved says whether every attack has been answered by a verified switch
// away from its target.
func (b *repeatedBook) resolved(history []fsm.SwitchRecord) bool {
	for _, a := range b.attacks {
		if rec, ok := switchAway(history, a.target, a.gen); !ok || !rec.Done {
			return false
		}
	}
	return true
}

// trial turns the book and the final switch history into a trial, without
// the client's outages (the caller measures them). An attack is switched in
// time when the switch away from its target was committed before the next
// attack was due; a switch after the trial's start that answers no attack
// is a false switch.
func (b *repeatedBook) trial(history []fsm.SwitchRecord) bench.RepeatedTrial {
	t := bench.RepeatedTrial{Due: b.due}
	answered := map[uint64]bool{}
	var first time.Time
	if len(b.attacks) > 0 {
		first = b.attacks[0].at
	}
	for _, a := range b.attacks {
		at := bench.Attack{Target: a.target, At: a.at.Sub(first), Clean: a.clean}
		if rec, ok := switchAway(history, a.target, a.gen); ok {
			answered[rec.Generation] = true
			committed := time.Unix(0, rec.StartedAt)
			at.To, at.After = rec.To, max(committed.Sub(a.at), 0)
			at.InTime = committed.Before(a.at.Add(b.every))
			at.Detection, at.Switch = ms(rec.DetectionMS), ms(rec.SwitchMS)
		}
		t.Attacks = append(t.Attacks, at)
	}
	for _, rec := range history {
		if rec.Generation > b.gen0 && !answered[rec.Generation] {
			t.FalseSwitches++
		}
	}
	return t
}

// switchAway is the first switch in history away from replica after
// generation gen.
func switchAway(history []fsm.SwitchRecord, replica string, gen uint64) (fsm.SwitchRecord, bool) {
	for _, rec := range history {
		if rec.Generation > gen && rec.From == replica {
			return rec, true
		}
	}
	return fsm.SwitchRecord{}, false
}
