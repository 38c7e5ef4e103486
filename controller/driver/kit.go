package driver

import (
	"context"
	"errors"
	"time"
)

// What every driver needs the same way: the sentinel an error carries, the
// retry pause, and the non-blocking fan-out of Watch events.

var sentinels = []error{ErrNotFound, ErrUnsupported, ErrUnavailable, ErrInvalidState, ErrConflict, ErrDenied, ErrInvalid, ErrFailed}

// SentinelOf returns the sentinel error (ErrNotFound, …) in err's chain,
// or nil if it carries none.
func SentinelOf(err error) error {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}

// Backoff is the pause before attempt n+1 of a driver operation: 50 ms
// doubling, capped at 1 s.
func Backoff(n int) time.Duration {
	d := 50 * time.Millisecond << (n - 1)
	if d > time.Second || d <= 0 {
		d = time.Second
	}
	return d
}

// Sleep waits d, or less if ctx ends first; it reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Subscriber is one caller of a driver's Watch: the channel it reads and
// whether it lost an event. Not safe for concurrent use: the driver sends
// under its own lock.
type Subscriber struct {
	C    chan Event
	lost bool
}

// NewSubscriber returns a Subscriber with a channel of buf events.
func NewSubscriber(buf int) *Subscriber { return &Subscriber{C: make(chan Event, buf)} }

// Send never blocks: a full subscriber loses the event and gets an
// EventResync as soon as it has room again.
func (s *Subscriber) Send(ev Event) {
	if s.lost {
		select {
		case s.C <- Event{Kind: EventResync, At: ev.At}:
			s.lost = false
		default:
			return
		}
	}
	select {
	case s.C <- ev:
	default:
		s.lost = true
	}
}
