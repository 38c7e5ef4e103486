package probe

import "time"

// Clock is the time source of a Prober; tests inject a manual one.
type Clock interface {
	Now() time.Time
	// NewTimer returns a started timer that sends the time on C once d has
	// passed (at once when d <= 0).
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer. Stop and Reset discard a pending, unreceived
// tick (the semantics of time.Timer since Go 1.23).
type Timer interface {
	C() <-chan time.Time
	Stop()
	Reset(d time.Duration)
}

// SystemClock is the real clock.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time   { return t.t.C }
func (t systemTimer) Stop()                 { t.t.Stop() }
func (t systemTimer) Reset(d time.Duration) { t.t.Reset(d) }
