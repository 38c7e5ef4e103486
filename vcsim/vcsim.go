// Package vcsim runs govmomi's vCenter simulator (vcsim). It is a
// stand-in for a vCenter, not part of the vSphere driver
// (controller/vsphere, whose code does not import it): its users are the
// driver's tests and benchmark, the `ars agent -dev` node (an embedded
// simulator), the lab (`ars-lab`) and the test fabric. It listens on
// 127.0.0.1 only, always with TLS (its certificate is offered as a
// thumbprint and as a CA file, so clients verify it), and adds what those
// users need around the simulator: named method-delay profiles, a session
// idle timeout, session counting and termination, snapshots, setting VM
// properties the simulator does not model (vSphere FT state), and holding
// one user's calls unanswered (a hung vCenter).
package vcsim

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Profiles are named vCenter latency profiles: milliseconds added to each
// SOAP method before the simulator serves it ("*" applies to every method,
// in addition to a method's own entry).
//
// They are assumptions, not measurements: "lan" models a vCenter on the
// same LAN (a few ms per call, an SSO login of a few hundred ms, which is
// what vCenter 6.x–8.x logins commonly take); "wan" the same vCenter across
// a slow link. Both benchmark modes run under the same profile, so their
// ratio is what the profile is for.
var Profiles = map[string]map[string]int{
	"none": {},
	"lan": {
		"*":                      2,
		"Login":                  300,
		"Logout":                 20,
		"RetrieveServiceContent": 5,
		"ReconfigVM_Task":        20,
		"PowerOnVM_Task":         20,
		"PowerOffVM_Task":        20,
		"SuspendVM_Task":         20,
		"RevertToSnapshot_Task":  20,
		"CreateContainerView":    5,
	},
	// "paper" is calibrated on the research system; see TaskProfiles.
	"paper": {
		"Login":                  800,
		"Logout":                 80,
		"RetrieveServiceContent": 40,
	},
	"wan": {
		"*":                      25,
		"Login":                  600,
		"Logout":                 40,
		"RetrieveServiceContent": 10,
		"ReconfigVM_Task":        40,
	},
}

// TaskProfiles are the task durations of a profile: milliseconds a task
// runs (by the simulator's task name: ReconfigVm, PowerOn, PowerOff,
// Suspend, RevertToSnapshot) before it completes. Unlike a method delay
// the call returns at once and the caller waits for the task, as with a
// real vCenter. The simulator keeps task delays process-wide, so only one
// simulator of a process may use a profile that has them (the lab runs
// one).
//
// "paper" is calibrated on the research system (docs/design.md §1): its vSphere
// SDK program cut the mean downtime of a Windows↔Windows switch by 51 %
// and by about 2.5 s against the script that logged in for every VM
// operation. With the paper's 1.5 s detection (500 ms × 3),
// D_cli − D_sdk = 2.5 s and D_sdk = 0.49 · D_cli give D_cli = 4.9 s and
// D_sdk = 2.4 s. A break-before-make switch makes two NIC
// reconfigurations, so after 1.5 s of detection each takes about
// (2.4 − 1.5) / 2 ≈ 0.45 s (400 ms here; verification and commits take
// the rest), and each of the switch's two per-operation logins would cost
// the other 2.5 s / 2 = 1.25 s. With 1.25 s logins (1100 + 100 + 50 ms)
// three trials (ars-lab bench -profiles paper -modes paper-sdk,paper-cli
// -trials 3) measured D_sdk = 2.45 s and D_cli = 6.1 s (60 %, not 51 %):
// in paper-cli the logins of the operations around a switch also delay
// its detection. The logins were scaled once by 2.55 / 3.6 to 0.92 s
// (Profiles: login 800 ms, logout 80 ms, service content 40 ms); the
// bench reports what they give. Power and snapshot tasks, off the critical path,
// take what a vCenter 6.0 commonly takes for them (assumed, not
// measured). The Linux↔Windows (60 %) and container↔container (32 %)
// reductions need container replicas in the lab; they are not calibrated.
var TaskProfiles = map[string]map[string]int{
	"paper": {
		"ReconfigVm":       400,
		"PowerOn":          1000,
		"PowerOff":         800,
		"Suspend":          1000,
		"RevertToSnapshot": 1500,
	},
}

// ProfileNames lists Profiles' names, sorted.
func ProfileNames() []string {
	names := make([]string, 0, len(Profiles))
	for n := range Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Options configure Start.
type Options struct {
	// Profile names an entry of Profiles ("" = "none").
	Profile string
	// SessionTimeout expires sessions idle for longer (checked every
	// SessionTimeout, so a session dies 1–2 timeouts after its last call).
	// 0: sessions never expire.
	SessionTimeout time.Duration
	// Username and Password, if set, are the only credentials that log in.
	// Otherwise any non-empty username and password do.
	Username, Password string
	// VMsPerHost is how many VMs the standalone host and the cluster each
	// carry (default 2: four VMs in all). The lab needs one per VM replica.
	VMsPerHost int
	// Handler, if set, runs before every SOAP method (simulator.Registry.Handler):
	// return a fault to fail the call. It runs on the simulator's request
	// goroutines.
	Handler func(*simulator.Context, *simulator.Method) (mo.Reference, types.BaseMethodFault)
}

// Sim is a running simulator.
type Sim struct {
	Model  *simulator.Model
	Server *simulator.Server
	local  *vim25.Client
	caFile string
	user   string
	pass   string
	hold   hold
}

// hold is the state of Hold: whose calls wait, and how many wait now.
type hold struct {
	mu      sync.Mutex
	user    string
	release chan struct{} // nil: nothing is held
	waiting map[string]int
}

// Hold makes every call made in a session of user wait until Release (or
// Close), except Logout: a vCenter that accepts one client's calls and
// does not answer them, as a hung or overloaded vCenter does. Calls that
// already run, other users' calls and the in-process client's are not
// held. The simulator does not learn that a client gave up on a call, so
// a held call waits for Release even then.
func (s *Sim) Hold(user string) {
	s.hold.mu.Lock()
	defer s.hold.mu.Unlock()
	if s.hold.release == nil {
		s.hold.release = make(chan struct{})
	}
	s.hold.user = user
}

// Release lets every held call go on, and holds no more.
func (s *Sim) Release() {
	s.hold.mu.Lock()
	defer s.hold.mu.Unlock()
	if s.hold.release != nil {
		close(s.hold.release)
		s.hold.release = nil
	}
}

// Held is the number of calls waiting in Hold now, by SOAP method.
func (s *Sim) Held() map[string]int {
	s.hold.mu.Lock()
	defer s.hold.mu.Unlock()
	out := map[string]int{}
	for m, n := range s.hold.waiting {
		if n > 0 {
			out[m] = n
		}
	}
	return out
}

func (s *Sim) wait(ctx *simulator.Context, m *simulator.Method) {
	h := &s.hold
	h.mu.Lock()
	ch := h.release
	if ch == nil || m.Name == "Logout" || ctx.Session == nil || ctx.Session.UserName != h.user {
		h.mu.Unlock()
		return
	}
	if h.waiting == nil {
		h.waiting = map[string]int{}
	}
	h.waiting[m.Name]++
	h.mu.Unlock()
	<-ch
	h.mu.Lock()
	h.waiting[m.Name]--
	h.mu.Unlock()
}

// Start creates a VPX inventory (one datacenter DC0, a cluster DC0_C0 of
// three hosts and a standalone host DC0_H0; two powered-on VMs (or
// VMsPerHost) on the standalone host and two in the cluster, e.g.
// DC0_H0_VM0 and DC0_C0_RP0_VM0, each with one NIC "ethernet-0") and
// serves it on https://127.0.0.1:PORT/sdk.
func Start(opts Options) (*Sim, error) {
	delays, ok := Profiles[opts.Profile]
	if opts.Profile == "" {
		delays, ok = Profiles["none"], true
	}
	if !ok {
		return nil, fmt.Errorf("vcsim: unknown delay profile %q", opts.Profile)
	}
	m := simulator.VPX()
	if opts.VMsPerHost > 0 {
		m.Machine = opts.VMsPerHost
	}
	// Delays are read by the simulator's request goroutines: set them
	// before anything runs. "*" is the per-call base delay.
	m.DelayConfig.MethodDelay = map[string]int{}
	for k, v := range delays {
		if k == "*" {
			m.DelayConfig.Delay = v
			continue
		}
		m.DelayConfig.MethodDelay[k] = v
	}
	if err := m.Create(); err != nil {
		return nil, fmt.Errorf("vcsim: %w", err)
	}
	if tasks, ok := TaskProfiles[opts.Profile]; ok {
		// The task delay runs after the simulator hands the task off; with
		// LockHandoff 0 it does not hold the object's lock meanwhile, so the
		// property collector can report the task's progress.
		d := map[string]int{"LockHandoff": 0}
		for k, v := range tasks {
			d[k] = v
		}
		simulator.TaskDelay = simulator.DelayConfig{MethodDelay: d}
	}
	if opts.SessionTimeout > 0 {
		om := m.Map().OptionManager()
		om.Setting = append(om.Setting, &types.OptionValue{
			Key: "config.vmacore.soap.sessionTimeout", Value: opts.SessionTimeout.String(),
		})
	}
	if opts.Username != "" || opts.Password != "" {
		user, pass := opts.Username, opts.Password
		m.Map().SessionManager().ValidLogin = func(l *types.Login) bool {
			return l.UserName == user && l.Password == pass
		}
		// ValidLogin is consulted only when the listen URL carries
		// credentials other than the simulator's default ones.
		m.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword("-", "-")}
	} else {
		m.Service.Listen = &url.URL{Host: "127.0.0.1:0"}
	}
	s := &Sim{Model: m, user: opts.Username, pass: opts.Password}
	m.Map().Handler = func(ctx *simulator.Context, meth *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		s.wait(ctx, meth)
		if opts.Handler != nil {
			return opts.Handler(ctx, meth)
		}
		return nil, nil
	}
	m.Service.TLS = new(tls.Config)
	s.Server = m.Service.NewServer()
	local, err := vim25.NewClient(context.Background(), m.Service)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("vcsim: in-process client: %w", err)
	}
	s.local = local
	return s, nil
}

// URL is the SDK endpoint without credentials.
func (s *Sim) URL() string {
	u := *s.Server.URL
	u.User = nil
	return u.String()
}

// Thumbprint is the SHA-256 thumbprint of the server certificate
// ("AB:CD:…"), as vSphere shows it.
func (s *Sim) Thumbprint() string { return soap.ThumbprintSHA256(s.Server.Certificate()) }

// CAPEM is the server certificate in PEM: it is self-signed for 127.0.0.1,
// so it serves as the CA file that verifies it.
func (s *Sim) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Server.Certificate().Raw})
}

// CAFile writes CAPEM to a temporary file, removed by Close.
func (s *Sim) CAFile() (string, error) {
	if s.caFile != "" {
		return s.caFile, nil
	}
	f, err := os.CreateTemp("", "vcsim-ca-*.pem")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Write(s.CAPEM()); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	s.caFile = f.Name()
	return s.caFile, nil
}

// Close stops the server and removes what the model created.
func (s *Sim) Close() {
	s.Release() // the server's Close waits for the calls in flight
	if s.Server != nil {
		s.Server.Close()
	}
	s.Model.Remove()
	if s.caFile != "" {
		os.Remove(s.caFile)
	}
}

// Local is an in-process client with the simulator's internal session: it
// does not count as a session and survives session timeouts. Use it to
// change the inventory behind a driver's back ("someone powered it off").
func (s *Sim) Local() *vim25.Client { return s.local }

// Sessions lists the live sessions (the in-process client's is not one).
func (s *Sim) Sessions(ctx context.Context) ([]types.UserSession, error) {
	var sm mo.SessionManager
	pc := s.local.ServiceContent.PropertyCollector
	req := types.RetrieveProperties{
		This: pc,
		SpecSet: []types.PropertyFilterSpec{{
			ObjectSet: []types.ObjectSpec{{Obj: *s.local.ServiceContent.SessionManager}},
			PropSet:   []types.PropertySpec{{Type: "SessionManager", PathSet: []string{"sessionList"}}},
		}},
	}
	res, err := methods.RetrieveProperties(ctx, s.local, &req)
	if err != nil {
		return nil, err
	}
	if len(res.Returnval) == 1 {
		if err := mo.LoadObjectContent(res.Returnval, &sm); err != nil {
			return nil, err
		}
	}
	// The in-process session's own entry, if any, is not a real session.
	list := slices.DeleteFunc(sm.SessionList, func(u types.UserSession) bool { return u.UserName == "" })
	sort.Slice(list, func(i, j int) bool { return list[i].LoginTime.Before(list[j].LoginTime) })
	return list, nil
}

// SessionCount is len(Sessions) (-1 on error).
func (s *Sim) SessionCount(ctx context.Context) int {
	l, err := s.Sessions(ctx)
	if err != nil {
		return -1
	}
	return len(l)
}

// Terminate logs in as an administrator over HTTPS (a session of its own),
// terminates the given sessions (every other session if none are given)
// and logs out again: what an operator does with "Terminate session" in
// the vSphere client.
func (s *Sim) Terminate(ctx context.Context, keys ...string) error {
	admin, err := s.adminClient(ctx)
	if err != nil {
		return err
	}
	defer admin.Logout(context.Background())
	if len(keys) == 0 {
		us, err := admin.SessionManager.UserSession(ctx)
		if err != nil {
			return err
		}
		all, err := s.Sessions(ctx)
		if err != nil {
			return err
		}
		for _, u := range all {
			if us == nil || u.Key != us.Key {
				keys = append(keys, u.Key)
			}
		}
	}
	if len(keys) == 0 {
		return errors.New("vcsim: no session to terminate")
	}
	return admin.SessionManager.TerminateSession(ctx, keys)
}

func (s *Sim) adminClient(ctx context.Context) (*govmomi.Client, error) {
	u, err := url.Parse(s.URL())
	if err != nil {
		return nil, err
	}
	sc := soap.NewClient(u, false)
	ca, err := s.CAFile()
	if err != nil {
		return nil, err
	}
	if err := sc.SetRootCAs(ca); err != nil {
		return nil, err
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, err
	}
	c := &govmomi.Client{Client: vc, SessionManager: session.NewManager(vc)}
	user, pass := "admin", "admin"
	if s.user != "" || s.pass != "" {
		user, pass = s.user, s.pass // credentials restricted: the administrator uses them too
	}
	if err := c.Login(ctx, url.UserPassword(user, pass)); err != nil {
		return nil, fmt.Errorf("vcsim: admin login: %w", err)
	}
	return c, nil
}

// VM finds a VM of the inventory by name, via the in-process client.
func (s *Sim) VM(ctx context.Context, name string) (*object.VirtualMachine, error) {
	f := find.NewFinder(s.local, true)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		return nil, err
	}
	f.SetDatacenter(dc)
	return f.VirtualMachine(ctx, name)
}

// Snapshot takes a snapshot named name of the VM (memory included, so a
// revert returns to the running state).
func (s *Sim) Snapshot(ctx context.Context, vm, name string) error {
	v, err := s.VM(ctx, vm)
	if err != nil {
		return err
	}
	task, err := v.CreateSnapshot(ctx, name, "ars clean state", true, false)
	if err != nil {
		return err
	}
	return task.Wait(ctx)
}

// SetVM changes properties of a VM in place, as vCenter would report them
// (for what the simulator does not model, such as
// runtime.faultToleranceState). Property collectors see the change.
func (s *Sim) SetVM(ctx context.Context, vm string, changes ...types.PropertyChange) error {
	v, err := s.VM(ctx, vm)
	if err != nil {
		return err
	}
	return s.Set(ctx, v.Reference(), changes...)
}

// Set changes properties of any managed object in place (see SetVM).
func (s *Sim) Set(ctx context.Context, ref types.ManagedObjectReference, changes ...types.PropertyChange) error {
	obj := s.Model.Map().Get(ref)
	if obj == nil {
		return fmt.Errorf("vcsim: no object %s", ref)
	}
	sctx := &simulator.Context{Context: ctx, Map: s.Model.Map()}
	s.Model.Map().AtomicUpdate(sctx, obj, changes)
	return nil
}

// Hosts lists the host systems' managed object ids.
func (s *Sim) Hosts() []types.ManagedObjectReference {
	var refs []types.ManagedObjectReference
	for _, h := range s.Model.Map().All("HostSystem") {
		refs = append(refs, h.Reference())
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].Value < refs[j].Value })
	return refs
}
