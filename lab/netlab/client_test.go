package netlab

import (
	"net/netip"
	"testing"
	"time"
)

// clientWith is a Client holding results as if it had sent them, one every
// 5 ms from t0: ok[i] says whether query i was answered.
func clientWith(t0 time.Time, ok ...bool) *Client {
	c := &Client{timeout: 250 * time.Millisecond, byID: map[uint16]int{}}
	for i, answered := range ok {
		r := Result{Sent: t0.Add(time.Duration(i) * 5 * time.Millisecond)}
		if answered {
			r.RTT, r.Answer = time.Millisecond, netip.MustParseAddr("192.0.2.10")
		}
		c.results = append(c.results, r)
	}
	return c
}

func TestOutages(t *testing.T) {
	t0 := time.Unix(100, 0)
	end := t0.Add(time.Hour)
	// The first client's run ends inside a gap; its successor's first
	// queries are lost too, then answered: one gap, closed at the
	// successor's first answer (two halves made the first look open:
	// "never answered again").
	prev := clientWith(t0, true, true, false, false)
	cur := clientWith(t0.Add(20*time.Millisecond), false, true, true)
	o := Outages(t0, end, prev, cur)
	want := Gap{Start: t0.Add(10 * time.Millisecond), End: t0.Add(25 * time.Millisecond), Lost: 3}
	if o.Sent != 7 || o.Lost != 3 || o.Gaps != 1 || len(o.Spans) != 1 || o.Spans[0] != want || o.Longest != 15*time.Millisecond {
		t.Fatalf("across a renewal: %+v, want one gap %+v", o, want)
	}
	// The successor answers at once: the gap ends there.
	o = Outages(t0, end, prev, clientWith(t0.Add(20*time.Millisecond), true))
	if o.Gaps != 1 || o.Spans[0].Open || !o.Spans[0].End.Equal(t0.Add(20*time.Millisecond)) {
		t.Fatalf("closed by the successor's first answer: %+v", o)
	}
	// Nothing answered after the gap: it stays open.
	o = Outages(t0, end, prev, nil)
	if o.Gaps != 1 || !o.Spans[0].Open || o.Spans[0].Lost != 2 {
		t.Fatalf("no successor: %+v", o)
	}
	// The window: only queries sent in [from, to) count.
	o = Outages(t0.Add(5*time.Millisecond), t0.Add(10*time.Millisecond), prev, cur)
	if o.Sent != 1 || o.Lost != 0 || o.Answers[netip.MustParseAddr("192.0.2.10")] != 1 {
		t.Fatalf("window: %+v", o)
	}
	// A query still within its timeout is not judged yet.
	fresh := clientWith(time.Now(), false)
	if o := fresh.Outage(time.Time{}, time.Now().Add(time.Second)); o.Sent != 0 || o.Lost != 0 {
		t.Fatalf("a pending query counted: %+v", o)
	}
}
