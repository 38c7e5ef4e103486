package cluster

import (
	"errors"
	"testing"

	"github.com/ars-project/ars/fsm"
)

func TestEventLog(t *testing.T) {
	l := NewEventLog()
	_, wait, err := l.Since(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= EventLogSize+10; i++ {
		l.Add(i, 0, nil, nil)
	}
	select {
	case <-wait:
	default:
		t.Fatal("a reader waiting for more was not woken")
	}
	// The ring keeps the last EventLogSize; older ones are gone.
	if _, _, err := l.Since(5, 10); !errors.Is(err, ErrEventsGone) {
		t.Fatalf("after 5: %v, want gone", err)
	}
	var gone *EventsGoneError
	if _, _, err := l.Since(0, 10); !errors.As(err, &gone) || gone.Floor != 10 {
		t.Fatalf("after 0: %v, want gone with floor 10", err)
	}
	got, _, err := l.Since(10, 3)
	if err != nil || len(got) != 3 || got[0].Index != 11 || got[2].Index != 13 {
		t.Fatalf("after the floor: %v %+v", err, got)
	}
	got, _, err = l.Since(EventLogSize+8, 100)
	if err != nil || len(got) != 2 || got[1].Index != EventLogSize+10 {
		t.Fatalf("the newest: %v %+v", err, got)
	}
	if o, last := l.Range(); o != 10 || last != EventLogSize+10 {
		t.Fatalf("range (%d, %d]", o, last)
	}
	// A snapshot restore replaces the state: nothing before it is held.
	l.Reset(9000)
	if _, _, err := l.Since(EventLogSize+10, 10); !errors.Is(err, ErrEventsGone) {
		t.Fatalf("after a restore: %v, want gone", err)
	}
	if got, _, err := l.Since(9000, 10); err != nil || len(got) != 0 {
		t.Fatalf("from the restore: %v %+v", err, got)
	}
}

func TestEventOf(t *testing.T) {
	data, err := fsm.Encode(3, fsm.Switch{Service: "dns", From: "a", To: "b", Reason: "dos", At: 1})
	if err != nil {
		t.Fatal(err)
	}
	e := eventOf(7, 3, data, nil)
	if e.Index != 7 || e.Term != 3 || e.Type != fsm.CmdSwitch || e.Service != "dns" || e.Refused != "" ||
		string(e.Body) == "" {
		t.Fatalf("%+v", e)
	}
	e = eventOf(8, 3, data, fsm.ErrStaleGeneration)
	if e.Refused != fsm.CodeStaleGeneration || e.Error == "" {
		t.Fatalf("refused: %+v", e)
	}
}
