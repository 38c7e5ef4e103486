package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ars-project/ars/fsm"
)

// waitFor polls cond until it holds or the test's patience (10 s, generous
// for a race build on 2 cores) runs out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// recorder collects a Prober's callbacks.
type recorder struct {
	mu      sync.Mutex
	results []Result
	trans   []Transition
}

func (r *recorder) onResult(x Result) {
	r.mu.Lock()
	r.results = append(r.results, x)
	r.mu.Unlock()
}

func (r *recorder) onTransition(x Transition) {
	r.mu.Lock()
	r.trans = append(r.trans, x)
	r.mu.Unlock()
}

func (r *recorder) transitions() []Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Transition(nil), r.trans...)
}

func (r *recorder) reasons() map[Reason]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[Reason]int{}
	for _, x := range r.results {
		m[x.Reason]++
	}
	return m
}

// nth waits for the n-th transition (1-based) and returns it.
func (r *recorder) nth(t *testing.T, n int) Transition {
	t.Helper()
	waitFor(t, fmt.Sprintf("transition %d", n), func() bool { return len(r.transitions()) >= n })
	return r.transitions()[n-1]
}

// startProber runs p until the test ends and checks that Run returns nil.
func startProber(t *testing.T, p *Prober) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestProberARS: against a real in-process server, the default ars profile
// goes UP, DOWN when the server stops answering, and UP again when it comes
// back; the metrics count it all.
func TestProberARS(t *testing.T) {
	t.Parallel()
	srv := startServer(t, modeAnswer)
	rec := &recorder{}
	metrics := NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics)
	var active, peak atomic.Int64
	// What Status said when each transition was announced: the verdict the
	// transition announces (the controller weighs Status on a transition).
	var (
		p        *Prober
		seenMu   sync.Mutex
		seenAtTx []State
	)
	onTransition := func(x Transition) {
		seenMu.Lock()
		seenAtTx = append(seenAtTx, p.Status().State)
		seenMu.Unlock()
		rec.onTransition(x)
	}
	// The default 50 ms interval, with a timeout and window that a loaded
	// race build cannot hit by accident.
	p, err := New(Config{
		Service: "dns", Addr: srv.Addr,
		Spec: fsm.ProbeSpec{Query: testName, Expect: testAddr,
			Timeout: fsm.Duration(500 * ms), Window: fsm.Duration(time.Second)},
		Query:    countingQuery(&active, &peak, Query),
		OnResult: rec.onResult, OnTransition: onTransition, Metrics: metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.MaxInFlight() != 11 {
		t.Fatalf("MaxInFlight = %d, want ceil(500ms/50ms)+1 = 11", p.MaxInFlight())
	}
	stop := startProber(t, p)

	if x := rec.nth(t, 1); x.From != StateUnknown || x.To != StateUp {
		t.Fatalf("first transition %+v, want unknown→up", x)
	}
	srv.setMode(modeDrop)
	stopped := time.Now()
	x := rec.nth(t, 2)
	if x.To != StateDown || x.Reason != ReasonTimeout || x.Failures < 3 || x.Detection <= 0 ||
		!x.At.Equal(x.Since.Add(x.Detection)) || x.Since.Before(stopped.Add(-time.Duration(p.Spec().Interval))) {
		t.Fatalf("second transition %+v, want DOWN by timeouts since after the stop (%v)", x, stopped)
	}
	if s := p.Status(); s.State != StateDown || !s.Since.Equal(x.Since) {
		t.Errorf("Status %+v while down", s)
	}
	srv.setMode(modeAnswer)
	if x := rec.nth(t, 3); x.To != StateUp || x.Outage <= 0 {
		t.Fatalf("third transition %+v, want UP with the outage", x)
	}
	stop()

	seenMu.Lock()
	for i, x := range rec.transitions() {
		if i >= len(seenAtTx) || seenAtTx[i] != x.To {
			t.Errorf("transition %d to %s announced while Status said %v", i+1, x.To, seenAtTx)
		}
	}
	seenMu.Unlock()
	if n := active.Load(); n != 0 {
		t.Errorf("%d probes still running after Run returned", n)
	}
	if n := peak.Load(); n > 11 {
		t.Errorf("%d probes in flight at once, want at most 11", n)
	}
	got := gather(t, reg)
	for _, want := range []string{
		`ars_probe_results_total{reason="ok",service="dns"}`,
		`ars_probe_results_total{reason="timeout",service="dns"}`,
		`ars_probe_duration_seconds_count{outcome="ok",service="dns"}`,
		`ars_probe_duration_seconds_count{outcome="fail",service="dns"}`,
		`ars_probe_detection_seconds_count{service="dns"} 1`,
		`ars_probe_verdicts_total{service="dns",state="down"} 1`,
		`ars_probe_verdicts_total{service="dns",state="up"} 2`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %s\n%s", want, got)
		}
	}
	if strings.Contains(got, "ars_probe_state{") {
		t.Errorf("state gauge left behind after Run returned:\n%s", got)
	}
}

// TestProberPaper: the paper profile probes one at a time and declares DOWN
// after 3 consecutive failures (SERVFAILs, which come at once).
func TestProberPaper(t *testing.T) {
	t.Parallel()
	srv := startServer(t, modeAnswer)
	rec := &recorder{}
	var active, peak atomic.Int64
	p, err := New(Config{
		Addr:     srv.Addr,
		Spec:     fsm.ProbeSpec{Query: testName, Profile: "Paper", Timeout: fsm.Duration(time.Second)},
		Query:    countingQuery(&active, &peak, Query),
		OnResult: rec.onResult, OnTransition: rec.onTransition,
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.MaxInFlight() != 1 {
		t.Fatalf("MaxInFlight = %d, want 1", p.MaxInFlight())
	}
	startProber(t, p)
	rec.nth(t, 1)
	srv.setMode(modeServFail)
	x := rec.nth(t, 2)
	if x.To != StateDown || x.Failures != 3 || x.Reason != ReasonRcode {
		t.Fatalf("transition %+v, want DOWN after 3 SERVFAILs", x)
	}
	if n := peak.Load(); n != 1 {
		t.Errorf("%d probes in flight at once, want 1", n)
	}
	if rec.reasons()[ReasonRcode] < 3 {
		t.Errorf("results %v", rec.reasons())
	}
}

func TestNewInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no-address", Config{Spec: fsm.ProbeSpec{Query: testName}}},
		{"hostname-address", Config{Addr: "localhost:53", Spec: fsm.ProbeSpec{Query: testName}}},
		{"no-query", Config{Addr: "127.0.0.1:53"}},
		{"bad-profile", Config{Addr: "127.0.0.1:53", Spec: fsm.ProbeSpec{Query: testName, Profile: "fast"}}},
		{"bad-expect", Config{Addr: "127.0.0.1:53", Spec: fsm.ProbeSpec{Query: testName, Expect: "x"}}},
		{"negative-interval", Config{Addr: "127.0.0.1:53", Spec: fsm.ProbeSpec{Query: testName, Interval: -1}}},
		{"negative-failures", Config{Addr: "127.0.0.1:53", Spec: fsm.ProbeSpec{Query: testName, Failures: -2}}},
	} {
		if _, err := New(tc.cfg); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: New = %v, want ErrInvalidSpec", tc.name, err)
		}
	}
}

// TestProberInFlightBound: with probes that never finish, the ars schedule
// keeps at most ceil(timeout/interval)+1 in flight and counts the skipped
// slots; cancelling Run cancels them and waits for them. Manual clock.
func TestProberInFlightBound(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	var calls, active, peak atomic.Int64
	blocking := func(ctx context.Context, addr string, spec fsm.ProbeSpec) Result {
		calls.Add(1)
		<-ctx.Done()
		return Result{Reason: ReasonCanceled, Rcode: -1, Err: ErrCanceled}
	}
	metrics := NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics)
	rec := &recorder{}
	p, err := New(Config{
		Service: "s", Addr: "127.0.0.1:53", Spec: fsm.ProbeSpec{Query: testName}, Clock: clk,
		Query: countingQuery(&active, &peak, blocking), Metrics: metrics, OnResult: rec.onResult,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := startProber(t, p)
	for slot := 1; slot <= 8; slot++ {
		wantCalls := int64(min(slot, 3))
		waitFor(t, fmt.Sprintf("slot %d served", slot), func() bool {
			return calls.Load() == wantCalls && clk.armedAt(clk.Now().Add(50*ms))
		})
		if slot == 1 {
			if err := p.Run(context.Background()); !errors.Is(err, ErrRunning) {
				t.Errorf("second Run = %v, want ErrRunning", err)
			}
		}
		clk.Advance(50 * ms)
	}
	waitFor(t, "slot 9 served", func() bool { return clk.armedAt(clk.Now().Add(50 * ms)) })
	if n := peak.Load(); n != 3 {
		t.Errorf("peak in flight %d, want 3", n)
	}
	if got := gather(t, reg); !strings.Contains(got, `ars_probe_skipped_total{service="s"} 6`) ||
		!strings.Contains(got, `ars_probe_in_flight{service="s"} 3`) {
		t.Errorf("metrics:\n%s", got)
	}
	stop()
	if n := active.Load(); n != 0 {
		t.Errorf("%d probes still running after Run returned", n)
	}
	if len(rec.reasons()) != 0 {
		t.Errorf("cancelled probes reported: %v", rec.reasons())
	}
}

// TestProberPaperSequential: in the paper profile the next probe starts only
// after the previous one finished, and no sooner than PaperMinSpacing after
// its start. Manual clock, scripted results.
func TestProberPaperSequential(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	var active, peak atomic.Int64
	release := make(chan Result)
	var calls atomic.Int64
	scripted := func(ctx context.Context, addr string, spec fsm.ProbeSpec) Result {
		calls.Add(1)
		select {
		case r := <-release:
			return r
		case <-ctx.Done():
			return Result{Reason: ReasonCanceled, Err: ErrCanceled}
		}
	}
	rec := &recorder{}
	p, err := New(Config{
		Addr: "127.0.0.1:53", Spec: fsm.ProbeSpec{Query: testName, Profile: fsm.ProfilePaper}, Clock: clk,
		Query: countingQuery(&active, &peak, scripted), OnResult: rec.onResult, OnTransition: rec.onTransition,
	})
	if err != nil {
		t.Fatal(err)
	}
	startProber(t, p)
	fail := Result{Reason: ReasonTimeout, Rcode: -1, Err: ErrTimeout}
	good := Result{OK: true, Reason: ReasonOK}

	waitFor(t, "first probe", func() bool { return calls.Load() == 1 })
	clk.Advance(time.Second) // a slow probe: nothing else starts meanwhile
	release <- fail
	// The previous start is long past: the next probe starts at once.
	waitFor(t, "second probe", func() bool { return calls.Load() == 2 })
	release <- good
	// It finished at once: the third waits for PaperMinSpacing.
	waitFor(t, "third probe scheduled", func() bool { return clk.armedAt(clk.Now().Add(PaperMinSpacing)) })
	if calls.Load() != 2 {
		t.Fatalf("%d probes started before the spacing passed", calls.Load())
	}
	clk.Advance(PaperMinSpacing)
	waitFor(t, "third probe", func() bool { return calls.Load() == 3 })
	for i := 0; i < 3; i++ {
		if i > 0 {
			waitFor(t, "next probe", func() bool { return calls.Load() == int64(4+i-1) })
		}
		clk.Advance(500 * ms)
		release <- fail
	}
	x := rec.nth(t, 2)
	if x.To != StateDown || x.Failures != 3 || x.Detection != 1500*ms {
		t.Fatalf("transition %+v, want DOWN after 3 × 500ms", x)
	}
	if n := peak.Load(); n != 1 {
		t.Errorf("peak in flight %d, want 1", n)
	}
}

// TestProberARSFakeClock: the whole ars loop on a manual clock with scripted
// results: DOWN comes from the window deadline timer, at the instant the
// verdict computes.
func TestProberARSFakeClock(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	start := clk.Now()
	var up atomic.Bool
	up.Store(true)
	var calls atomic.Int64
	instant := func(ctx context.Context, addr string, spec fsm.ProbeSpec) Result {
		calls.Add(1)
		if up.Load() {
			return Result{OK: true, Reason: ReasonOK}
		}
		return Result{Reason: ReasonNetwork, Rcode: -1, Err: ErrNetwork} // e.g. ICMP port unreachable
	}
	rec := &recorder{}
	p, err := New(Config{
		Addr: "127.0.0.1:53", Spec: fsm.ProbeSpec{Query: testName, Window: fsm.Duration(250 * ms)}, Clock: clk,
		Query: instant, OnResult: rec.onResult, OnTransition: rec.onTransition,
	})
	if err != nil {
		t.Fatal(err)
	}
	startProber(t, p)
	served := func(n int64) {
		waitFor(t, fmt.Sprintf("probe %d done", n), func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return calls.Load() == n && int64(len(rec.results)) == n
		})
	}
	served(1) // t=0: ok
	rec.nth(t, 1)
	up.Store(false)
	for i := int64(2); i <= 6; i++ { // t=50,100,150,200,250: failures
		clk.Advance(50 * ms)
		served(i)
	}
	if len(rec.transitions()) != 1 {
		t.Fatalf("DOWN before the window ended: %+v", rec.transitions())
	}
	// The window ends 250 ms (+1ns) after the last answer at t=0: the
	// deadline timer, not a result, makes the verdict.
	waitFor(t, "deadline armed", func() bool { return clk.armedAt(start.Add(250*ms + time.Nanosecond)) })
	clk.Advance(time.Nanosecond)
	x := rec.nth(t, 2)
	if x.To != StateDown || !x.At.Equal(start.Add(250*ms+time.Nanosecond)) || !x.Since.Equal(start.Add(50*ms)) ||
		x.Reason != ReasonNetwork || x.Failures != 5 {
		t.Fatalf("transition %+v", x)
	}
}

// countingQuery wraps q, tracking how many calls run at once.
func countingQuery(active, peak *atomic.Int64, q QueryFunc) QueryFunc {
	return func(ctx context.Context, addr string, spec fsm.ProbeSpec) Result {
		n := active.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		defer active.Add(-1)
		return q(ctx, addr, spec)
	}
}

// gather renders the registry's metrics as "name{labels} value" lines.
func gather(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			ls := "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				fmt.Fprintf(&b, "%s%s %g\n", mf.GetName(), ls, m.GetCounter().GetValue())
			case m.GetGauge() != nil:
				fmt.Fprintf(&b, "%s%s %g\n", mf.GetName(), ls, m.GetGauge().GetValue())
			case m.GetHistogram() != nil:
				fmt.Fprintf(&b, "%s_count%s %d\n", mf.GetName(), ls, m.GetHistogram().GetSampleCount())
			}
		}
	}
	return b.String()
}

// fakeClock is a manual Clock: time moves only by Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c     *fakeClock
	ch    chan time.Time
	when  time.Time
	armed bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	t.Reset(d)
	return t
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fireLocked()
}

// armedAt reports whether a timer is armed to fire at exactly at.
func (c *fakeClock) armedAt(at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.timers {
		if t.armed && t.when.Equal(at) {
			return true
		}
	}
	return false
}

func (c *fakeClock) fireLocked() {
	for _, t := range c.timers {
		if t.armed && !t.when.After(c.now) {
			t.armed = false
			select {
			case t.ch <- c.now:
			default:
			}
		}
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.armed = false
	t.drain()
}

func (t *fakeTimer) Reset(d time.Duration) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.drain()
	t.when, t.armed = t.c.now.Add(d), true
	t.c.fireLocked()
}

func (t *fakeTimer) drain() {
	select {
	case <-t.ch:
	default:
	}
}
