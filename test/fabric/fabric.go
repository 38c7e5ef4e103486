// Package fabric is the in-process stand-in for a service network, for
// tests that drive replicas through the real vSphere driver against vcsim.
//
// Each replica is a real DNS server (miekg/dns) on its own loopback port,
// tied to one VM of the simulator. The fabric watches the simulator
// (property collector: power state and config.changeVersion, then a fresh
// read of the devices) and forwards every query sent to the service address
// to the replica whose VM is powered on with its service NIC connected —
// exactly what attaching and detaching a VM's NIC does on a real service
// network. When more than one is attached, the one attached last answers
// (as the gratuitous ARP of the newest link would make it). Nothing is
// forwarded when none is.
//
// The watch itself is lab/vcwatch, which the lab uses too.
//
// The fabric also records what the invariants talk about: how many
// replicas were attached at once and for how long, and whether a replica
// was attached while "dirty" (attacked and not yet reverted to its clean
// snapshot; the test marks it dirty, a RevertToSnapshot_Task clears it —
// see RevertHandler). A Client measures the outage from outside.
package fabric

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/lab/vcwatch"
	"github.com/ars-project/ars/vcsim"
)

// Zone is what every replica serves: QName A Answer.
const (
	QName  = "www.lab.internal."
	Answer = "192.0.2.10"
)

// User is the simulator user name of the fabric's own session (tests that
// count the controller's sessions leave it out).
const User = "ars-fabric"

// Replica ties a DNS server to a simulator VM.
type Replica struct {
	Name string // ars replica name
	VM   string // simulator VM name
	Impl string // implementation, the unit of a DoS attack
}

// Fabric is a running service network. Its methods are safe for
// concurrent use.
type Fabric struct {
	sim      *vcsim.Sim
	w        *vcwatch.Watcher
	refs     map[types.ManagedObjectReference]string // VM ref -> replica
	order    []string                                // replica names, as given
	replicas map[string]*server                      // by replica name
	svc      *net.UDPConn
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu          sync.Mutex
	attached    []string // in attach order, newest last
	attacked    map[string]bool
	dirty       map[string]bool
	overlapFrom time.Time
	stats       Stats
	events      []Event
}

// Stats are what the fabric saw.
type Stats struct {
	// MaxAttached is the most replicas attached at once.
	MaxAttached int
	// LongestOverlap is the longest time more than one was attached.
	LongestOverlap time.Duration
	// DirtyAttached lists replicas that became attached while dirty
	// (docs/design.md §4.4).
	DirtyAttached []string
	// Forwarded and Dropped count queries to the service address.
	Forwarded, Dropped int
}

// Event is a change of the attached set.
type Event struct {
	At       time.Time
	Attached []string
}

type server struct {
	Replica
	ref  types.ManagedObjectReference
	addr string
	srv  *dns.Server
}

// Start starts one DNS server per replica, the watch on sim and the service
// address (UDP, 127.0.0.1, a free port).
func Start(ctx context.Context, sim *vcsim.Sim, replicas []Replica) (*Fabric, error) {
	f := &Fabric{sim: sim, refs: map[types.ManagedObjectReference]string{}, replicas: map[string]*server{},
		attacked: map[string]bool{}, dirty: map[string]bool{}}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	ca, err := sim.CAFile()
	if err != nil {
		return nil, fmt.Errorf("fabric: %w", err)
	}
	if f.w, err = vcwatch.Login(ctx, sim.URL(), ca, User, "fabric"); err != nil {
		return nil, fmt.Errorf("fabric: %w", err)
	}
	for _, r := range replicas {
		vm, err := sim.VM(ctx, r.VM)
		if err != nil {
			return nil, fmt.Errorf("fabric: replica %s: %w", r.Name, err)
		}
		s := &server{Replica: r, ref: vm.Reference()}
		if err := f.serve(s); err != nil {
			return nil, err
		}
		f.replicas[r.Name] = s
		f.refs[s.ref] = r.Name
		f.order = append(f.order, r.Name)
		f.w.Add(r.Name, s.ref)
	}
	svc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("fabric: service address: %w", err)
	}
	f.svc = svc
	wctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	states, err := f.w.Read(ctx)
	if err != nil {
		return nil, err
	}
	f.apply(states)
	f.wg.Add(2)
	go func() { defer f.wg.Done(); f.w.Run(wctx, f.apply) }()
	go func() { defer f.wg.Done(); f.forward() }()
	ok = true
	return f, nil
}

// serve starts the replica's DNS server: it answers QName A Answer
// authoritatively, REFUSED for anything else, and nothing while its impl
// is attacked (a wedged server).
func (f *Fabric) serve(s *server) error {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("fabric: replica %s: %w", s.Name, err)
	}
	s.addr = pc.LocalAddr().String()
	impl := s.Impl
	s.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		f.mu.Lock()
		attacked := f.attacked[impl]
		f.mu.Unlock()
		if attacked {
			return
		}
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		if len(q.Question) == 1 && q.Question[0].Name == QName && q.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR(QName + " 60 IN A " + Answer)
			m.Answer = []dns.RR{rr}
		} else {
			m.Rcode = dns.RcodeRefused
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	s.srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = s.srv.ActivateAndServe() }()
	<-started
	return nil
}

// Addr is the service address ("127.0.0.1:PORT").
func (f *Fabric) Addr() string { return f.svc.LocalAddr().String() }

// Attack starts (on) or ends a DoS on every replica of impl: they stop
// answering, as a wedged server does.
func (f *Fabric) Attack(impl string, on bool) {
	f.mu.Lock()
	f.attacked[impl] = on
	f.mu.Unlock()
}

// MarkDirty records that replica was attacked: until its VM is reverted to
// a snapshot it must not be attached (docs/design.md §4.4).
func (f *Fabric) MarkDirty(replica string) {
	f.mu.Lock()
	f.dirty[replica] = true
	f.mu.Unlock()
}

// Dirty reports whether replica is marked dirty.
func (f *Fabric) Dirty(replica string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dirty[replica]
}

// RevertHandler is a vcsim.Options.Handler hook: call it from the
// simulator's handler so a RevertToSnapshot_Task on a replica's VM clears
// its dirty mark.
func (f *Fabric) RevertHandler(ctx *simulator.Context, m *simulator.Method) {
	if m.Name != "RevertToSnapshot_Task" {
		return
	}
	// This is the snapshot; its VM is found by the snapshot's owner.
	snap, ok := ctx.Map.Get(m.This).(*simulator.VirtualMachineSnapshot)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if name, ok := f.refs[snap.Vm]; ok {
		delete(f.dirty, name)
	}
}

// Attached lists the replicas attached now, newest last.
func (f *Fabric) Attached() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.attached)
}

// Stats returns what the fabric saw so far.
func (f *Fabric) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	s.DirtyAttached = slices.Clone(s.DirtyAttached)
	return s
}

// Events returns the changes of the attached set so far.
func (f *Fabric) Events() []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// Close stops everything Start started.
func (f *Fabric) Close() {
	if f.cancel != nil {
		f.cancel()
	}
	if f.svc != nil {
		f.svc.Close()
	}
	for _, s := range f.replicas {
		if s.srv != nil {
			_ = s.srv.Shutdown()
		}
	}
	f.wg.Wait()
	if f.w != nil {
		f.w.Close()
	}
}

// apply updates the attached set from a read of the replicas' VMs.
func (f *Fabric) apply(states map[string]vcwatch.State) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	next := slices.DeleteFunc(slices.Clone(f.attached), func(n string) bool { return !states[n].Attached() })
	for _, n := range f.order { // stable order for replicas attached in the same read
		if states[n].Attached() && !slices.Contains(next, n) {
			next = append(next, n)
		}
	}
	if slices.Equal(next, f.attached) {
		return
	}
	if len(f.attached) > 1 && len(next) <= 1 {
		if d := now.Sub(f.overlapFrom); d > f.stats.LongestOverlap {
			f.stats.LongestOverlap = d
		}
	}
	if len(f.attached) <= 1 && len(next) > 1 {
		f.overlapFrom = now
	}
	for _, n := range next {
		// Attaching a dirty replica breaks docs/design.md §4.4; one that was
		// attached when it was attacked stays so until it is detached.
		if f.dirty[n] && !slices.Contains(f.attached, n) && !slices.Contains(f.stats.DirtyAttached, n) {
			f.stats.DirtyAttached = append(f.stats.DirtyAttached, n)
		}
	}
	f.attached = next
	f.stats.MaxAttached = max(f.stats.MaxAttached, len(next))
	f.events = append(f.events, Event{At: now, Attached: slices.Clone(next)})
}

// forward relays each query to the service address to the newest attached
// replica and its answer back, one goroutine per query (bounded by the
// client's rate in tests).
func (f *Fabric) forward() {
	buf := make([]byte, 65535)
	for {
		n, from, err := f.svc.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		q := slices.Clone(buf[:n])
		f.mu.Lock()
		var to string
		if len(f.attached) > 0 {
			to = f.replicas[f.attached[len(f.attached)-1]].addr
			f.stats.Forwarded++
		} else {
			f.stats.Dropped++
		}
		f.mu.Unlock()
		if to == "" {
			continue
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			c, err := net.Dial("udp", to)
			if err != nil {
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Second))
			if _, err := c.Write(q); err != nil {
				return
			}
			b := make([]byte, 65535)
			m, err := c.Read(b)
			if err != nil {
				return
			}
			_, _ = f.svc.WriteToUDP(b[:m], from)
		}()
	}
}
