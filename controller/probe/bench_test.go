package probe

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ars-project/ars/fsm"
)

// BenchmarkDetection measures, against a real in-process DNS server on
// 127.0.0.1, the time from the moment the server stops answering (it drops
// every query) to the Prober's DOWN verdict, for both profiles with their
// default settings. One iteration is one outage; between outages the server
// answers again until the verdict is UP, then runs for a random part of a
// probe period so that outages fall at every phase of the probe schedule.
//
//	go test -run '^$' -bench Detection -benchtime 20x ./controller/probe/
//
// Metrics: detect-ms (mean stop→DOWN), detect-p50-ms, detect-max-ms, and
// verdict-ms (mean Transition.Detection: first failed probe → DOWN).
func BenchmarkDetection(b *testing.B) {
	for _, profile := range []string{fsm.ProfileARS, fsm.ProfilePaper} {
		b.Run(profile, func(b *testing.B) { benchDetection(b, profile) })
	}
}

func benchDetection(b *testing.B, profile string) {
	srv := startServer(b, modeAnswer)
	trans := make(chan Transition, 64)
	p, err := New(Config{
		Service: "bench", Addr: srv.Addr,
		Spec:         fsm.ProbeSpec{Query: testName, Expect: testAddr, Profile: profile},
		OnTransition: func(t Transition) { trans <- t },
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	next := func(want State) Transition {
		for {
			select {
			case t := <-trans:
				if t.To == want {
					return t
				}
			case <-time.After(30 * time.Second):
				b.Fatalf("no %s verdict within 30s", want)
			}
		}
	}
	period := time.Duration(p.Spec().Interval)
	if profile == fsm.ProfilePaper {
		period = time.Duration(p.Spec().Timeout)
	}
	var detect, verdict []time.Duration
	b.ResetTimer()
	for range b.N {
		srv.setMode(modeAnswer)
		next(StateUp)
		time.Sleep(period + rand.N(period)) // a random phase of the schedule
		stopped := time.Now()
		srv.setMode(modeDrop)
		t := next(StateDown)
		detect = append(detect, t.At.Sub(stopped))
		verdict = append(verdict, t.Detection)
	}
	b.StopTimer()
	slices.Sort(detect)
	b.ReportMetric(msec(mean(detect)), "detect-ms")
	b.ReportMetric(msec(detect[len(detect)/2]), "detect-p50-ms")
	b.ReportMetric(msec(detect[len(detect)-1]), "detect-max-ms")
	b.ReportMetric(msec(mean(verdict)), "verdict-ms")
	b.ReportMetric(0, "ns/op")
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

func msec(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
