package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// replica builds a replica spec with labels.
func replica(name, impl, os, platform string) ReplicaSpec {
	return ReplicaSpec{Name: name, Impl: impl, OS: os, Platform: platform}
}

// paperSpec is the paper's lab: two Windows VMs (BIND, Unbound) and a Linux
// host with BIND and Unbound containers.
func paperSpec(name string) ServiceSpec {
	return ServiceSpec{
		Name:    name,
		Address: "192.0.2.53:53",
		Replicas: []ReplicaSpec{
			replica("win-bind", "bind9", "windows", "vm"),
			replica("win-unbound", "unbound", "windows", "vm"),
			replica("lin-bind", "bind9", "linux", "container"),
			replica("lin-unbound", "unbound", "linux", "container"),
		},
		Probe: ProbeSpec{Query: "www.lab.internal.", Expect: "192.0.2.10"},
	}
}

// harness applies commands at consecutive log indexes in one term.
type harness struct {
	t     testing.TB
	m     *Machine
	index uint64
	term  uint64
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	return &harness{t: t, m: New(), term: 1}
}

// apply encodes c for the harness term and applies it at the next index.
func (h *harness) apply(c Command) (Result, error) {
	h.t.Helper()
	data, err := Encode(h.term, c)
	if err != nil {
		h.t.Fatalf("Encode(%T): %v", c, err)
	}
	h.index++
	return h.m.Apply(h.index, h.term, data)
}

func (h *harness) must(c Command) Result {
	h.t.Helper()
	res, err := h.apply(c)
	if err != nil {
		h.t.Fatalf("apply %T %+v: %v", c, c, err)
	}
	if res.Index != h.index {
		h.t.Fatalf("Result.Index = %d, want %d", res.Index, h.index)
	}
	return res
}

// reject applies c, expects an error wrapping want, and checks that nothing
// but the applied index changed.
func (h *harness) reject(c Command, want error, msgParts ...string) error {
	h.t.Helper()
	before := domainState(h.t, h.m)
	res, err := h.apply(c)
	if !errors.Is(err, want) {
		h.t.Fatalf("apply %T %+v: err = %v, want %v", c, c, err, want)
	}
	if res != (Result{Index: h.index}) {
		h.t.Fatalf("rejected command returned %+v, want Result{Index: %d}", res, h.index)
	}
	if h.m.Index() != h.index {
		h.t.Fatalf("Index() = %d after rejected entry %d", h.m.Index(), h.index)
	}
	for _, p := range msgParts {
		if !strings.Contains(err.Error(), p) {
			h.t.Errorf("error %q does not mention %q", err, p)
		}
	}
	if after := domainState(h.t, h.m); after != before {
		h.t.Fatalf("rejected command changed state:\nbefore %s\nafter  %s", before, after)
	}
	return err
}

func (h *harness) svc(name string) Service {
	h.t.Helper()
	s, ok := h.m.Service(name)
	if !ok {
		h.t.Fatalf("service %q not found", name)
	}
	return s
}

// roles renders the roles of a service compactly: "a=active b=standby ...".
func roles(s Service) string {
	var b strings.Builder
	for i, r := range s.Replicas {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s", r.Name, r.Role)
	}
	return b.String()
}

func (h *harness) roles(name string) string {
	h.t.Helper()
	return roles(h.svc(name))
}

func snapshot(t testing.TB, m *Machine) []byte {
	t.Helper()
	b, err := m.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return b
}

// domainState is the snapshot without the applied index and term, which
// advance even for rejected commands.
func domainState(t testing.TB, m *Machine) string {
	t.Helper()
	var f snapshotFile
	if err := json.Unmarshal(snapshot(t, m), &f); err != nil {
		t.Fatalf("decode own snapshot: %v", err)
	}
	f.State.Index, f.State.Term = 0, 0
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkAll checks every service's invariants.
func checkAll(t testing.TB, m *Machine) {
	t.Helper()
	for _, s := range m.Services() {
		if err := checkService(s); err != nil {
			t.Fatalf("service %q: %v\n%s", s.Spec.Name, err, roles(s))
		}
	}
}
