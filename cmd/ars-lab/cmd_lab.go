package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab"
	"github.com/ars-project/ars/lab/netlab"
	"github.com/ars-project/ars/vcsim"
)

// The lab: `ars-lab up` starts `ars-lab serve` (the daemon that holds the
// simulator, the network, the servers, three agents and the measuring
// client) in the background and waits for it; every other lab command
// talks to the daemon over its control socket.

// labFlags are the flags every lab command shares.
type labFlags struct {
	prefix, stateDir string
}

func (f *labFlags) register(fs *flag.FlagSet) { f.registerPrefix(fs, netlab.DefaultPrefix) }

func (f *labFlags) registerPrefix(fs *flag.FlagSet, prefix string) {
	fs.StringVar(&f.prefix, "prefix", prefix, "`prefix` of the lab's namespaces and links")
	fs.StringVar(&f.stateDir, "state-dir", "", "the lab's state `directory` (default /run/PREFIX)")
}

func (f *labFlags) dir() string {
	if f.stateDir != "" {
		return f.stateDir
	}
	return filepath.Join("/run", f.prefix)
}

func (f *labFlags) control() *lab.Control { return lab.NewControl(f.dir()) }

// labUpFlags configure the lab a daemon builds.
type labUpFlags struct {
	labFlags
	profile   string
	replicas  string
	nodes     int
	service   string
	probe     string
	confirm   string
	rotation  string
	dosMode   string
	handover  string
	perOpLog  bool
	deadHook  bool
	nodeDisks bool
	waitLimit time.Duration
	ars       arsBinary
}

func (f *labUpFlags) register(fs *flag.FlagSet) {
	f.labFlags.register(fs)
	fs.StringVar(&f.profile, "profile", "none", "vCenter latency `profile` of the simulator ("+strings.Join(vcsim.ProfileNames(), ", ")+")")
	fs.StringVar(&f.replicas, "replicas", defaultLabReplicas, "replicas as `NAME:IMPL:OS[:PLATFORM],...` (IMPL one of "+strings.Join(lab.ImplNames(), ", ")+
		"; PLATFORM vm, the default, or container: a container of the local Docker engine from the image make images builds)")
	fs.IntVar(&f.nodes, "nodes", 3, "controller `nodes` (ars agent processes), 1-9")
	fs.StringVar(&f.service, "service", "dns", "service `name`")
	fs.StringVar(&f.probe, "probe", "ars", "probe `profile`: ars or paper (500ms x 3 sequential)")
	fs.StringVar(&f.confirm, "confirm", "quorum", "DoS verdicts: `none` or quorum (followers confirm)")
	fs.StringVar(&f.rotation, "rotation", "diverse", "rotation `policy`: diverse or round-robin")
	fs.StringVar(&f.dosMode, "dos-mode", "", "the service's dos_mode: make-before-break, break-before-make or parallel (default: the service's default)")
	fs.StringVar(&f.handover, "handover", lab.HandoverNIC, "`mode` of moving the service address: nic, or address (every Linux replica takes it through a replica agent: a VM's in its namespace, a container's on the host; Windows replicas keep nic)")
	fs.BoolVar(&f.perOpLog, "per-operation-login", false, "nodes log in to vCenter for every operation (the paper's script)")
	fs.BoolVar(&f.deadHook, "dead-webhook", false, "every node notifies a webhook on the hub that accepts connections and never answers")
	fs.BoolVar(&f.nodeDisks, "node-disks", false, fmt.Sprintf("every node's data directory on an ext4 file system of its own (%d MiB, a loop device), which node disk-fill and disk-freeze can fail", lab.NodeDiskSize>>20))
	fs.DurationVar(&f.waitLimit, "wait", 3*time.Minute, "how long up waits for the lab to be ready")
	f.ars.register(fs)
}

// defaultLabReplicas mirrors the research testbed (BIND 9 and Unbound on
// Windows VMs) plus Knot Resolver and PowerDNS Recursor on Linux VMs.
const defaultLabReplicas = "bind9-win:bind9:windows,unbound-win:unbound:windows,knot-lin:knot-resolver:linux,pdns-lin:pdns-recursor:linux"

func parseLabReplicas(s string) ([]lab.Replica, error) {
	var out []lab.Replica
	for _, e := range strings.Split(s, ",") {
		parts := strings.Split(strings.TrimSpace(e), ":")
		if len(parts) == 3 {
			parts = append(parts, fsm.PlatformVM)
		}
		if len(parts) != 4 || parts[0] == "" {
			return nil, cli.UsageErrorf("-replicas entry %q: want NAME:IMPL:OS[:PLATFORM]", e)
		}
		if parts[3] != fsm.PlatformVM && parts[3] != fsm.PlatformContainer {
			return nil, cli.UsageErrorf("-replicas entry %q: platform must be vm or container", e)
		}
		if _, ok := lab.Implementations[parts[1]]; !ok {
			return nil, cli.UsageErrorf("-replicas entry %q: unknown implementation %q (known: %s)", e, parts[1], strings.Join(lab.ImplNames(), ", "))
		}
		if parts[2] != fsm.OSWindows && parts[2] != fsm.OSLinux {
			return nil, cli.UsageErrorf("-replicas entry %q: os must be windows or linux", e)
		}
		out = append(out, lab.Replica{Name: parts[0], Impl: parts[1], OS: parts[2], Platform: parts[3]})
	}
	return out, nil
}

// args is the flag list that gives a daemon the same settings, with the
// ars binary up found.
func (f *labUpFlags) args(ars string) []string {
	return []string{"-prefix", f.prefix, "-state-dir", f.dir(), "-profile", f.profile, "-replicas", f.replicas,
		"-nodes", fmt.Sprint(f.nodes), "-service", f.service, "-probe", f.probe, "-confirm", f.confirm,
		"-rotation", f.rotation, "-dos-mode", f.dosMode, "-handover", f.handover, fmt.Sprintf("-per-operation-login=%t", f.perOpLog),
		fmt.Sprintf("-dead-webhook=%t", f.deadHook), fmt.Sprintf("-node-disks=%t", f.nodeDisks), "-ars", ars}
}

// config checks the flags and finds the ars binary (getenv reads
// $ARS_BIN).
func (f *labUpFlags) config(getenv func(string) string) (lab.Config, error) {
	reps, err := parseLabReplicas(f.replicas)
	if err != nil {
		return lab.Config{}, err
	}
	if f.nodes < 1 || f.nodes > 9 {
		return lab.Config{}, cli.UsageErrorf("-nodes %d: want 1-9", f.nodes)
	}
	if _, ok := vcsim.Profiles[f.profile]; !ok {
		return lab.Config{}, cli.UsageErrorf("-profile %q: want one of %s", f.profile, strings.Join(vcsim.ProfileNames(), ", "))
	}
	if f.dosMode != "" && !fsm.ValidMode(f.dosMode) {
		return lab.Config{}, cli.UsageErrorf("-dos-mode %q: want %s", f.dosMode, fsm.ModeChoices)
	}
	if f.handover == "" {
		f.handover = lab.HandoverNIC // callers that build the flags themselves (bench, scale)
	}
	if f.handover != lab.HandoverNIC && f.handover != lab.HandoverAddress {
		return lab.Config{}, cli.UsageErrorf("-handover %q: want %s or %s", f.handover, lab.HandoverNIC, lab.HandoverAddress)
	}
	ars, err := f.ars.resolve(getenv)
	if err != nil {
		return lab.Config{}, err
	}
	cfg := lab.Config{Prefix: f.prefix, StateDir: f.dir(), Replicas: reps, Profile: f.profile, Agent: ars,
		Service: f.service, PerOperationLogin: f.perOpLog, DeadWebhook: f.deadHook, NodeDisks: f.nodeDisks, Handover: f.handover,
		Probe:  fsm.ProbeSpec{Profile: f.probe, Confirm: f.confirm},
		Policy: fsm.PolicySpec{Rotation: f.rotation, DoSMode: f.dosMode}}
	for i := range f.nodes {
		cfg.Nodes = append(cfg.Nodes, fmt.Sprintf("n%d", i+1))
	}
	cfg.DNSD = findDNSD(ars)
	return cfg, nil
}

// findDNSD is the test responder (test/dnsd): on PATH, else next to the
// ars binary; "" if neither.
func findDNSD(ars string) string {
	if dnsd, err := exec.LookPath("dnsd"); err == nil {
		return dnsd
	}
	if p := filepath.Join(filepath.Dir(ars), "dnsd"); fileExists(p) {
		return p
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func needRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces, veth links, bridges)")
	}
	return nil
}

func init() {
	app.Register(cli.Command{
		Name:    "up",
		Group:   groupLab,
		Local:   true,
		Summary: "Bring the lab up: vCenter simulator, real DNS servers in namespaces, three agents",
		Help: `Starts the lab daemon (ars-lab serve) in the background and waits until it
is ready: govmomi's vCenter simulator with one VM per replica; each replica a
real DNS server (BIND 9, Unbound, Knot Resolver, PowerDNS Recursor) in its own
network namespace, all with the same service address on a lab bridge, started,
stopped, linked and reverted as the simulator's VMs change; -nodes ars agent
processes with TLS, tokens and a gossip key in namespaces of their own; the
service applied; one ars watch apparmor per replica; and a client that queries
the service address every 5 ms. Every lab address exists only inside the
lab's namespaces, which have no default route. A lab left over by a crash is
removed first. Needs root on Linux.

With -handover address every Linux replica takes the service address
through its replica agent (ars replica-agent: a VM's in its namespace, a
container's on the host entering the container's namespace; each on a
management link of its own); see docs/lab.md, "Address handover".

Then: ars-lab status, ars-lab attack dos|exploit, ars-lab node kill|start,
ars-lab exec -- ars status, ars-lab down.`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			var f labUpFlags
			f.register(fs)
			return func(ctx context.Context, e *cli.Env, args []string) error {
				cfg, err := f.config(e.Getenv)
				if err != nil {
					return err
				}
				if err := needRoot(); err != nil {
					return err
				}
				c := f.control()
				if st, err := c.Status(ctx); err == nil {
					return fmt.Errorf("a lab is already up (daemon pid %d, state %s); ars-lab down first", st.Pid, st.StateDir)
				}
				st, err := startLabDaemon(ctx, &f, cfg.Agent)
				if err != nil {
					return err
				}
				return printLabStatus(e, st)
			}
		},
	})
	app.Register(cli.Command{
		Name:    "serve",
		Hidden:  true, // started by up, not typed
		Local:   true,
		Summary: "Run the lab daemon in the foreground (what up starts)",
		Help: `Builds the lab as ars-lab up describes, serves the control socket
STATE-DIR/control.sock and tears everything down on SIGINT/SIGTERM or
ars-lab down.`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			var f labUpFlags
			f.register(fs)
			return func(ctx context.Context, e *cli.Env, args []string) error {
				cfg, err := f.config(e.Getenv)
				if err != nil {
					return err
				}
				if err := needRoot(); err != nil {
					return err
				}
				return serveLab(ctx, e, cfg)
			}
		},
	})
	app.Register(cli.Command{
		Name:    "status",
		Group:   groupLab,
		Local:   true,
		Summary: "Show the lab: nodes, replicas, roles, what the client sees",
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			var f labFlags
			f.register(fs)
			return func(ctx context.Context, e *cli.Env, args []string) error {
				st, err := f.control().Status(ctx)
				if err != nil {
					return err
				}
				return printLabStatus(e, st)
			}
		},
	})
	app.Register(cli.Command{
		Name:    "down",
		Group:   groupLab,
		Local:   true,
		Summary: "Tear the lab down: every namespace, link and process it made",
		Help: `Asks the daemon to stop; if none runs (a crash), removes what a lab
with -prefix left behind.`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			var f labFlags
			f.register(fs)
			return func(ctx context.Context, e *cli.Env, args []string) error {
				if err := needRoot(); err != nil {
					return err
				}
				return labDown(ctx, e, &f)
			}
		},
	})
	registerLabAttacks()
	registerLabNodes()
	registerLabLinks()
	app.Register(cli.Command{
		Name:    "exec",
		Group:   groupLab,
		Args:    "-- COMMAND [ARG...]",
		MinArgs: 1, MaxArgs: -1,
		Local:   true,
		Summary: "Run a command in the lab's client namespace, with the CLI pointed at a node",
		Help: `Runs COMMAND inside the client namespace (where the nodes' APIs and the
service address are reachable) with ARS_HTTP_ADDR set to a node (-node, by
default the leader), ARS_CACERT to the lab's CA and ARS_HTTP_TOKEN_FILE to
its operator token:
  ars-lab exec -- ars status
  ars-lab exec -- ars history
  ars-lab exec -- dig @10.253.53.53 www.lab.internal`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			var (
				f   labFlags
				ars arsBinary
			)
			f.register(fs)
			ars.register(fs)
			node := fs.String("node", "", "`node` the CLI talks to (default the leader)")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				st, err := f.control().Status(ctx)
				if err != nil {
					return err
				}
				if args[0] == "ars" {
					if args[0], err = ars.resolve(e.Getenv); err != nil {
						return err
					}
				}
				return labExec(ctx, e, st, *node, args)
			}
		},
	})
}

// startLabDaemon starts `ars-lab serve` detached (own session, output to
// STATE-DIR/labd.log) and waits until its control socket answers.
func startLabDaemon(ctx context.Context, f *labUpFlags, ars string) (lab.Status, error) {
	self, err := os.Executable()
	if err != nil {
		return lab.Status{}, fmt.Errorf("finding ars-lab's own executable for the daemon: %w", err)
	}
	if err := os.MkdirAll(f.dir(), 0o755); err != nil {
		return lab.Status{}, err
	}
	logPath := filepath.Join(f.dir(), "labd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return lab.Status{}, err
	}
	defer logf.Close()
	cmd := exec.Command(self, append([]string{"serve"}, f.args(ars)...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// The daemon outlives this command: it must not keep a descriptor
	// this command was handed (under flock, the lock, for as long as the
	// lab is up).
	lab.CloseInheritedOnExec()
	if err := cmd.Start(); err != nil {
		return lab.Status{}, fmt.Errorf("starting the lab daemon: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.NewTimer(f.waitLimit)
	defer deadline.Stop()
	c := f.control()
	for {
		if st, err := c.Status(ctx); err == nil {
			return st, nil
		}
		select {
		case err := <-exited:
			return lab.Status{}, fmt.Errorf("the lab daemon exited (%v): %s", err, logTail(logPath, 12))
		case <-deadline.C:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return lab.Status{}, fmt.Errorf("the lab was not ready within %s (stopped it; log %s): %s", f.waitLimit, logPath, logTail(logPath, 12))
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return lab.Status{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logTail is the last n lines of a file, joined for an error message.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// serveLab is the daemon: Up, serve the control socket, Down.
func serveLab(ctx context.Context, e *cli.Env, cfg lab.Config) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(e.Stderr, nil))
	cfg.Logger = log
	sock := lab.ControlSocket(cfg.StateDir)
	_ = os.Remove(sock)
	log.Info("lab: bringing the lab up", "prefix", cfg.Prefix, "state_dir", cfg.StateDir, "replicas", len(cfg.Replicas), "nodes", len(cfg.Nodes), "profile", cfg.Profile)
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if derr := l.Down(context.Background()); derr != nil {
			log.Error("lab: down", "err", derr)
		}
		_ = os.Remove(sock)
		log.Info("lab: down")
	}()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return err
	}
	down := make(chan struct{})
	srv := lab.ControlServer(l.Handler(func() { close(down) }))
	go func() { _ = srv.Serve(ln) }()
	log.Info("lab: up", "control", sock, "vcenter", l.VCenterURL())
	select {
	case <-ctx.Done():
	case <-down:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

func labDown(ctx context.Context, e *cli.Env, f *labFlags) error {
	c := f.control()
	st, err := c.Status(ctx)
	if err == nil {
		if err := c.Down(ctx); err != nil {
			return err
		}
		// Wait for the daemon to finish: its socket goes away last.
		for i := 0; i < 600 && processAlive(st.Pid); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if processAlive(st.Pid) {
			return fmt.Errorf("the lab daemon (pid %d) did not exit within 30s", st.Pid)
		}
	} else if !errors.Is(err, lab.ErrNoLab) {
		return err
	}
	// Whatever is left (a crashed daemon, or nothing): remove by prefix.
	nl, err := netlab.New(netlab.Topology{Prefix: f.prefix, StateDir: f.dir(), Replicas: []string{"x"}})
	if err != nil {
		return err
	}
	if err := nl.Down(ctx); err != nil {
		return err
	}
	left, err := nl.Leftovers()
	if err != nil {
		return err
	}
	if !left.Empty() {
		return fmt.Errorf("left behind: %s", left)
	}
	fmt.Fprintf(e.Stdout, "lab %s is down: no namespace, link or process left\n", f.prefix)
	return nil
}

func processAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

func printLabStatus(e *cli.Env, st lab.Status) error {
	return e.Print(st, func(w io.Writer) {
		fmt.Fprintf(w, "lab %s (daemon pid %d, state %s, since %s)\n", st.Prefix, st.Pid, st.StateDir, st.Started.Format(time.RFC3339))
		fmt.Fprintf(w, "service %s at %s; vCenter simulator %s (profile %s); generation %d\n", st.Service, st.ServiceAddr, st.VCenter, st.Profile, st.Generation)
		if st.Handover == lab.HandoverAddress {
			fmt.Fprintln(w, "handover: address (Linux replicas, through their replica agents)")
		}
		fmt.Fprintf(w, "client: last 10s %d queries, %d lost\n", st.Last10s.Sent, st.Last10s.Lost)
		if h := st.DeadWebhook; h != nil {
			fmt.Fprintf(w, "dead webhook: %s, %d delivery attempts held unanswered\n", h.URL, h.Attempts)
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "NODE\tAPI\tPID\tLEADER")
		for _, n := range st.Nodes {
			pid := "stopped"
			if n.Pid > 0 {
				pid = fmt.Sprint(n.Pid)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", n.Name, n.Addr, pid, cli.YesNo(n.Leader))
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "REPLICA\tIMPL\tOS\tPLATFORM\tVM\tPOWER\tLINKED\tROLE\tHANDOVER\tAGENT\tATTACKED")
		for _, r := range st.Replicas {
			att := ""
			if end, ok := st.Attacks[r.Impl]; ok {
				att = "until " + end.Format(time.TimeOnly)
			}
			vm := r.VM
			if vm == "" {
				vm = "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Impl, r.OS, r.Platform, vm, r.Power, cli.YesNo(r.Linked), r.Role,
				r.Handover, agentCell(r.Agent), att)
		}
		fmt.Fprintf(w, "\nCLI: ars-lab exec -- ars status   (CA %s/ca.pem, operator token %s/operator.token)\n", st.PKI, st.PKI)
	})
}

// agentCell is the AGENT column of a replica: "-" without an agent, else
// whether its process runs and whether the service link holds the
// address, as the lab measured them.
func agentCell(a *lab.AgentStatus) string {
	if a == nil {
		return "-"
	}
	run := "not running"
	if a.Pid > 0 {
		run = fmt.Sprintf("pid %d", a.Pid)
	}
	held := "holds the address"
	switch {
	case a.Held == nil:
		held = "address unknown"
	case !*a.Held:
		held = "no address"
	}
	return run + ", " + held
}

// labExec runs argv in the client namespace with the CLI's environment
// pointed at a node, passing the exit code through (an "ars" is already
// the ars binary's path).
func labExec(ctx context.Context, e *cli.Env, st lab.Status, node string, argv []string) error {
	if node == "" {
		node = st.Leader
	}
	addr := ""
	for _, n := range st.Nodes {
		if n.Name == node || node == "" && n.Pid > 0 {
			addr, node = n.Addr, n.Name
			break
		}
	}
	if addr == "" {
		return cli.UsageErrorf("no node %q in the lab", node)
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", st.ClientNS}, argv...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = e.Stdin, e.Stdout, e.Stderr
	cmd.Env = append(os.Environ(), cli.EnvAddr+"=https://"+addr, cli.EnvCACert+"="+filepath.Join(st.PKI, "ca.pem"),
		cli.EnvTokenFile+"="+filepath.Join(st.PKI, "operator.token"))
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &cli.ExitCodeError{Code: ee.ExitCode()}
	}
	return err
}
