package controller

import (
	"slices"
	"sync"
	"time"

	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/fsm"
)

// What a switch record says about clients is measured here, from the
// probes the leader sends to the service address: its prober's and the
// switch's verification probes, one stream per service. (Only a client of
// the service can count the queries clients lost; the leader counts its
// own probes, and says so: probes_lost, not lost queries.)

// probeSample is one probe the leader sent to a service address: when it
// was sent, when its result arrived and whether it was a valid answer.
type probeSample struct {
	sent, done time.Time
	ok         bool
}

// Bounds of a service's probe log: samples older than sampleKeep before
// the newest are dropped, and at most sampleMax are kept. A switch whose
// last answer before the trigger has left the log records no outage.
const (
	sampleKeep = time.Minute
	sampleMax  = 4096
)

// sampleLog is the recent probes of one service, in arrival order. Probers
// add to it from their goroutines, the loop from its verification.
type sampleLog struct {
	mu sync.Mutex
	s  []probeSample
}

// add records a probe result that arrived at done. Cancelled probes say
// nothing about the service and are not recorded.
func (l *sampleLog) add(res probe.Result, done time.Time) {
	if res.Reason == probe.ReasonCanceled || res.Start.IsZero() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s = append(l.s, probeSample{sent: res.Start, done: done, ok: res.OK})
	drop := 0
	for drop < len(l.s) && (len(l.s)-drop > sampleMax || done.Sub(l.s[drop].done) > sampleKeep) {
		drop++
	}
	if drop > 0 {
		l.s = slices.Delete(l.s, 0, drop)
	}
}

// samples returns a copy of the log.
func (l *sampleLog) samples() []probeSample {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.s)
}

// outageFigures is what the leader's probes saw of one switch.
type outageFigures struct {
	// outage is the time without a valid answer: the sum, over every run
	// of lost probes, of the time from the last answer before the run to
	// the first answer after it.
	outage time.Duration
	// sent counts the probes sent after the last answer before the
	// trigger, up to the end; lost those of them without a valid answer.
	sent, lost int
}

// measureOutage is the outage clients could see around a switch, as the
// leader's probes through the service address saw it, from the last
// answered probe sent at or before trigger (the first failed probe of a
// DoS verdict, an alert's time) to end (the first answer after the
// critical path). Probes are taken in the order they were sent; a probe
// still in flight is not in samples and counts for nothing. It reports
// false when the samples cannot tell: no answered probe sent at or before
// the trigger (the outage began before the log does, or before this
// leader probed), no probe after it, or a span of more than maxHole
// without a probe sent (nobody looked). Pure.
func measureOutage(samples []probeSample, trigger, end time.Time, maxHole time.Duration) (outageFigures, bool) {
	s := slices.Clone(samples)
	slices.SortStableFunc(s, func(a, b probeSample) int { return a.sent.Compare(b.sent) })
	first := -1
	for i, x := range s {
		if x.sent.After(trigger) {
			break
		}
		if x.ok {
			first = i
		}
	}
	if first < 0 {
		return outageFigures{}, false
	}
	var f outageFigures
	last, prev := s[first].done, s[first].sent
	var gapFrom time.Time
	inGap := false
	for _, x := range s[first+1:] {
		if x.sent.After(end) {
			break
		}
		if x.sent.Sub(prev) > maxHole {
			return outageFigures{}, false
		}
		prev = x.sent
		f.sent++
		if !x.ok {
			f.lost++
			if !inGap {
				gapFrom, inGap = last, true
			}
			continue
		}
		if inGap {
			f.outage += max(x.done.Sub(gapFrom), 0)
			inGap = false
		}
		if x.done.After(last) {
			last = x.done
		}
	}
	if inGap {
		// No answer closed the last run before end: it lasts until end.
		f.outage += max(end.Sub(gapFrom), 0)
	}
	if f.sent == 0 || end.Sub(prev) > maxHole {
		return outageFigures{}, false
	}
	return f, true
}

// maxProbeHole is the longest span without a probe sent that still counts
// as watched, for a service's probe spec: three probe periods (interval
// plus timeout; the paper profile sends the next probe when the previous
// one is over), and at least a second.
func maxProbeHole(p fsm.ProbeSpec) time.Duration {
	return max(3*(time.Duration(p.Interval)+time.Duration(p.Timeout)), time.Second)
}

// switchFigures fills in what the leader measured of a switch: the outage
// its probes saw and the exposure (trigger to the old replica's detach).
// trigger is zero when unknown (a switch an earlier leader decided): then
// neither is measured.
func switchFigures(d *fsm.SwitchDone, samples []probeSample, trigger, detached, end time.Time, maxHole time.Duration) {
	if trigger.IsZero() {
		return
	}
	if f, ok := measureOutage(samples, trigger, end, maxHole); ok {
		d.OutageMS, d.ProbesSent, d.ProbesLost = ptr(ms(f.outage)), ptr(f.sent), ptr(f.lost)
	}
	if !detached.IsZero() {
		d.ExposureMS = ptr(ms(max(detached.Sub(trigger), 0)))
	}
}

func ptr[T any](v T) *T { return &v }
