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
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"ars/controller/vsphere/vcsim"
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
	vc       *vim25.Client
	sm       *session.Manager
	refs     map[types.ManagedObjectReference]string // VM ref -> replica
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
	// (invariant 4).
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
	if err := f.login(ctx); err != nil {
		return nil, err
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
	}
	svc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("fabric: service address: %w", err)
	}
	f.svc = svc
	wctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	if err := f.refresh(ctx); err != nil {
		return nil, err
	}
	f.wg.Add(2)
	go func() { defer f.wg.Done(); f.watch(wctx) }()
	go func() { defer f.wg.Done(); f.forward() }()
	ok = true
	return f, nil
}

func (f *Fabric) login(ctx context.Context) error {
	u, err := soap.ParseURL(f.sim.URL())
	if err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	ca, err := f.sim.CAFile()
	if err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	sc := soap.NewClient(u, false)
	// Verified against the simulator's certificate as a CA: a pinned
	// thumbprint makes govmomi try a verified handshake first, which the
	// simulator logs as a failed one on every new connection.
	if err := sc.SetRootCAs(ca); err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return fmt.Errorf("fabric: connect to the simulator: %w", err)
	}
	sm := session.NewManager(vc)
	if err := sm.Login(ctx, url.UserPassword(User, "fabric")); err != nil {
		return fmt.Errorf("fabric: login: %w", err)
	}
	f.vc, f.sm = vc, sm
	return nil
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
// a snapshot it must not be attached (invariant 4).
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
	if f.sm != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = f.sm.Logout(ctx)
		cancel()
	}
}

// watch follows power state and config.changeVersion of the replicas' VMs
// with a property collector, and re-reads the attached set on every update
// (and every half second, in case an update was missed).
func (f *Fabric) watch(ctx context.Context) {
	for ctx.Err() == nil {
		if err := f.watchOnce(ctx); err != nil && ctx.Err() == nil {
			// The simulator is local; a failure is transient (or the
			// test is ending). Back off briefly and rebuild.
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func (f *Fabric) watchOnce(ctx context.Context) error {
	res, err := methods.CreatePropertyCollector(ctx, f.vc, &types.CreatePropertyCollector{This: f.vc.ServiceContent.PropertyCollector})
	if err != nil {
		return err
	}
	pc := res.Returnval
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = methods.DestroyPropertyCollector(c, f.vc, &types.DestroyPropertyCollector{This: pc})
		cancel()
	}()
	spec := types.PropertyFilterSpec{PropSet: []types.PropertySpec{{Type: "VirtualMachine", PathSet: []string{"runtime.powerState", "config.changeVersion"}}}}
	for ref := range f.refs {
		spec.ObjectSet = append(spec.ObjectSet, types.ObjectSpec{Obj: ref})
	}
	if _, err := methods.CreateFilter(ctx, f.vc, &types.CreateFilter{This: pc, Spec: spec}); err != nil {
		return err
	}
	version := ""
	wait := int32(1)
	for {
		r, err := methods.WaitForUpdatesEx(ctx, f.vc, &types.WaitForUpdatesEx{This: pc, Version: version, Options: &types.WaitOptions{MaxWaitSeconds: &wait}})
		if err != nil {
			return err
		}
		if r.Returnval != nil {
			version = r.Returnval.Version
		}
		if err := f.refresh(ctx); err != nil {
			return err
		}
	}
}

// refresh reads every replica VM in one round trip and updates the
// attached set.
func (f *Fabric) refresh(ctx context.Context) error {
	refs := make([]types.ManagedObjectReference, 0, len(f.refs))
	for ref := range f.refs {
		refs = append(refs, ref)
	}
	var vms []mo.VirtualMachine
	if err := property.DefaultCollector(f.vc).Retrieve(ctx, refs, []string{"runtime.powerState", "config.hardware.device"}, &vms); err != nil {
		return err
	}
	now := time.Now()
	up := map[string]bool{}
	for _, vm := range vms {
		if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn || vm.Config == nil {
			continue
		}
		for _, d := range object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualEthernetCard)(nil)) {
			if c := d.GetVirtualDevice().Connectable; c != nil && c.Connected {
				up[f.refs[vm.Self]] = true
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	next := slices.DeleteFunc(slices.Clone(f.attached), func(n string) bool { return !up[n] })
	for _, vm := range vms { // stable order for replicas attached in the same read
		if n := f.refs[vm.Self]; up[n] && !slices.Contains(next, n) {
			next = append(next, n)
		}
	}
	if slices.Equal(next, f.attached) {
		return nil
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
		// Attaching a dirty replica breaks invariant 4; one that was
		// attached when it was attacked stays so until it is detached.
		if f.dirty[n] && !slices.Contains(f.attached, n) && !slices.Contains(f.stats.DirtyAttached, n) {
			f.stats.DirtyAttached = append(f.stats.DirtyAttached, n)
		}
	}
	f.attached = next
	f.stats.MaxAttached = max(f.stats.MaxAttached, len(next))
	f.events = append(f.events, Event{At: now, Attached: slices.Clone(next)})
	return nil
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
