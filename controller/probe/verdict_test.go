package probe

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/fsm"
)

const ms = time.Millisecond

// t0 is the verdict start in the verdict tests.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// ev is one input of a verdict table test.
type ev struct {
	kind   evKind
	start  time.Duration // result: probe start, since t0
	at     time.Duration // result: completion; advance: the time; since t0
	reason Reason        // failed result: its reason (timeout if empty)
}

type evKind int

const (
	evOK evKind = iota
	evFail
	evCanceled
	evAdvance         // Advance(at)
	evAdvanceDeadline // Advance(Deadline()); at is ignored; no-op when there is none
)

func ok(start, at time.Duration) ev { return ev{kind: evOK, start: start, at: at} }
func fl(start, at time.Duration) ev { return ev{kind: evFail, start: start, at: at} }
func flr(start, at time.Duration, r Reason) ev {
	return ev{kind: evFail, start: start, at: at, reason: r}
}
func adv(at time.Duration) ev { return ev{kind: evAdvance, at: at} }
func advDeadline() ev         { return ev{kind: evAdvanceDeadline} }

// tr is a Transition with times relative to t0, formatted for comparison.
func tr(to State, at, since, detection, outage time.Duration, failures int, reason Reason) string {
	return fmt.Sprintf("%s at=%v since=%v detection=%v outage=%v failures=%d reason=%q",
		to, at, since, detection, outage, failures, reason)
}

func fmtTransition(t Transition) string {
	return tr(t.To, t.At.Sub(t0), t.Since.Sub(t0), t.Detection, t.Outage, t.Failures, t.Reason)
}

func up(at time.Duration) string { return tr(StateUp, at, at, 0, 0, 0, "") }

func upAfter(at, downSince time.Duration) string {
	return tr(StateUp, at, at, 0, at-downSince, 0, "")
}

func down(at, since time.Duration, failures int, reason Reason) string {
	return tr(StateDown, at, since, at-since, 0, failures, reason)
}

// runVerdict feeds events to a fresh verdict and returns its transitions.
func runVerdict(t *testing.T, spec fsm.ProbeSpec, evs []ev) (*Verdict, []string) {
	t.Helper()
	v, err := NewVerdict(spec, t0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, e := range evs {
		var (
			x  Transition
			ch bool
		)
		switch e.kind {
		case evOK:
			x, ch = v.Observe(Result{Start: t0.Add(e.start), RTT: e.at - e.start, OK: true, Reason: ReasonOK}, t0.Add(e.at))
		case evFail, evCanceled:
			r := Result{Start: t0.Add(e.start), RTT: e.at - e.start, Reason: e.reason, Rcode: -1}
			if e.kind == evCanceled {
				r.Reason = ReasonCanceled
			} else if r.Reason == "" {
				r.Reason = ReasonTimeout
			}
			r.Err = r.Reason.Err()
			x, ch = v.Observe(r, t0.Add(e.at))
		case evAdvance:
			x, ch = v.Advance(t0.Add(e.at))
		case evAdvanceDeadline:
			d, okd := v.Deadline()
			if !okd {
				continue
			}
			x, ch = v.Advance(d)
		}
		if ch {
			if x.From == x.To {
				t.Errorf("event %d: transition from %s to itself", i, x.From)
			}
			got = append(got, fmtTransition(x))
		}
	}
	return v, got
}

func paperSpec() fsm.ProbeSpec {
	return normalize(fsm.ProbeSpec{Query: testName, Profile: fsm.ProfilePaper})
}

func arsSpec() fsm.ProbeSpec { return normalize(fsm.ProbeSpec{Query: testName}) }

func TestVerdictPaper(t *testing.T) {
	t.Parallel()
	one := paperSpec()
	one.Failures = 1
	cases := []struct {
		name string
		spec fsm.ProbeSpec
		evs  []ev
		want []string
	}{
		{
			name: "three-timeouts",
			evs:  []ev{ok(0, 1*ms), fl(1*ms, 501*ms), fl(501*ms, 1001*ms), fl(1001*ms, 1501*ms)},
			want: []string{up(1 * ms), down(1501*ms, 1*ms, 3, ReasonTimeout)},
		},
		{
			name: "two-timeouts-then-an-answer",
			evs:  []ev{ok(0, 1*ms), fl(1*ms, 501*ms), fl(501*ms, 1001*ms), ok(1001*ms, 1002*ms), fl(1002*ms, 1502*ms)},
			want: []string{up(1 * ms)},
		},
		{
			name: "down-then-recovered",
			evs: []ev{ok(0, 1*ms), fl(1*ms, 501*ms), fl(501*ms, 1001*ms), fl(1001*ms, 1501*ms),
				fl(1501*ms, 2001*ms), ok(2001*ms, 2003*ms)},
			want: []string{up(1 * ms), down(1501*ms, 1*ms, 3, ReasonTimeout), upAfter(2003*ms, 1*ms)},
		},
		{
			name: "any-failure-counts-last-reason-reported",
			evs: []ev{ok(0, 1*ms), flr(10*ms, 11*ms, ReasonRcode), flr(21*ms, 22*ms, ReasonNetwork),
				flr(32*ms, 532*ms, ReasonTimeout)},
			want: []string{up(1 * ms), down(532*ms, 10*ms, 3, ReasonTimeout)},
		},
		{
			name: "canceled-results-ignored",
			evs: []ev{ok(0, 1*ms), fl(1*ms, 501*ms), fl(501*ms, 1001*ms), {kind: evCanceled, start: 1001 * ms, at: 1100 * ms},
				fl(1100*ms, 1600*ms)},
			want: []string{up(1 * ms), down(1600*ms, 1*ms, 3, ReasonTimeout)},
		},
		{
			name: "down-from-the-start",
			evs:  []ev{fl(0, 500*ms), fl(500*ms, 1000*ms), fl(1000*ms, 1500*ms)},
			want: []string{down(1500*ms, 0, 3, ReasonTimeout)},
		},
		{
			name: "time-alone-changes-nothing",
			evs:  []ev{ok(0, 1*ms), fl(1*ms, 501*ms), adv(time.Hour), advDeadline()},
			want: []string{up(1 * ms)},
		},
		{
			name: "failures-1",
			spec: one,
			evs:  []ev{ok(0, 1*ms), fl(1*ms, 501*ms), fl(501*ms, 1001*ms), ok(1001*ms, 1002*ms)},
			want: []string{up(1 * ms), down(501*ms, 1*ms, 1, ReasonTimeout), upAfter(1002*ms, 1*ms)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			if spec.Query == "" {
				spec = paperSpec()
			}
			_, got := runVerdict(t, spec, tc.evs)
			compareTransitions(t, got, tc.want)
		})
	}
}

func TestVerdictARS(t *testing.T) {
	t.Parallel()
	const eps = time.Nanosecond
	cases := []struct {
		name string
		evs  []ev
		want []string
	}{
		{
			// Timeouts every 50 ms after the last answer at 51 ms: the third
			// failure (300 ms) comes before the window (251 ms after the answer)
			// ends, so the deadline decides.
			name: "outage-window-decides",
			evs: []ev{ok(0, 1*ms), ok(50*ms, 51*ms), fl(100*ms, 200*ms), fl(150*ms, 250*ms), fl(200*ms, 300*ms),
				advDeadline()},
			want: []string{up(1 * ms), down(301*ms+eps, 100*ms, 3, ReasonTimeout)},
		},
		{
			name: "fast-failures-wait-for-the-window",
			evs: []ev{ok(0, 1*ms), flr(50*ms, 51*ms, ReasonNetwork), flr(100*ms, 101*ms, ReasonNetwork),
				flr(150*ms, 151*ms, ReasonNetwork), adv(251 * ms), advDeadline()},
			want: []string{up(1 * ms), down(251*ms+eps, 50*ms, 3, ReasonNetwork)},
		},
		{
			name: "window-passed-but-too-few-failures",
			evs:  []ev{ok(0, 1*ms), fl(50*ms, 150*ms), fl(100*ms, 200*ms), adv(400 * ms), advDeadline(), fl(150*ms, 410*ms)},
			want: []string{up(1 * ms), down(410*ms, 50*ms, 3, ReasonTimeout)},
		},
		{
			name: "an-answer-resets-the-failures",
			evs: []ev{ok(0, 1*ms), fl(50*ms, 150*ms), fl(100*ms, 200*ms), ok(200*ms, 201*ms), fl(250*ms, 350*ms),
				fl(300*ms, 400*ms), adv(600 * ms), advDeadline()},
			want: []string{up(1 * ms)},
		},
		{
			name: "stale-failure-ignored",
			evs: []ev{ok(0, 1*ms), ok(100*ms, 101*ms), fl(50*ms, 150*ms), fl(150*ms, 250*ms), fl(200*ms, 300*ms),
				adv(600 * ms), advDeadline()},
			want: []string{up(1 * ms)},
		},
		{
			name: "late-answer-of-an-older-probe-still-counts",
			evs:  []ev{ok(0, 1*ms), fl(100*ms, 200*ms), fl(150*ms, 250*ms), ok(50*ms, 251*ms), adv(600 * ms)},
			want: []string{up(1 * ms)},
		},
		{
			name: "down-since-start",
			evs:  []ev{fl(0, 100*ms), fl(50*ms, 150*ms), fl(100*ms, 200*ms), adv(250 * ms), advDeadline()},
			want: []string{down(250*ms+eps, 0, 3, ReasonTimeout)},
		},
		{
			name: "silence-exactly-window-is-not-down",
			evs:  []ev{ok(0, 0), fl(50*ms, 60*ms), fl(100*ms, 110*ms), fl(150*ms, 160*ms), adv(250 * ms), ok(250*ms, 250*ms), adv(time.Hour)},
			want: []string{up(0)},
		},
		{
			name: "recovery",
			evs: []ev{ok(0, 1*ms), fl(50*ms, 150*ms), fl(100*ms, 200*ms), fl(150*ms, 250*ms), advDeadline(),
				fl(200*ms, 300*ms), fl(250*ms, 350*ms), ok(300*ms, 352*ms), ok(350*ms, 351*ms)},
			want: []string{up(1 * ms), down(251*ms+eps, 50*ms, 3, ReasonTimeout), upAfter(352*ms, 50*ms)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, got := runVerdict(t, window(250*ms), tc.evs)
			compareTransitions(t, got, tc.want)
		})
	}
}

func TestVerdictStatusAndDeadline(t *testing.T) {
	t.Parallel()
	v, err := NewVerdict(window(250*ms), t0)
	if err != nil {
		t.Fatal(err)
	}
	if s := v.Status(); s.State != StateUnknown || !s.Since.Equal(t0) || !s.LastOK.IsZero() {
		t.Fatalf("initial status %+v", s)
	}
	v.Observe(Result{Start: t0, OK: true, Reason: ReasonOK}, t0.Add(ms))
	for i := 1; i <= 3; i++ {
		if _, ok := v.Deadline(); ok {
			t.Fatalf("deadline with %d failures", i-1)
		}
		v.Observe(Result{Start: t0.Add(time.Duration(i) * 50 * ms), Reason: ReasonTimeout}, t0.Add(time.Duration(i)*50*ms+100*ms))
	}
	d, ok := v.Deadline()
	if want := t0.Add(251*ms + time.Nanosecond); !ok || !d.Equal(want) {
		t.Fatalf("Deadline = %v, %v; want %v", d, ok, want)
	}
	if _, ch := v.Advance(d.Add(-time.Nanosecond)); ch {
		t.Fatal("down before the deadline")
	}
	if _, ch := v.Advance(d); !ch {
		t.Fatal("not down at the deadline")
	}
	s := v.Status()
	if s.State != StateDown || !s.Since.Equal(t0.Add(50*ms)) || s.Detection != d.Sub(t0.Add(50*ms)) ||
		s.Failures != 3 || s.LastReason != ReasonTimeout || !s.LastOK.Equal(t0.Add(ms)) || !s.At.Equal(d) {
		t.Fatalf("down status %+v", s)
	}
	if _, ok := v.Deadline(); ok {
		t.Fatal("deadline while down")
	}
}

func TestNewVerdictInvalid(t *testing.T) {
	t.Parallel()
	for _, s := range []fsm.ProbeSpec{
		{Query: testName, Profile: "fast"},
		{Query: testName, Failures: -1},
		{Query: testName, Window: -1},
	} {
		if _, err := NewVerdict(s, t0); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("NewVerdict(%+v) = %v, want ErrInvalidSpec", s, err)
		}
	}
}

func compareTransitions(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("transitions:\n got:\n  %s\n want:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
