package lab

import (
	"errors"
	"strings"
	"testing"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/lab/vcwatch"
)

type fakeReplicas struct {
	calls []string
	fail  map[string]bool // "link r1": fails
}

func (f *fakeReplicas) do(op, n string) error {
	f.calls = append(f.calls, op+" "+n)
	if f.fail[op+" "+n] {
		return errors.New("injected")
	}
	return nil
}
func (f *fakeReplicas) Start(n string) error   { return f.do("start", n) }
func (f *fakeReplicas) Kill(n string) error    { return f.do("kill", n) }
func (f *fakeReplicas) Suspend(n string) error { return f.do("suspend", n) }
func (f *fakeReplicas) Resume(n string) error  { return f.do("resume", n) }
func (f *fakeReplicas) Link(n string) error    { return f.do("link", n) }
func (f *fakeReplicas) Unlink(n string) error  { return f.do("unlink", n) }
func (f *fakeReplicas) Reset(n string) error   { return f.do("reset", n) }
func (f *fakeReplicas) take() string           { s := strings.Join(f.calls, ", "); f.calls = nil; return s }

const (
	on   = types.VirtualMachinePowerStatePoweredOn
	off  = types.VirtualMachinePowerStatePoweredOff
	susp = types.VirtualMachinePowerStateSuspended
)

func st(p types.VirtualMachinePowerState, nic bool) vcwatch.State {
	return vcwatch.State{Power: p, NICConnected: nic}
}

// Each step is a simulator state of two replicas and the process/link
// actions the Mirror must take for it (and only those).
func TestMirrorFollowsTheSimulator(t *testing.T) {
	f := &fakeReplicas{fail: map[string]bool{}}
	m := NewMirror(f, "a", "b")
	steps := []struct {
		name   string
		states map[string]vcwatch.State
		revert string
		fail   string
		want   string
		linked string
	}{
		{"a active, b standby", map[string]vcwatch.State{"a": st(on, true), "b": st(on, false)}, "", "", "start a, start b, link a", "a"},
		{"nothing changed: nothing done", map[string]vcwatch.State{"a": st(on, true), "b": st(on, false)}, "", "", "", "a"},
		{"make-before-break: b linked while a still is", map[string]vcwatch.State{"a": st(on, true), "b": st(on, true)}, "", "", "link b", "a,b"},
		{"a detached", map[string]vcwatch.State{"a": st(on, false), "b": st(on, true)}, "", "", "unlink a", "b"},
		{"a reverted (fresh process), then suspended", map[string]vcwatch.State{"a": st(susp, false), "b": st(on, true)}, "a", "", "reset a, kill a, start a, suspend a", "b"},
		{"a resumed", map[string]vcwatch.State{"a": st(on, false)}, "", "", "resume a", "b"},
		{"NIC connected while suspended: no link", map[string]vcwatch.State{"a": st(susp, true)}, "", "", "suspend a", "b"},
		{"b powered off: unlinked, killed", map[string]vcwatch.State{"b": st(off, false)}, "", "", "unlink b, reset b, kill b", ""},
		{"a resumed with NIC connected: linked after the resume", map[string]vcwatch.State{"a": st(on, true)}, "", "", "resume a, link a", "a"},
		{"a failing link is retried", map[string]vcwatch.State{"b": st(on, true)}, "", "link b", "start b, link b", "a"},
		{"retry", map[string]vcwatch.State{"b": st(on, true)}, "", "", "link b", "a,b"},
		{"b detached", map[string]vcwatch.State{"a": st(on, true), "b": st(on, false)}, "", "", "unlink b", "a"},
		{"b reverted and linked: its address reset before the fresh process", map[string]vcwatch.State{"b": st(on, true)}, "b", "", "reset b, kill b, start b, link b", "a,b"},
		{"b reverted, its reset fails: nothing killed, retried", map[string]vcwatch.State{"b": st(on, true)}, "b", "reset b", "reset b", "a,b"},
		{"the revert's retry", map[string]vcwatch.State{"b": st(on, true)}, "", "", "reset b, kill b, start b", "a,b"},
		{"b powered off while reverted: one reset", map[string]vcwatch.State{"b": st(off, false)}, "b", "", "unlink b, reset b, kill b", "a"},
		{"b detached again", map[string]vcwatch.State{"a": st(on, true), "b": st(on, false)}, "", "", "start b", "a"},
		{"both halves of a switch in one update: link b before unlinking a, suspend a after", map[string]vcwatch.State{"a": st(susp, false), "b": st(on, true)}, "", "", "link b, unlink a, suspend a", "b"},
	}
	for _, s := range steps {
		if s.revert != "" {
			m.Reverted(s.revert)
		}
		f.fail = map[string]bool{}
		if s.fail != "" {
			f.fail[s.fail] = true
		}
		err := m.Apply(s.states)
		if (err != nil) != (s.fail != "") {
			t.Fatalf("%s: err %v", s.name, err)
		}
		if got := f.take(); got != s.want {
			t.Fatalf("%s: calls %q, want %q", s.name, got, s.want)
		}
		if got := strings.Join(m.Linked(), ","); got != s.linked {
			t.Fatalf("%s: linked %q, want %q", s.name, got, s.linked)
		}
	}
}

// A read marked before a live change is older than it: it must not undo
// it for that replica (the link the simulator just made would flap until
// the next read), and still applies to the others. A read marked after
// applies in full.
func TestMirrorReadOvertakenByLiveChange(t *testing.T) {
	f := &fakeReplicas{fail: map[string]bool{}}
	m := NewMirror(f, "a", "b")
	if err := m.Apply(map[string]vcwatch.State{"a": st(on, false), "b": st(on, false)}); err != nil {
		t.Fatal(err)
	}
	f.take()
	mark := m.Mark()
	if err := m.ApplyLive("a", st(on, true)); err != nil {
		t.Fatal(err)
	}
	if got := f.take(); got != "link a" {
		t.Fatalf("live change: calls %q, want %q", got, "link a")
	}
	// Read before the reconfigure: a's NIC still disconnected.
	if err := m.ApplyRead(map[string]vcwatch.State{"a": st(on, false), "b": st(susp, false)}, mark); err != nil {
		t.Fatal(err)
	}
	if got := f.take(); got != "suspend b" {
		t.Fatalf("stale read: calls %q, want %q", got, "suspend b")
	}
	if got := strings.Join(m.Linked(), ","); got != "a" {
		t.Fatalf("stale read: linked %q, want a", got)
	}
	if err := m.ApplyRead(map[string]vcwatch.State{"a": st(on, false), "b": st(susp, false)}, m.Mark()); err != nil {
		t.Fatal(err)
	}
	if got := f.take(); got != "unlink a" {
		t.Fatalf("fresh read: calls %q, want %q", got, "unlink a")
	}
}
