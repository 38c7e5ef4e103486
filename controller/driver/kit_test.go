package driver

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestWatchNeverBlocks: a watcher that does not read loses events but gets
// an EventResync; a driver sending to it never waits.
func TestWatchNeverBlocks(t *testing.T) {
	sub := NewSubscriber(2)
	for i := range 5 {
		sub.Send(Event{Kind: EventChanged, State: Observation{Replica: "r", ChangeVersion: string(rune('a' + i))}})
	}
	if !sub.lost {
		t.Fatal("a full subscriber did not record the loss")
	}
	<-sub.C
	<-sub.C
	sub.Send(Event{Kind: EventChanged})
	if ev := <-sub.C; ev.Kind != EventResync {
		t.Fatalf("first event after a loss is %s, want resync", ev.Kind)
	}
	if ev := <-sub.C; ev.Kind != EventChanged {
		t.Fatalf("second event after a loss is %s, want changed", ev.Kind)
	}
}

func TestSentinelOfAndBackoff(t *testing.T) {
	if s := SentinelOf(fmt.Errorf("op: %w", &OpError{Op: "attach", Err: fmt.Errorf("%w: x", ErrConflict)})); s != ErrConflict {
		t.Fatalf("SentinelOf = %v, want ErrConflict", s)
	}
	if s := SentinelOf(errors.New("plain")); s != nil {
		t.Fatalf("SentinelOf(plain) = %v", s)
	}
	for n, want := range map[int]time.Duration{1: 50 * time.Millisecond, 2: 100 * time.Millisecond, 5: 800 * time.Millisecond, 6: time.Second, 70: time.Second} {
		if got := Backoff(n); got != want {
			t.Errorf("Backoff(%d) = %s, want %s", n, got, want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep outlived its context")
	}
}
