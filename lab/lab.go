package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab/netlab"
	"github.com/ars-project/ars/lab/vcwatch"
	"github.com/ars-project/ars/pki"
	"github.com/ars-project/ars/replicaagent"
	"github.com/ars-project/ars/vcsim"
)

// Replica is one lab replica: a DNS server of Impl, either in its own
// namespace standing for a VM of the simulator (Platform "vm", the
// default) or a container of the machine's Docker engine run from
// ImageFor(Impl) (Platform "container").
type Replica struct {
	Name     string `json:"name"`
	Impl     string `json:"impl"`               // a key of Implementations
	OS       string `json:"os"`                 // the label the service spec gives it ("windows" or "linux")
	Platform string `json:"platform,omitempty"` // fsm.PlatformVM (default) or fsm.PlatformContainer
	// Service is the service the replica belongs to: "" (or
	// Config.Service) for the lab's service, else one of
	// Config.ServiceAddrs (the scale benchmark's further services).
	Service string `json:"service,omitempty"`
}

// isContainer reports whether r is a container replica.
func (r Replica) isContainer() bool { return r.Platform == fsm.PlatformContainer }

// Config configures Up.
type Config struct {
	// Prefix names the lab's namespaces and links (netlab; default
	// "arslab"). StateDir holds state, logs and the servers' folders
	// (default /run/PREFIX).
	Prefix   string
	StateDir string
	Replicas []Replica
	// Profile is the simulator's vCenter latency profile (vcsim.Profiles).
	Profile string
	// DNSD is the path of test/dnsd, for replicas of impl "dnsd".
	DNSD   string
	Logger *slog.Logger

	// Nodes names the controller nodes (e.g. n1, n2, n3): one `ars agent`
	// each, run from Agent in a namespace of its own on the service
	// network, with TLS, tokens and a gossip key, driving the simulator.
	// Up then applies the lab's service (named Service, default "dns",
	// with Probe and Policy) and starts one AppArmor watcher per replica.
	// Without Nodes the caller drives the simulator itself.
	Nodes []string
	Agent string
	// NodeAgents runs some nodes from another ars binary than Agent
	// (node name -> path), and UpgradeNode moves a node to another one:
	// the rolling-upgrade test starts every node on the previous release
	// this way. Agent still runs the watchers. The agent configuration
	// the lab writes is one ars 0.1.0 reads (it decodes strictly and
	// halts on a key it does not know) as long as DeadWebhook is off: the
	// notify key came after it, so Up refuses the two together.
	NodeAgents map[string]string
	Service    string
	Probe      fsm.ProbeSpec
	Policy     fsm.PolicySpec
	// PerOperationLogin makes the nodes log in to vCenter for every
	// operation (the paper's script; the benchmark's paper-cli mode).
	PerOperationLogin bool
	// VCenterSessionTimeout expires simulator sessions idle for longer
	// (0: never), as a real vCenter does; VCenterKeepAlive is the nodes'
	// session check interval (0: the driver's default, 10 s) and must be
	// well below it. The chaos suite sets both so that the session of a
	// leader killed with SIGKILL (which cannot log out) ends within a
	// schedule.
	VCenterSessionTimeout time.Duration
	VCenterKeepAlive      time.Duration
	// DeadWebhook gives every node a notify webhook at a receiver on the
	// hub that accepts each connection and never answers (see
	// DeadWebhookConnections): the benchmark's check that a dead
	// notification sink delays no switch.
	DeadWebhook bool
	// NodeDisks puts each node's data directory on an ext4 file system of
	// its own (NodeDiskSize, on a loop device), which FillNodeDisk and
	// FreezeNodeDisk can fail: the chaos suite's disk faults.
	NodeDisks bool

	// Further services beside Service, for the scale benchmark: each
	// name in ServiceAddrs is applied as a service of its own, at that
	// address, with the VM replicas whose Replica.Service names it. The
	// addresses must lie in Subnet (default netlab.DefaultSubnet, which
	// has room for few: give a wider one).
	ServiceAddrs map[string]netip.Addr
	Subnet       netip.Prefix
	// Responder, if set, is the implementation whose server every VM
	// replica runs (the scale benchmark's "dnsd": one small process per
	// replica), while the service spec keeps each replica's own Impl, so
	// that rotation still sees diverse implementations.
	Responder string
	// Handover is how the service address reaches a replica: "nic" (the
	// default; "" means it) or "address": every Linux VM replica then
	// takes it through a replica agent (`ars replica-agent` in its
	// namespace, on a management link of its own), with its NIC connected
	// while it is standby; Windows VM and container replicas keep NIC
	// handover. Needs Nodes.
	Handover string
	// NoWatchers starts no `ars watch apparmor` per replica: no exploit
	// can be detected (Exploit writes a line nobody reads). The scale
	// benchmark attacks by DoS only, and 800 watchers polling every 10 ms
	// would measure the watchers.
	NoWatchers bool
}

// serviceOf is the service a replica belongs to.
func (c Config) serviceOf(r Replica) string {
	if r.Service == "" {
		return c.Service
	}
	return r.Service
}

// serviceNames lists the lab's services: Service first, then
// ServiceAddrs' names, sorted.
func (c Config) serviceNames() []string {
	out := []string{c.Service}
	for n := range c.ServiceAddrs {
		if n != c.Service {
			out = append(out, n)
		}
	}
	slices.Sort(out[1:])
	return out
}

// Lab is a running lab: the simulator the controller drives, the network,
// and the Mirror keeping the replica processes in step with the VMs.
type Lab struct {
	Sim *vcsim.Sim
	Net *netlab.Lab

	cfg    Config
	log    *slog.Logger
	mirror *Mirror
	w      *vcwatch.Watcher
	vms    map[string]string                       // replica -> VM name
	byRef  map[types.ManagedObjectReference]string // VM -> replica
	mu     sync.Mutex
	procs  map[string]*netlab.Proc
	cancel context.CancelFunc
	wg     sync.WaitGroup

	unfollow  func() // stops the Mirror's hook in the simulator (followVMs)
	vcPass    string
	vcln      net.Listener  // the simulator's endpoint on the hub address
	proxyDone chan struct{} // closed by Down: ends proxied connections
	hookln    net.Listener  // the dead webhook (Config.DeadWebhook)
	hookConns atomic.Int64
	nodes     *nodeSet
	agents    map[string]*netlab.Proc            // replica agents (address handover); guarded by mu
	ctrViews  map[string]*replicaagent.Container // the lab's views of container replicas in address handover; guarded by mu
	watchers  []*netlab.Proc
	attacks   attacks
	ctrs      *containers // nil without container replicas
	client    probeClient
	vcFaults  vcFaults
	ctx       context.Context // the lab's lifetime, cancelled by Down
	started   time.Time
	events    eventLog
}

// CleanSnapshot is the name of every lab VM's clean snapshot.
const CleanSnapshot = "clean"

// Up builds the lab: a simulator with one VM per replica (each
// disconnected and snapshotted as CleanSnapshot, running), the network
// namespaces, and the Mirror, which from then on starts, stops, links and
// unlinks the replicas' servers as the VMs change. Everything Up made is
// removed again if it fails.
func Up(ctx context.Context, cfg Config) (l *Lab, err error) {
	if len(cfg.Replicas) == 0 {
		return nil, errors.New("lab: no replicas")
	}
	var names []string // the VM replicas
	ctrs := false
	for i, r := range cfg.Replicas {
		if _, ok := Implementations[r.Impl]; !ok {
			return nil, fmt.Errorf("lab: replica %s: unknown implementation %q (known: %v)", r.Name, r.Impl, ImplNames())
		}
		switch r.Platform {
		case "":
			cfg.Replicas[i].Platform = fsm.PlatformVM
			fallthrough
		case fsm.PlatformVM:
			names = append(names, r.Name)
		case fsm.PlatformContainer:
			ctrs = true
		default:
			return nil, fmt.Errorf("lab: replica %s: platform %q: want %s or %s", r.Name, r.Platform, fsm.PlatformVM, fsm.PlatformContainer)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Nodes) > 0 && cfg.Agent == "" {
		return nil, errors.New("lab: nodes need the ars binary (Config.Agent)")
	}
	for n, bin := range cfg.NodeAgents {
		if !slices.Contains(cfg.Nodes, n) || bin == "" {
			return nil, fmt.Errorf("lab: agent %q for node %q: want a binary for one of the nodes %v", bin, n, cfg.Nodes)
		}
	}
	if len(cfg.NodeAgents) > 0 && cfg.DeadWebhook {
		return nil, errors.New("lab: the dead webhook's notify key is unknown to ars 0.1.0, whose config decoding is strict: no dead webhook with nodes on another agent")
	}
	if err := cfg.checkHandover(); err != nil {
		return nil, err
	}
	if cfg.Service == "" {
		cfg.Service = "dns"
	}
	if _, ok := cfg.ServiceAddrs[cfg.Service]; ok {
		return nil, fmt.Errorf("lab: service %s has the lab's service address; ServiceAddrs names further services", cfg.Service)
	}
	if cfg.Responder != "" {
		if _, ok := Implementations[cfg.Responder]; !ok {
			return nil, fmt.Errorf("lab: responder: unknown implementation %q (known: %v)", cfg.Responder, ImplNames())
		}
	}
	addrs := map[string]netip.Addr{} // VM replicas of further services -> their address
	for _, r := range cfg.Replicas {
		if svc := cfg.serviceOf(r); svc != cfg.Service {
			a, ok := cfg.ServiceAddrs[svc]
			if !ok {
				return nil, fmt.Errorf("lab: replica %s: service %q has no address in ServiceAddrs", r.Name, svc)
			}
			if r.isContainer() {
				return nil, fmt.Errorf("lab: replica %s: container replicas serve the lab's service only", r.Name)
			}
			addrs[r.Name] = a
		}
	}
	pass, err := pki.NewTokenSecret()
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l = &Lab{cfg: cfg, log: cfg.Logger.With("component", "lab"), vms: map[string]string{},
		byRef: map[types.ManagedObjectReference]string{}, procs: map[string]*netlab.Proc{},
		vcPass: pass, proxyDone: make(chan struct{}), started: time.Now().UTC()}
	made := l // l is nil on the error returns below
	defer func() {
		if err != nil {
			_ = made.Down(context.Background())
		}
	}()

	var mirror *Mirror
	var mu sync.Mutex // guards mirror for the handler, set below
	sim, err := vcsim.Start(vcsim.Options{Profile: cfg.Profile, VMsPerHost: (len(names) + 1) / 2,
		Username: vcUser, Password: pass, SessionTimeout: cfg.VCenterSessionTimeout,
		Handler: func(sctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
			if f := l.vcHook(sctx, m); f != nil {
				return nil, f
			}
			if m.Name != "RevertToSnapshot_Task" {
				return nil, nil
			}
			snap, ok := sctx.Map.Get(m.This).(*simulator.VirtualMachineSnapshot)
			if !ok {
				return nil, nil
			}
			mu.Lock()
			name, mr := l.byRef[snap.Vm], mirror
			mu.Unlock()
			if name != "" && mr != nil {
				mr.Reverted(name)
				l.events.add(LabEvent{At: time.Now(), Replica: name, What: "revert"})
			}
			return nil, nil
		}})
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l.Sim = sim

	vmNames, err := l.vmNames(ctx)
	if err != nil {
		return nil, err
	}
	if len(vmNames) < len(names) {
		return nil, fmt.Errorf("lab: the simulator has %d VMs for %d replicas", len(vmNames), len(names))
	}
	for i, n := range names {
		vm, err := sim.VM(ctx, vmNames[i])
		if err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
		if err := disconnect(ctx, sim, vmNames[i]); err != nil {
			return nil, err
		}
		if err := sim.Snapshot(ctx, vmNames[i], CleanSnapshot); err != nil {
			return nil, fmt.Errorf("lab: snapshot %s: %w", vmNames[i], err)
		}
		mu.Lock()
		l.vms[n] = vmNames[i]
		l.byRef[vm.Reference()] = n
		mu.Unlock()
	}

	l.Net, err = netlab.New(netlab.Topology{Prefix: cfg.Prefix, StateDir: cfg.StateDir, Replicas: names, Nodes: cfg.Nodes, Docker: ctrs,
		Subnet: cfg.Subnet, Addrs: addrs, AddressHandover: cfg.addressVMs(), ContainerAgents: cfg.addressContainers()})
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := l.Net.Up(ctx); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}

	ca, err := sim.CAFile()
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if l.w, err = vcwatch.Login(ctx, sim.URL(), ca, vcUser, pass); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	for ref, n := range l.byRef {
		l.w.Add(n, ref)
	}
	mu.Lock()
	mirror = NewMirror(procs{l}, names...)
	l.mirror = mirror
	// The Mirror follows each VM change as the simulator makes it (before
	// its task completes), and the watch, whose reads lag the simulator,
	// retries what failed and catches anything else.
	l.unfollow = followVMs(sim.Model.Map(), l.byRef, func(name string, s vcwatch.State) {
		if err := mirror.ApplyLive(name, s); err != nil {
			l.log.Warn("lab: replica state not applied; retrying at the next read", "err", err)
		}
		l.attacks.served(l, mirror.Linked())
	})
	mu.Unlock()
	mark := l.mirror.Mark()
	states, err := l.w.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := l.mirror.ApplyRead(states, mark); err != nil {
		return nil, fmt.Errorf("lab: starting the replicas: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.ctx = cancel, wctx
	l.w.BeforeRead = func() { mark = l.mirror.Mark() } // Run's goroutine only, below
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.w.Run(wctx, func(s map[string]vcwatch.State) {
			if err := l.mirror.ApplyRead(s, mark); err != nil {
				l.log.Warn("lab: replica state not applied; retrying at the next change", "err", err)
			}
			l.attacks.served(l, l.mirror.Linked())
		})
	}()
	if err := l.upContainers(ctx); err != nil {
		return nil, err
	}
	if len(cfg.Nodes) == 0 {
		return l, nil
	}
	if err := l.proxyVCenter(); err != nil {
		return nil, err
	}
	if l.cfg.DeadWebhook {
		if err := l.startDeadWebhook(); err != nil {
			return nil, err
		}
	}
	if err := l.startNodes(); err != nil {
		return nil, err
	}
	if _, err := l.WaitLeader(ctx, ""); err != nil {
		return nil, err
	}
	for _, svc := range cfg.serviceNames() {
		if err := l.applyServiceNamed(ctx, svc); err != nil {
			return nil, err
		}
	}
	if !cfg.NoWatchers {
		if err := l.startWatchers(); err != nil {
			return nil, err
		}
	}
	if err := l.runClient(l.ctx); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Lab) vmNames(ctx context.Context) ([]string, error) {
	f := find.NewFinder(l.Sim.Local(), true)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	f.SetDatacenter(dc)
	vms, err := f.VirtualMachineList(ctx, "*")
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	var names []string
	for _, vm := range vms {
		names = append(names, vm.Name())
	}
	sort.Strings(names)
	return names, nil
}

// disconnect disconnects a VM's NICs, now and at power-on.
func disconnect(ctx context.Context, sim *vcsim.Sim, name string) error {
	vm, err := sim.VM(ctx, name)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	devs, err := vm.Device(ctx)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	for _, d := range devs.SelectByType((*types.VirtualEthernetCard)(nil)) {
		c := d.GetVirtualDevice().Connectable
		c.Connected, c.StartConnected = false, false
		if err := vm.EditDevice(ctx, d); err != nil {
			return fmt.Errorf("lab: disconnect %s: %w", name, err)
		}
	}
	return nil
}

// VM is the simulator VM that stands for replica ("" for a container).
func (l *Lab) VM(replica string) string { return l.vms[replica] }

// applied is what the lab last made (VM) or saw (container) of a replica:
// its power state (poweredOn, suspended, poweredOff) and whether it is on
// the service network.
func (l *Lab) applied(name string) (power string, linked bool) {
	if r, _ := l.lookup(name); r.isContainer() {
		return l.ctrs.applied(name)
	}
	p, linked := l.mirror.Applied(name)
	return string(p), linked
}

// linked lists the replicas on the service network.
func (l *Lab) linked() []string { return append(l.mirror.Linked(), l.ctrs.linked()...) }

// wedge stops every process of a replica (SIGSTOP): it keeps its sockets
// and answers nothing.
func (l *Lab) wedge(name string) error {
	if r, _ := l.lookup(name); r.isContainer() {
		return l.ctrs.signal(name, syscall.SIGSTOP)
	}
	return l.Net.SignalReplica(name, syscall.SIGSTOP)
}

// unwedge lets a wedged replica's processes go on (SIGCONT).
func (l *Lab) unwedge(name string) error {
	if r, _ := l.lookup(name); r.isContainer() {
		return l.ctrs.signal(name, syscall.SIGCONT)
	}
	return l.Net.SignalReplica(name, syscall.SIGCONT)
}

// DoS wedges the replica's server (SIGSTOP to every process in its
// namespace: it keeps its sockets and answers nothing, as a server with a
// hang bug does). Neither the simulator nor the Docker engine sees a
// change; a revert of the VM (a re-created container) starts a fresh
// process, which ends the attack on that replica.
func (l *Lab) DoS(replica string) error {
	if _, ok := l.lookup(replica); !ok {
		return badRequest("no replica %q", replica)
	}
	return l.record(replica, "dos", l.wedge(replica))
}

// Down stops the watch, the simulator and every process, and removes the
// network. It is safe to call more than once.
func (l *Lab) Down(ctx context.Context) error {
	l.attacks.stop()
	if l.unfollow != nil {
		l.unfollow() // nothing links or starts a replica from here on
		l.unfollow = nil
	}
	if l.vcln != nil {
		l.vcln.Close()
		close(l.proxyDone)
		l.vcln = nil
	}
	if l.hookln != nil {
		l.hookln.Close()
		l.hookln = nil
	}
	if l.cancel != nil {
		l.cancel()
		l.wg.Wait()
		l.cancel = nil
	}
	l.stopAgents()
	l.closeCtrViews()
	if l.w != nil {
		l.w.Close()
		l.w = nil
	}
	var errs []error
	// The nodes go before the containers (a leader would re-create a
	// container it finds missing), and the containers before the network
	// (their service network hangs off netlab's link).
	if l.ctrs != nil {
		errs = append(errs, l.nodes.killAll())
	}
	errs = append(errs, l.downContainers(ctx))
	l.ctrs = nil
	if l.Net != nil {
		errs = append(errs, l.Net.Down(ctx))
	}
	if l.nodes != nil {
		errs = append(errs, l.nodes.unmountDisks())
	}
	if l.Sim != nil {
		l.Sim.Close()
		l.Sim = nil
	}
	return errors.Join(errs...)
}

// procs is the Mirror's view of the lab: the servers and their links.
type procs struct{ l *Lab }

func (p procs) Start(name string) error {
	l := p.l
	impl := l.replica(name).Impl
	if l.cfg.Responder != "" {
		impl = l.cfg.Responder
	}
	argv, err := Prepare(ServerSpec{Impl: impl, Dir: filepath.Join(l.Net.Topology().StateDir, "replicas", name),
		Addr: l.Net.ReplicaAddr(name), Subnet: l.Net.Topology().Subnet, Binary: l.binary(impl)})
	if err != nil {
		return err
	}
	proc, err := l.Net.Run(name, argv...)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.procs[name] = proc
	l.mu.Unlock()
	return l.record(name, "start", nil)
}

func (p procs) Kill(name string) error {
	l := p.l
	// Every process in the namespace: a server may have forked.
	err := l.Net.SignalReplica(name, syscall.SIGKILL)
	l.mu.Lock()
	proc := l.procs[name]
	delete(l.procs, name)
	l.mu.Unlock()
	if proc != nil {
		if kerr := proc.Kill(); kerr != nil && err == nil {
			err = kerr
		}
	}
	return l.record(name, "kill", err)
}

func (p procs) Suspend(name string) error {
	return p.l.record(name, "suspend", p.l.Net.SignalReplica(name, syscall.SIGSTOP))
}

func (p procs) Resume(name string) error {
	return p.l.record(name, "resume", p.l.Net.SignalReplica(name, syscall.SIGCONT))
}

func (p procs) Link(name string) error {
	return p.l.record(name, "link", p.l.Net.Attach(context.Background(), name))
}

func (p procs) Unlink(name string) error {
	return p.l.record(name, "unlink", p.l.Net.Detach(context.Background(), name))
}

func (l *Lab) replica(name string) Replica {
	r, _ := l.lookup(name)
	return r
}

func (l *Lab) binary(impl string) string { return binaryFor(l.cfg, impl) }
