package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab"
	"github.com/ars-project/ars/lab/bench"
	"github.com/ars-project/ars/vcsim"
)

// The downtime benchmark (docs/design.md §6): scenarios × modes × trials on the
// lab, every mode in the same invocation under the same vCenter latency
// profile, written to bench/results/latest.{json,png,md}.

// benchReplicas is the bench's topology: the research testbed's two
// Windows VMs (BIND 9, Unbound) and Linux VMs with BIND 9, Knot Resolver
// and PowerDNS Recursor. The two BIND 9 replicas come one after the other
// in rotation order, so that an attack on BIND 9 meets round-robin rotation
// twice (impl-attack).
const benchReplicas = "bind9-win:bind9:windows,bind9-lin:bind9:linux,unbound-win:unbound:windows,knot-lin:knot-resolver:linux,pdns-lin:pdns-recursor:linux"

// benchLinuxVMs is the vm-vm lab of the ars-address mode: the bench's
// Linux VMs.
const benchLinuxVMs = "bind9-lin:bind9:linux,knot-lin:knot-resolver:linux,pdns-lin:pdns-recursor:linux"

// benchImpl is the implementation impl-attack attacks.
const benchImpl = "bind9"

type benchFlags struct {
	labFlags
	profiles, modes, scenarios string
	trials                     int
	trialsSet                  bool // -trials was given (repeated-dos then runs that many)
	out                        string
	implFor                    time.Duration
	load, capacityFor          time.Duration
	loadFraction               float64
	merge                      bool
	dosMode                    string
	deadHook                   bool
	ars                        arsBinary
}

func init() {
	app.Register(cli.Command{
		Name:  "bench",
		Group: groupBench,
		Local: true,
		Summary: "Measure downtime per attack on the lab: ars vs the paper's system (SDK and CLI) vs dnsdist; " +
			"writes bench/results/latest.{json,png,md}",
		Help: `Brings the lab up once per mode and profile (root, Linux; the lab's packages:
make lab-deps) and runs each scenario -trials times from a steady service:

  dos/PAIR         the active replica's server is wedged; the probes find it
  exploit/PAIR     an AppArmor denial in the active replica's audit log
                   (PAIR: vm-vm, vm-container, container-container; each
                   pair has a lab of its own; containers need make images)
  leader-loss/dos  the leader node is killed (SIGKILL) as the DoS starts (ars);
                   paper-sdk: every node is killed, none takes over (the
                   paper's one management node), watched for 10 s
  impl-attack/diverse, impl-attack/round-robin, impl-attack/first-available
                   every BIND 9 replica fails as soon as it serves, for -impl-for;
                   outages are counted (ars: both rotations; paper-sdk:
                   round-robin, its fixed order; dnsdist: first-available)
  repeated-dos     a DoS on the serving replica every 5 s for 60 s, under the
                   policy ars ships with (flap damping included); per attack:
                   switched or not, outage, a clean replica running or not (ars;
                   3 trials unless -trials is given)

Modes: ars (default tuning: 100 ms probes, 275 ms window, quorum
confirmation, a persistent vCenter session, make-before-break on exploits);
ars-address (ars with address handover: every Linux replica, VM or container,
has a replica agent that claims the address, and the vm-vm lab has Linux VMs
only; dos and exploit on every pair, and leader-loss/dos);
paper-sdk (the paper's improved system: 500 ms x 3 sequential probes, one
persistent vCenter session, break-before-make); paper-cli (paper-sdk with a
vCenter login for every operation: dos and exploit only); dnsdist (each
pair's replicas at their own addresses behind dnsdist at its fastest
health checks: dos on every pair, and impl-attack; no exploit detection).
A row whose measure differs from its scenario name carries a note.

Downtime is the longest run of queries the lab's client (one query every
5 ms, 250 ms timeout) saw unanswered; detection and switch come from the
cluster's switch record. A switch after the one the attack caused is a
false switch.`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			var f benchFlags
			f.registerPrefix(fs, "arsbench") // never the lab an operator may have up
			fs.StringVar(&f.profiles, "profiles", "none,paper", "vCenter latency `profiles`, comma-separated ("+strings.Join(vcsim.ProfileNames(), ", ")+")")
			fs.StringVar(&f.modes, "modes", "ars,ars-address,paper-sdk,paper-cli,dnsdist", "`modes`, comma-separated")
			fs.StringVar(&f.scenarios, "scenarios", "", "only scenarios whose name starts with one of these comma-separated `prefixes` (default all)")
			fs.IntVar(&f.trials, "trials", 10, "`trials` per scenario and mode (1-100; repeated-dos: 3 unless given)")
			fs.StringVar(&f.out, "out", filepath.Join("bench", "results"), "output `directory`")
			fs.DurationVar(&f.implFor, "impl-for", 8*time.Second, "how long each impl-attack lasts")
			fs.DurationVar(&f.load, "load", 5*time.Minute, "benign load (dnsperf) on the ars lab of the first profile for this `long`; 0: none")
			fs.Float64Var(&f.loadFraction, "load-fraction", 0.8, "benign load as a `fraction` of the weakest replica's measured capacity")
			fs.BoolVar(&f.merge, "merge", false, "keep the results of -out's latest.json that this run does not measure again (same scenario, mode and profile)")
			fs.DurationVar(&f.capacityFor, "capacity-for", 10*time.Second, "how `long` dnsperf measures each replica's capacity")
			fs.StringVar(&f.dosMode, "dos-mode", "", "the ars mode's dos_mode: make-before-break, break-before-make or parallel (default: the service's default; the paper's modes always break before make)")
			fs.BoolVar(&f.deadHook, "dead-webhook", false, "the ars mode's nodes notify a webhook that accepts connections and never answers "+
				"(compare with a run without it: a dead notification sink must not delay a switch)")
			f.ars.register(fs)
			return func(ctx context.Context, e *cli.Env, args []string) error {
				fs.Visit(func(fl *flag.Flag) { f.trialsSet = f.trialsSet || fl.Name == "trials" })
				return runBench(ctx, e, &f)
			}
		},
	})
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func runBench(ctx context.Context, e *cli.Env, f *benchFlags) error {
	profiles, modes := splitList(f.profiles), splitList(f.modes)
	for _, p := range profiles {
		if _, ok := vcsim.Profiles[p]; !ok {
			return cli.UsageErrorf("-profiles: unknown profile %q (known: %s)", p, strings.Join(vcsim.ProfileNames(), ", "))
		}
	}
	for _, m := range modes {
		if !slices.Contains(bench.Modes(), m) {
			return cli.UsageErrorf("-modes: unknown mode %q (known: %s)", m, strings.Join(bench.Modes(), ", "))
		}
	}
	if len(profiles) == 0 || len(modes) == 0 {
		return cli.UsageErrorf("-profiles and -modes must name at least one")
	}
	if f.dosMode != "" && !fsm.ValidMode(f.dosMode) {
		return cli.UsageErrorf("-dos-mode %q: want %s", f.dosMode, fsm.ModeChoices)
	}
	if f.trials < 1 || f.trials > 100 {
		return cli.UsageErrorf("-trials %d: want 1-100", f.trials)
	}
	if f.implFor < time.Second || f.implFor > lab.MaxAttack {
		return cli.UsageErrorf("-impl-for %s: want 1s to %s", f.implFor, lab.MaxAttack)
	}
	if f.load < 0 || f.load > lab.MaxLoad || f.load > 0 && f.load < time.Second {
		return cli.UsageErrorf("-load %s: want 0, or 1s to %s", f.load, lab.MaxLoad)
	}
	if f.loadFraction <= 0 || f.loadFraction > 1 {
		return cli.UsageErrorf("-load-fraction %g: want more than 0 and at most 1", f.loadFraction)
	}
	if f.capacityFor < time.Second || f.capacityFor > time.Minute {
		return cli.UsageErrorf("-capacity-for %s: want 1s to 1m", f.capacityFor)
	}
	if err := needRoot(); err != nil {
		return err
	}
	r := &benchRun{f: f, e: e, log: slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	file := bench.File{Machine: machineInfo(), Started: time.Now().UTC().Truncate(time.Second), Go: runtime.Version(),
		Command: "ars-lab " + strings.Join(os.Args[1:], " "), LoadStart: loadAverage()}
	if f.load > 0 && slices.Contains(modes, bench.ModeARS) {
		if err := r.capacity(ctx); err != nil {
			return fmt.Errorf("bench: capacity: %w", err)
		}
	}
	for i, profile := range profiles {
		r.loadHere = i == 0 && r.loadQPS > 0
		for _, mode := range modes {
			res, err := r.mode(ctx, profile, mode)
			if err != nil {
				return fmt.Errorf("bench: profile %s, mode %s: %w", profile, mode, err)
			}
			file.Scenarios = append(file.Scenarios, res...)
		}
	}
	file.LoadEnd = loadAverage()
	if f.merge {
		if err := mergeOld(&file, filepath.Join(f.out, bench.JSONFile)); err != nil {
			return err
		}
	}
	if err := bench.Write(f.out, file); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "\nwrote %s, %s and %s\n\n%s", filepath.Join(f.out, bench.JSONFile), filepath.Join(f.out, bench.ChartFile),
		filepath.Join(f.out, bench.TableFile), bench.Markdown(file))
	return nil
}

// loadAverage is the machine's 1, 5 and 15 minute load averages ("" where
// the kernel does not say).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}

// mergeOld adds to f the results of the file at path that f does not
// have (by scenario, mode and profile); a missing file adds nothing.
func mergeOld(f *bench.File, path string) error {
	old, err := bench.Read(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("-merge: %w", err)
	}
	type key struct{ name, mode, profile string }
	have := map[key]bool{}
	for _, r := range f.Scenarios {
		have[key{r.Name, r.Mode, r.Profile}] = true
	}
	for _, r := range old.Scenarios {
		if !have[key{r.Name, r.Mode, r.Profile}] {
			f.Scenarios = append(f.Scenarios, r)
		}
	}
	f.Command += " (merged into the results of: " + old.Command + ")"
	return nil
}

type benchRun struct {
	f   *benchFlags
	e   *cli.Env
	log *slog.Logger
	// loadQPS is the benign load's rate (0: none); loadHere says whether
	// the current profile runs it.
	loadQPS  int
	loadHere bool
}

// capacity measures every replica's capacity with dnsperf and sets the
// benign load's rate from the weakest.
func (r *benchRun) capacity(ctx context.Context) error {
	reps, err := parseLabReplicas(benchReplicas)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.e.Stdout, "== capacity: dnsperf against each replica for %s\n", r.f.capacityFor)
	d, err := lab.UpDNSDist(ctx, lab.Config{Prefix: r.f.prefix, StateDir: r.f.dir(), Replicas: reps, Logger: r.log})
	if err != nil {
		return err
	}
	defer func() { _ = d.Down(context.Background()) }()
	caps, err := d.Capacity(ctx, r.f.capacityFor)
	if err != nil {
		return err
	}
	weakest := ""
	for _, rep := range reps {
		fmt.Fprintf(r.e.Stdout, "capacity %s (%s): %.0f queries/s\n", rep.Name, rep.Impl, caps[rep.Name])
		if weakest == "" || caps[rep.Name] < caps[weakest] {
			weakest = rep.Name
		}
	}
	r.loadQPS = int(caps[weakest] * r.f.loadFraction)
	fmt.Fprintf(r.e.Stdout, "benign load: %d queries/s (%.0f %% of %s's %.0f)\n", r.loadQPS, 100*r.f.loadFraction, weakest, caps[weakest])
	if r.loadQPS < 1 {
		return fmt.Errorf("the weakest replica (%s) answered %.0f queries/s", weakest, caps[weakest])
	}
	return nil
}

func (r *benchRun) want(name string) bool {
	pre := splitList(r.f.scenarios)
	if len(pre) == 0 {
		return true
	}
	return slices.ContainsFunc(pre, func(p string) bool { return strings.HasPrefix(name, p) })
}

// modeConfig is the lab for one mode under one profile.
func (r *benchRun) modeConfig(profile, mode, replicas string) (lab.Config, error) {
	uf := labUpFlags{labFlags: r.f.labFlags, profile: profile, replicas: replicas, nodes: 3,
		service: "dns", probe: "ars", confirm: "quorum", rotation: fsm.RotationDiverse, ars: r.f.ars}
	if mode == bench.ModePaperSDK || mode == bench.ModePaperCLI {
		// The paper's service monitor: one prober, 500 ms x 3.
		uf.probe, uf.confirm = "paper", "none"
		uf.perOpLog = mode == bench.ModePaperCLI
	}
	cfg, err := uf.config(r.e.Getenv)
	if err != nil {
		return cfg, err
	}
	// Ten trials a minute must not meet the default damping (5 per
	// minute); min_dwell stays at its default and Steady waits it out.
	cfg.Policy.MaxSwitches = 1000
	if mode == bench.ModePaperSDK || mode == bench.ModePaperCLI {
		// The paper's VM changer disconnects the attacked replica before
		// it connects the standby, whatever the attack.
		cfg.Policy.ExploitMode = fsm.ModeBreakBeforeMake
		cfg.Policy.DoSMode = fsm.ModeBreakBeforeMake
	} else {
		cfg.Policy.DoSMode = r.f.dosMode
		cfg.DeadWebhook = r.f.deadHook
	}
	if mode == bench.ModeARSAddress {
		cfg.Handover = fsm.HandoverAddress
	}
	cfg.Logger = r.log
	return cfg, nil
}

// benchPairs are the platform pairs of the dos/ and exploit/ scenarios,
// each run on a lab of its own (benchTopology).
var benchPairs = []string{"vm-vm", "vm-container", "container-container"}

// benchTopology is the lab of one pair. vm-vm is benchReplicas (which
// also runs leader-loss, impl-attack and the benign load). vm-container
// is the paper's Linux<->Windows pair: a Windows VM and a container (the
// paper ran its containers on a Linux VM); with two replicas every
// switch crosses platforms, VM->container and container->VM in turn.
// container-container has containers only.
//
// Under ars-address every replica must run Linux (Windows replicas keep
// NIC handover): vm-vm has the Linux VMs only (a switch between two of
// them is one agent call on each end), vm-container a Linux VM beside
// the container, and container-container is the ars lab's (Linux
// containers, each with its agent on the host).
func benchTopology(mode, pair string) string {
	if mode == bench.ModeARSAddress {
		switch pair {
		case "vm-vm":
			return benchLinuxVMs
		case "vm-container":
			return "bind9-lin:bind9:linux:vm,unbound-ctr:unbound:linux:container"
		}
	}
	switch pair {
	case "vm-container":
		return "bind9-win:bind9:windows:vm,unbound-ctr:unbound:linux:container"
	case "container-container":
		return "bind9-ctr:bind9:linux:container,unbound-ctr:unbound:linux:container,knot-ctr:knot-resolver:linux:container"
	}
	return benchReplicas
}

// The scenarios beyond dos/PAIR and exploit/PAIR, each run on the vm-vm
// lab.
const (
	scnBenignLoad     = "benign-load"
	scnLeaderLoss     = "leader-loss/dos"
	scnImplDiverse    = "impl-attack/" + fsm.RotationDiverse
	scnImplRoundRobin = "impl-attack/" + fsm.RotationRoundRobin
	scnImplFirst      = "impl-attack/first-available"
)

// paperLeaderLossBound is how long leader-loss/dos watches the paper's
// system, which cannot switch once its one management node is dead.
const paperLeaderLossBound = 10 * time.Second

// benchLab is a lab the bench brings up for a mode: a pair's topology
// (benchTopology) and the scenarios to run on it, in order.
type benchLab struct {
	pair      string
	scenarios []string
}

// benchPlan is what a mode runs: its labs and the rows it reports as not
// run (only those want selects). load says whether the benign load runs
// (the ars mode, first profile); it is never a not-run row.
//
//   - ars: dos and exploit on every pair; on vm-vm also the benign load,
//     leader-loss/dos and impl-attack under both rotations.
//   - paper-sdk: dos and exploit on every pair; on vm-vm also
//     leader-loss/dos (one management node: no switch) and impl-attack
//     under its own fixed-order rotation (round-robin).
//   - paper-cli: dos and exploit on every pair (the paper's system is
//     measured on the rest in paper-sdk mode).
//   - dnsdist: dos on every pair; on vm-vm also impl-attack under its
//     firstAvailable policy; no exploit detection, no controller.
func benchPlan(mode string, want func(string) bool, load bool) (labs []benchLab, notRun []bench.Result) {
	skip := func(name, reason string) {
		if want(name) {
			notRun = append(notRun, bench.NotRun(name, mode, "", reason))
		}
	}
	var rest []string // the vm-vm lab's further scenarios
	switch mode {
	case bench.ModeARS:
		if load {
			rest = append(rest, scnBenignLoad)
		}
		rest = append(rest, scnLeaderLoss, scnImplDiverse, scnImplRoundRobin, bench.RepeatedDoS)
	case bench.ModeARSAddress:
		rest = append(rest, scnLeaderLoss)
		for _, n := range []string{scnImplDiverse, scnImplRoundRobin} {
			skip(n, "address handover changes no rotation: see the ars rows")
		}
	case bench.ModePaperSDK:
		rest = append(rest, scnLeaderLoss, scnImplRoundRobin)
		skip(scnImplDiverse, "the paper's system rotates in a fixed order: see its impl-attack/round-robin row")
	case bench.ModePaperCLI:
		for _, n := range []string{scnLeaderLoss, scnImplDiverse, scnImplRoundRobin} {
			skip(n, "the paper's system is measured here in paper-sdk mode (paper-cli adds only a vCenter login per operation)")
		}
	case bench.ModeDNSDist:
		rest = append(rest, scnImplFirst)
		skip(scnLeaderLoss, "dnsdist has no controller to lose")
		skip(scnImplDiverse, "dnsdist has no rotation policy: see its impl-attack/first-available row")
		skip(scnImplRoundRobin, "dnsdist has no rotation policy: see its impl-attack/first-available row")
	}
	if mode != bench.ModeARS {
		skip(bench.RepeatedDoS, repeatedNotRun)
	}
	for _, p := range benchPairs {
		var run []string
		if want("dos/" + p) {
			run = append(run, "dos/"+p)
		}
		if mode == bench.ModeDNSDist {
			skip("exploit/"+p, "dnsdist has no exploit detection")
		} else if want("exploit/" + p) {
			run = append(run, "exploit/"+p)
		}
		if p == "vm-vm" {
			for _, n := range rest {
				if n == scnBenignLoad || want(n) {
					run = append(run, n)
				}
			}
		}
		if len(run) > 0 {
			labs = append(labs, benchLab{pair: p, scenarios: run})
		}
	}
	return labs, notRun
}

// benchNote is the note of a result that ran, where its scenario name
// does not say what the mode measured ("" elsewhere).
func benchNote(name, mode string) string {
	switch {
	case mode == bench.ModeARSAddress && (strings.HasPrefix(name, "dos/vm-vm") || strings.HasPrefix(name, "exploit/vm-vm") || name == scnLeaderLoss):
		return "address handover; the lab's VMs are the Linux ones only (" + benchLinuxVMs + "), every switch between two replica agents"
	case mode == bench.ModeARSAddress && strings.HasSuffix(name, "/vm-container"):
		return "address handover on both ends: the Linux VM's agent in the guest, the container's on the Docker host"
	case mode == bench.ModePaperSDK && name == scnLeaderLoss:
		return fmt.Sprintf("no switch: the paper's system has one management node; all the lab's nodes are killed as the DoS starts "+
			"and none takes over, so the client sees the whole %s bound down (a lower bound, not a switch time)", paperLeaderLossBound)
	case mode == bench.ModePaperSDK && name == scnImplRoundRobin:
		return "the paper's own rotation: a fixed order (round-robin), break-before-make"
	case mode == bench.ModeDNSDist && name == scnImplFirst:
		return "dnsdist firstAvailable over the vm-vm replicas in their order (both BIND 9 first); it has no notion of implementation, " +
			"so the attack takes down each BIND 9 replica it sends the queries to; outages count those"
	}
	return ""
}

func (r *benchRun) mode(ctx context.Context, profile, mode string) ([]bench.Result, error) {
	labs, notRun := benchPlan(mode, r.want, r.loadHere)
	var out []bench.Result
	for _, n := range notRun {
		n.Profile = profile
		out = append(out, n)
	}
	for _, bl := range labs {
		var res []bench.Result
		var err error
		if mode == bench.ModeDNSDist {
			res, err = r.dnsdist(ctx, profile, bl)
		} else {
			res, err = r.pair(ctx, profile, mode, bl)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, res...)
	}
	return out, nil
}

// pair brings up the lab of one pair for mode (ars or a paper mode) and
// runs bl's scenarios on it.
func (r *benchRun) pair(ctx context.Context, profile, mode string, bl benchLab) ([]bench.Result, error) {
	var out []bench.Result
	cfg, err := r.modeConfig(profile, mode, benchTopology(mode, bl.pair))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(r.e.Stdout, "== profile %s, mode %s, %s: lab up\n", profile, mode, bl.pair)
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := l.Down(context.Background()); err != nil {
			fmt.Fprintf(r.e.Stderr, "bench: lab down: %v\n", err)
		}
	}()
	dwell := time.Duration(fsm.DefaultMinDwell) + 500*time.Millisecond
	settle, limit := 1500*time.Millisecond, 30*time.Second
	if _, err := l.Steady(ctx, 0); err != nil {
		return nil, err
	}
	for _, name := range bl.scenarios {
		var trial func() (bench.Trial, int, error)
		switch kind, _, _ := strings.Cut(name, "/"); {
		case name == scnBenignLoad:
			res, err := r.benignLoad(ctx, l, profile, mode, dwell)
			if err != nil {
				return nil, err
			}
			out = append(out, res)
			continue
		case kind == "dos" || kind == "exploit":
			trial = func() (bench.Trial, int, error) { return l.Trial(ctx, kind, dwell, settle, limit) }
		case name == scnLeaderLoss && (mode == bench.ModeARS || mode == bench.ModeARSAddress):
			trial = func() (bench.Trial, int, error) { return l.LeaderLossTrial(ctx, dwell, settle, limit) }
		case name == scnLeaderLoss:
			trial = func() (bench.Trial, int, error) {
				t, err := l.ManagementLossTrial(ctx, dwell, paperLeaderLossBound)
				return t, 0, err
			}
		case name == bench.RepeatedDoS:
			var dos *bench.Result
			if i := slices.IndexFunc(out, func(x bench.Result) bool { return x.Name == "dos/vm-vm" }); i >= 0 {
				dos = &out[i]
			}
			res, err := r.repeated(ctx, l, profile, mode, cfg.Policy, dos)
			if err != nil {
				return nil, err
			}
			out = append(out, res)
			continue
		case name == scnImplDiverse || name == scnImplRoundRobin:
			if err := l.SetRotation(ctx, strings.TrimPrefix(name, "impl-attack/")); err != nil {
				return nil, err
			}
			trial = func() (bench.Trial, int, error) {
				t, err := l.ImplAttackTrial(ctx, benchImpl, r.f.implFor, dwell)
				return t, 0, err
			}
		default:
			return nil, fmt.Errorf("bench: mode %s runs no scenario %s", mode, name)
		}
		res, err := r.trials(name, mode, profile, trial)
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	if cfg.DeadWebhook {
		note := fmt.Sprintf("every node notified a webhook that accepts connections and never answers: "+
			"%d delivery attempts held unanswered during this lab", l.DeadWebhookConnections())
		for i := range out {
			out[i].Note = strings.TrimPrefix(out[i].Note+"; "+note, "; ")
		}
	}
	return out, nil
}

// benignLoad runs the benign load on l.
func (r *benchRun) benignLoad(ctx context.Context, l *lab.Lab, profile, mode string, dwell time.Duration) (bench.Result, error) {
	fmt.Fprintf(r.e.Stdout, "%s ars benign-load: %d queries/s for %s\n", profile, r.loadQPS, r.f.load)
	t, falses, perf, err := l.BenignLoad(ctx, r.loadQPS, r.f.load, dwell)
	if err != nil {
		return bench.Result{}, fmt.Errorf("benign load: %w", err)
	}
	fmt.Fprintf(r.e.Stdout, "%s ars benign-load: dnsperf sent %d, completed %d, lost %d, %.0f queries/s; ars client lost %d; false switches %d\n",
		profile, perf.Sent, perf.Completed, perf.Lost, perf.QPS, t.Lost, falses)
	return bench.Summarize(scnBenignLoad, mode, profile, []bench.Trial{t}, falses)
}

// dnsdist brings up bl's pair's replicas behind dnsdist and runs bl's
// scenarios on them. The vCenter profile does not apply (dnsdist drives
// no vCenter); the results carry it so that they sit beside the other
// modes of the same run.
func (r *benchRun) dnsdist(ctx context.Context, profile string, bl benchLab) ([]bench.Result, error) {
	reps, err := parseLabReplicas(benchTopology(bench.ModeDNSDist, bl.pair))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(r.e.Stdout, "== profile %s, mode dnsdist, %s: lab up\n", profile, bl.pair)
	d, err := lab.UpDNSDist(ctx, lab.Config{Prefix: r.f.prefix, StateDir: r.f.dir(), Replicas: reps, Logger: r.log})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := d.Down(context.Background()); err != nil {
			fmt.Fprintf(r.e.Stderr, "bench: lab down: %v\n", err)
		}
	}()
	settle, limit := 300*time.Millisecond, 30*time.Second
	var out []bench.Result
	for _, name := range bl.scenarios {
		var trial func() (bench.Trial, int, error)
		switch {
		case strings.HasPrefix(name, "dos/"):
			trial = func() (bench.Trial, int, error) {
				t, err := d.Trial(ctx, settle, limit)
				return t, 0, err
			}
		case name == scnImplFirst:
			trial = func() (bench.Trial, int, error) {
				t, err := d.ImplAttackTrial(ctx, benchImpl, r.f.implFor, settle, limit)
				return t, 0, err
			}
		default:
			return nil, fmt.Errorf("bench: mode dnsdist runs no scenario %s", name)
		}
		res, err := r.trials(name, bench.ModeDNSDist, profile, trial)
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	return out, nil
}

// trials runs one scenario's trials and summarises them. A trial that
// fails is recorded as failed; the lab failing to settle ends the run.
func (r *benchRun) trials(name, mode, profile string, trial func() (bench.Trial, int, error)) (bench.Result, error) {
	var ts []bench.Trial
	falses := 0
	for i := range r.f.trials {
		t, fs, err := trial()
		if err != nil {
			return bench.Result{}, fmt.Errorf("%s trial %d: %w", name, i+1, err)
		}
		falses += fs
		ts = append(ts, t)
		printTrial(r.e.Stdout, profile, mode, name, i+1, r.f.trials, t, fs)
	}
	res, err := bench.Summarize(name, mode, profile, ts, falses)
	if errors.Is(err, bench.ErrNoTrials) {
		return bench.NotRun(name, mode, profile, "every trial failed: "+ts[0].Err), nil
	}
	res.Note = benchNote(name, mode)
	return res, err
}

func printTrial(w io.Writer, profile, mode, name string, i, n int, t bench.Trial, falses int) {
	fmt.Fprintf(w, "%s %s %s %d/%d: downtime %.1f ms, lost %d, detection %.0f ms, switch %.0f ms, outages %d, false switches %d",
		profile, mode, name, i, n, float64(t.Downtime.Microseconds())/1000, t.Lost,
		float64(t.Detection.Microseconds())/1000, float64(t.Switch.Microseconds())/1000, t.Outages, falses)
	if t.Exposure != nil {
		fmt.Fprintf(w, ", exposure %.1f ms", float64(t.Exposure.Microseconds())/1000)
	}
	if t.Err != "" {
		fmt.Fprintf(w, " (failed: %s)", t.Err)
	}
	fmt.Fprintln(w)
}

// machineInfo describes this machine for the result file.
func machineInfo() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d cores (%s), Linux %s, %s", runtime.NumCPU(), model, kernel, runtime.Version())
}
