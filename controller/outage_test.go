package controller

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/fsm"
)

// TestMeasureOutage: the outage, probes sent and probes lost of a switch,
// from the samples of the service's probe log (pure).
func TestMeasureOutage(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// ok/lost: a probe sent at ms, answered 1 ms later or timed out 100 ms later.
	ok := func(ms int) probeSample { return probeSample{sent: at(ms), done: at(ms + 1), ok: true} }
	lost := func(ms int) probeSample { return probeSample{sent: at(ms), done: at(ms + 100)} }
	hole := time.Second
	for _, c := range []struct {
		name       string
		samples    []probeSample
		trigger    int
		end        int
		want       bool
		outage     time.Duration
		sent, lost int
	}{
		{
			// A DoS: answered until 50, lost from 100 (the trigger: the
			// first failed probe), the new replica answers at 451.
			name:    "dos",
			samples: []probeSample{ok(0), ok(50), lost(100), lost(150), lost(200), lost(250), lost(300), lost(350), ok(400), ok(450)},
			trigger: 100, end: 451, want: true,
			outage: 350 * time.Millisecond, sent: 8, lost: 6, // 51 (last answer) to 401 (first answer)
		},
		{
			// Make-before-break after an exploit alert: every probe answered,
			// the old replica until the detach, then the new one.
			name:    "make-before-break",
			samples: []probeSample{ok(0), ok(50), ok(100), ok(150), ok(170), ok(190), ok(200)},
			trigger: 120, end: 201, want: true,
			sent: 4,
		},
		{
			// Break-before-make: lost between the detach and the attach.
			name:    "break-before-make",
			samples: []probeSample{ok(0), ok(50), ok(100), lost(150), lost(170), ok(190)},
			trigger: 60, end: 191, want: true,
			outage: 90 * time.Millisecond, sent: 4, lost: 2, // 101 to 191
		},
		{
			// Two runs of loss: both count, not the answered time between.
			name:    "two gaps",
			samples: []probeSample{ok(0), lost(50), ok(100), ok(150), lost(200), ok(250)},
			trigger: 10, end: 251, want: true,
			outage: 100*time.Millisecond + 100*time.Millisecond, sent: 5, lost: 2,
		},
		{
			// Results arrive out of order (overlapping probes): the log is
			// read in the order the probes were sent.
			name:    "unsorted samples",
			samples: []probeSample{ok(150), lost(50), ok(0), ok(100)},
			trigger: 10, end: 151, want: true,
			outage: 100 * time.Millisecond, sent: 3, lost: 1,
		},
		{
			// Probes sent after end are not the switch's.
			name:    "after end",
			samples: []probeSample{ok(0), lost(50), ok(100), lost(200), lost(250)},
			trigger: 10, end: 101, want: true,
			outage: 100 * time.Millisecond, sent: 2, lost: 1,
		},
		{
			// No answer closes the run before end: it lasts until end.
			name:    "open at end",
			samples: []probeSample{ok(0), lost(50), lost(100)},
			trigger: 10, end: 300, want: true,
			outage: 299 * time.Millisecond, sent: 2, lost: 2,
		},
		{
			// The service was down before the log begins: the outage's start
			// was not seen.
			name:    "no answer before the trigger",
			samples: []probeSample{lost(0), lost(50), lost(100), ok(150)},
			trigger: 0, end: 151, want: false,
		},
		{
			name:    "answer only after the trigger",
			samples: []probeSample{ok(150)},
			trigger: 100, end: 151, want: false,
		},
		{
			name:    "nothing sent after the last answer",
			samples: []probeSample{ok(0)},
			trigger: 10, end: 151, want: false,
		},
		{
			// Nobody probed for longer than the hole allows.
			name:    "hole",
			samples: []probeSample{ok(0), lost(50), ok(2000)},
			trigger: 10, end: 2001, want: false,
		},
		{
			name:    "hole before end",
			samples: []probeSample{ok(0), ok(50)},
			trigger: 10, end: 3000, want: false,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := append([]probeSample(nil), c.samples...)
			f, ok := measureOutage(c.samples, at(c.trigger), at(c.end), hole)
			if ok != c.want {
				t.Fatalf("measured %t (%+v), want %t", ok, f, c.want)
			}
			if ok && (f.outage != c.outage || f.sent != c.sent || f.lost != c.lost) {
				t.Errorf("outage %s, sent %d, lost %d; want %s, %d, %d", f.outage, f.sent, f.lost, c.outage, c.sent, c.lost)
			}
			for i := range before {
				if before[i] != c.samples[i] {
					t.Fatalf("input changed at %d", i)
				}
			}
		})
	}
}

func TestSwitchFigures(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	samples := []probeSample{{sent: t0, done: t0.Add(time.Millisecond), ok: true},
		{sent: t0.Add(50 * time.Millisecond), done: t0.Add(51 * time.Millisecond), ok: true}}
	var d fsm.SwitchDone
	switchFigures(&d, samples, time.Time{}, t0.Add(40*time.Millisecond), t0.Add(51*time.Millisecond), time.Second)
	if d.OutageMS != nil || d.ExposureMS != nil {
		t.Fatalf("unknown trigger measured something: %+v", d)
	}
	switchFigures(&d, samples, t0.Add(10*time.Millisecond), t0.Add(40*time.Millisecond), t0.Add(51*time.Millisecond), time.Second)
	if d.OutageMS == nil || *d.OutageMS != 0 || *d.ProbesSent != 1 || *d.ProbesLost != 0 || d.ExposureMS == nil || *d.ExposureMS != 30 {
		t.Fatalf("figures %+v", d)
	}
	d = fsm.SwitchDone{}
	switchFigures(&d, samples, t0.Add(10*time.Millisecond), time.Time{}, t0.Add(51*time.Millisecond), time.Second)
	if d.OutageMS == nil || d.ExposureMS != nil {
		t.Fatalf("no detach seen, yet exposure: %+v", d)
	}
}

func TestSampleLogBounds(t *testing.T) {
	var l sampleLog
	t0 := time.Unix(1700000000, 0)
	l.add(probe.Result{Start: t0, OK: true}, t0)
	l.add(probe.Result{Start: t0, Reason: probe.ReasonCanceled}, t0)
	l.add(probe.Result{OK: true}, t0) // no send time: not a probe that was sent
	if n := len(l.samples()); n != 1 {
		t.Fatalf("%d samples, want 1 (cancelled and unsent ones are not recorded)", n)
	}
	l.add(probe.Result{Start: t0.Add(sampleKeep + time.Second), OK: true}, t0.Add(sampleKeep+time.Second))
	if s := l.samples(); len(s) != 1 || !s[0].sent.Equal(t0.Add(sampleKeep+time.Second)) {
		t.Fatalf("old samples kept: %+v", s)
	}
	for i := range sampleMax + 10 {
		at := t0.Add(sampleKeep + time.Duration(i)*time.Millisecond)
		l.add(probe.Result{Start: at, OK: true}, at)
	}
	if n := len(l.samples()); n != sampleMax {
		t.Fatalf("%d samples, want at most %d", n, sampleMax)
	}
}

// answers wraps a query function and counts its valid answers.
func answers(q probe.QueryFunc, n *atomic.Int64) probe.QueryFunc {
	return func(ctx context.Context, addr string, spec fsm.ProbeSpec) probe.Result {
		r := q(ctx, addr, spec)
		if r.OK {
			n.Add(1)
		}
		return r
	}
}

// TestSwitchRecordsOutage: a DoS switch records the outage the leader's
// probes saw (non-zero, with lost probes) and the exposure.
func TestSwitchRecordsOutage(t *testing.T) {
	e := newEnv(t)
	var ok atomic.Int64
	e.query = answers(e.d.query(svcName), &ok)
	e.start(true)
	eventually(t, "the prober got answers", func() bool { return ok.Load() >= 3 })
	e.d.attack("bind9", true)
	eventually(t, "switch to unbound-a", e.activeIs("unbound-a"))
	h := e.switches()
	if len(h) != 1 || h[0].Reason != fsm.ReasonDoS || !h[0].Done {
		t.Fatalf("history %+v", h)
	}
	r := h[0]
	if r.OutageMS == nil || r.ProbesSent == nil || r.ProbesLost == nil || r.ExposureMS == nil {
		t.Fatalf("not measured: %+v", r)
	}
	// The outage covers at least the detection: from the last answer to
	// the first failed probe's verdict, no probe was answered.
	if *r.OutageMS <= 0 || *r.OutageMS < r.DetectionMS || *r.ProbesLost < 3 || *r.ProbesSent < *r.ProbesLost {
		t.Errorf("outage %.1f ms (detection %.1f ms), %d of %d probes lost", *r.OutageMS, r.DetectionMS, *r.ProbesLost, *r.ProbesSent)
	}
	if *r.ExposureMS <= 0 || *r.ExposureMS > r.TotalMS {
		t.Errorf("exposure %.1f ms, total %.1f ms", *r.ExposureMS, r.TotalMS)
	}
	// The leader observes the phases just after the switch.done it
	// commits, which the history shows first (CI under load read the
	// metric in between).
	eventually(t, "the outage phase observed", func() bool { return phaseCount(t, e.m, "outage") >= 1 })
	if got := phaseCount(t, e.m, "outage"); got != 1 {
		t.Errorf("outage phase observed %d times, want 1", got)
	}
}

// TestMakeBeforeBreakRecordsExposure: an exploit switch in
// make-before-break loses no probe: outage zero, and the exposure is the
// time the exploited replica stayed on the network after the alert.
func TestMakeBeforeBreakRecordsExposure(t *testing.T) {
	e := newEnv(t)
	var ok atomic.Int64
	e.query = answers(e.d.query(svcName), &ok)
	hold := make(chan struct{})
	e.d.delay["detach bind-a"] = hold
	e.start(true)
	eventually(t, "the prober got answers", func() bool { return ok.Load() >= 3 })
	alertAt := time.Now()
	e.cl.must(t, fsm.Alert{ID: "ex-1", Service: svcName, Replica: "bind-a", Kind: fsm.KindExploit, At: alertAt.UnixNano()})
	eventually(t, "detach of bind-a reached", func() bool {
		e.d.mu.Lock()
		defer e.d.mu.Unlock()
		return e.d.held["detach bind-a"] > 0
	})
	// Both replicas are attached: the probes sent meanwhile are answered.
	n := ok.Load()
	eventually(t, "answers during the overlap", func() bool { return ok.Load() >= n+3 })
	released := time.Now()
	e.d.mu.Lock()
	delete(e.d.delay, "detach bind-a")
	e.d.mu.Unlock()
	close(hold)
	eventually(t, "switch to unbound-a", e.activeIs("unbound-a"))
	r := e.switches()[0]
	if r.Reason != fsm.ReasonExploit || r.Mode != fsm.ModeMakeBeforeBreak || !r.Done {
		t.Fatalf("record %+v", r)
	}
	if r.OutageMS == nil || *r.OutageMS != 0 || *r.ProbesLost != 0 || *r.ProbesSent < 3 {
		t.Errorf("outage %v ms, probes lost %v of %v: want 0, none lost", deref(r.OutageMS), deref(r.ProbesLost), deref(r.ProbesSent))
	}
	if min := ms(released.Sub(alertAt)); r.ExposureMS == nil || *r.ExposureMS < min {
		t.Errorf("exposure %v ms, want at least %.1f ms (the detach was held that long after the alert)", deref(r.ExposureMS), min)
	}
}

// TestInheritedSwitchMeasuresNothing: a switch an earlier leader decided
// has no trigger this leader knows: no outage, no exposure.
func TestInheritedSwitchMeasuresNothing(t *testing.T) {
	e := newEnv(t)
	e.cl.must(t, fsm.Switch{Service: svcName, From: "bind-a", To: "unbound-a", Reason: fsm.ReasonExploit, At: time.Now().UnixNano()})
	e.start(true)
	eventually(t, "intent completed", e.activeIs("unbound-a"))
	if r := e.switches()[0]; !r.Done || r.OutageMS != nil || r.ProbesLost != nil || r.ExposureMS != nil {
		t.Errorf("record %+v", r)
	}
}

// phaseCount is how many observations the phase histogram has for phase.
func phaseCount(t *testing.T, m *Metrics, phase string) uint64 {
	t.Helper()
	var d dto.Metric
	if err := m.phases.WithLabelValues(svcName, phase).(prometheus.Histogram).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount()
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// In a rolling upgrade a node of an earlier version does not read a
// switch.done with measurements: the leader's gate refuses it, and the
// switch completes in the old form, without them.
func TestSwitchDoneWithoutMeasurementsWhileANodeIsBehind(t *testing.T) {
	e := newEnv(t)
	e.cl.mu.Lock()
	e.cl.level = fsm.BaseLevel
	e.cl.mu.Unlock()
	var ok atomic.Int64
	e.query = answers(e.d.query(svcName), &ok)
	e.start(true)
	eventually(t, "the prober got answers", func() bool { return ok.Load() >= 3 })
	e.d.attack("bind9", true)
	eventually(t, "switch to unbound-a", e.activeIs("unbound-a"))
	eventually(t, "the switch done", func() bool {
		h := e.switches()
		return len(h) == 1 && h[0].Done
	})
	if r := e.switches()[0]; r.OutageMS != nil || r.ProbesLost != nil || r.ExposureMS != nil {
		t.Fatalf("measurements written while a node does not read them: %+v", r)
	}
	if !strings.Contains(e.logs.String(), "switch done without its measurements") {
		t.Error("the fallback was not logged")
	}
}
