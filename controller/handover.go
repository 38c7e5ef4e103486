package controller

import (
	"time"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/fsm"
)

// A leader change must not start detection over (controller/DESIGN.md,
// "A leader change"). A new leader starts with what the cluster already
// knows:
//
//   - the followers' probe reports that reached it before its loop ran
//     (HandleReport queues them; takeOver counts them), so a DoS that began
//     before the election is decided on the first quorum;
//   - its own Witness's verdicts from when it followed (WitnessVotes): a
//     DOWN stands for the leader's vote until the leader's own prober, new
//     with the term, has a verdict of its own;
//   - an active that was seen serving before this term — by its own
//     witness's probes, or by the earlier leader that verified the switch
//     that made it active (its SwitchDone) — is judged from then, not only
//     from when this leader's reconciler first observes it (which waits for
//     the vCenter login).
//
// And it calls no driver operation before the driver is ready (Readier):
// the vCenter login runs beside the loop, which decides and commits while
// it lasts.

// WitnessVotes is the node's own Witness as the controller sees it.
type WitnessVotes interface {
	// Votes are the witness's latest verdicts, one per service it probed.
	Votes() []WitnessVote
}

// WitnessVote is a witness's latest verdict on one activation of a
// service, as a Report plus how old it is. Durations, not times: they are
// measured on the witness's probe clock and placed on the controller's.
type WitnessVote struct {
	Report
	// Age is how long ago the witness read the verdict.
	Age time.Duration
	// SeenUp: the witness's probes got a valid answer on this activation;
	// UpAge is how long ago the latest one arrived.
	SeenUp bool
	UpAge  time.Duration
}

// Readier is implemented by a driver whose operations wait for something
// at the start of a term (the vSphere driver's login). The leader loop
// skips the replicas of a driver that is not ready instead of waiting for
// it, and the driver sends an EventResync on its Watch when it becomes
// ready. A driver without the method is always ready.
type Readier interface {
	Ready() bool
}

// ReplicaReadier is Readier per replica, for a driver over several
// endpoints that each come and go on their own (vsphere.Set: one session
// per vCenter). The loop asks it about every replica, so a vCenter still
// logging in, or down, holds back only its own replicas. It takes
// precedence over Readier.
type ReplicaReadier interface {
	// ReadyFor: operations on r can run now without waiting.
	ReadyFor(r fsm.ReplicaSpec) bool
	// UnreachableFor: r's endpoint got no answer on its latest try (a
	// vCenter that is down), or r names none the driver has. decide is
	// told r is unavailable, so no switch waits for such a replica. An
	// endpoint still logging in is not ready but not unreachable: a switch
	// to its replica starts the moment it is ready.
	UnreachableFor(r fsm.ReplicaSpec) bool
}

// ready reports whether the loop may call d for the replica r now.
func ready(d driver.Driver, r fsm.ReplicaSpec) bool {
	if rd, ok := d.(ReplicaReadier); ok {
		return rd.ReadyFor(r)
	}
	rd, ok := d.(Readier)
	return !ok || rd.Ready()
}

// unreachable reports whether d says r's endpoint cannot be driven now.
func unreachable(d driver.Driver, r fsm.ReplicaSpec) bool {
	rd, ok := d.(ReplicaReadier)
	return ok && rd.UnreachableFor(r)
}

// takeOver is the start of a leadership: it counts the reports that
// arrived before the loop ran, takes the node's own witness's verdicts,
// and marks the actives seen serving before this term.
func (r *run) takeOver() {
	now := r.c.now()
	queued := 0
	for more := true; more; {
		select {
		case rep := <-r.c.reports:
			r.tally.add(rep.Report, rep.at)
			queued++
		default:
			more = false
		}
	}
	own := map[string]WitnessVote{}
	if w := r.c.cfg.Witness; w != nil {
		for _, v := range w.Votes() {
			own[v.Service] = v
		}
	}
	for _, svc := range r.c.cl.Services() {
		name := svc.Spec.Name
		a, ok := activationOf(svc)
		if !ok {
			continue
		}
		key := replicaKey(name, a.replica)
		v, haveOwn := own[name]
		if haveOwn && (v.Replica != a.replica || v.Epoch != a.epoch) {
			haveOwn = false // about an earlier activation
		}
		if haveOwn {
			// Read by the witness v.Age ago: counted as a report received
			// then (its later reports, in-process, replace it).
			r.tally.add(v.Report, now.Add(-v.Age))
		}
		if _, ok := r.attachedSince[key]; ok || svc.Intent != nil {
			continue
		}
		var seen time.Time
		switch {
		case haveOwn && v.SeenUp:
			seen = now.Add(-v.UpAge)
		default:
			if rec, ok := verifiedActivation(svc, a); ok {
				// Clock skew between nodes can only delay judging.
				if seen = time.Unix(0, rec.DoneAt); seen.After(now) {
					seen = now
				}
			}
		}
		if !seen.IsZero() {
			// Seen serving is an answer: decide does not flap-damp a
			// verdict against a replica that answered after it took over
			// (see answeredAt).
			r.attachedSince[key] = attachment{at: seen, firstOK: seen}
		}
	}
	r.c.log.Info("leadership taken over", "reports", queued, "witness_votes", len(own), "seen_serving", len(r.attachedSince))
}

// verifiedActivation is the switch record that made the activation's
// replica active, if its switch was verified (an answer through the
// service address after the attach, SwitchDone).
func verifiedActivation(svc fsm.Service, a activation) (fsm.SwitchRecord, bool) {
	for i := len(svc.History) - 1; i >= 0; i-- {
		rec := svc.History[i]
		if rec.Index == a.epoch && rec.To == a.replica {
			return rec, rec.Done && rec.DoneAt > 0
		}
	}
	return fsm.SwitchRecord{}, false
}

// selfVoter is the node whose reports the tally leaves out: this node's
// own, since the leader votes with its prober — except while that prober,
// new with the term, has no verdict yet: then its witness's verdict (from
// before the node led, and from the handover probing after) stands for
// it, counted once.
func (r *run) selfVoter(st probe.Status) string {
	if st.State == probe.StateUnknown {
		return ""
	}
	return r.c.cfg.NodeName
}

// firstReport logs the first follower report this leadership counts (the
// leader-change timeline).
func (r *run) firstReport(rep received) {
	if r.reportSeen {
		return
	}
	r.reportSeen = true
	r.c.log.Info("first probe report", "node", rep.Node, "service", rep.Service, "down", rep.Down,
		"down_for", time.Duration(rep.DownForUS)*time.Microsecond)
}
