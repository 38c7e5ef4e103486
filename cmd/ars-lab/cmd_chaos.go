package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/lab"
	"github.com/ars-project/ars/lab/chaos"
	"github.com/ars-project/ars/vcsim"
)

// The chaos suite (docs/chaos.md): seeded schedules of attacks and faults on the
// lab, each recorded as a history and checked against docs/design.md §4 by
// lab/chaos. Decisions: lab/DESIGN.md, "Chaos".

type chaosFlags struct {
	labFlags
	seed       int64
	schedules  int
	length     time.Duration
	ready      time.Duration
	out        string
	histories  string
	profile    string
	replicas   string
	recheck    bool
	sessionTTL time.Duration
	keepAlive  time.Duration
	disks      bool
	handover   string
	bounds     chaos.Bounds
	ars        arsBinary
}

// chaosReplicas is the chaos lab: the lab's default Windows VMs (BIND 9,
// Unbound) and Knot Resolver VM, and PowerDNS Recursor as a container of
// the local Docker engine, so that schedules can restart the engine too.
const chaosReplicas = "bind9-win:bind9:windows,unbound-win:unbound:windows,knot-lin:knot-resolver:linux,pdns-ctr:pdns-recursor:linux:container"

// chaosAddressReplicas is the chaos lab under -handover address: two
// Linux VMs (their agents move the address, and a switch between them is
// one claim), a Windows VM (NIC handover) and a container, so that every
// kind of switch meets the faults.
const chaosAddressReplicas = "knot-lin:knot-resolver:linux,pdns-lin:pdns-recursor:linux,bind9-win:bind9:windows,unbound-ctr:unbound:linux:container"

func init() {
	app.Register(cli.Command{
		Name:    "chaos",
		Group:   groupBench,
		Local:   true,
		Summary: "Run seeded fault schedules on the lab and check the invariants (docs/design.md §4) over each history",
		Help: `Brings a lab of its own up (prefix arschaos: it never touches another lab;
root, Linux, the lab's packages) and runs -schedules seeded random schedules,
seeds -seed, -seed+1, …. Each schedule (-length) interleaves attacks on the
active replica (DoS, exploit) with faults: kill -9 and restart of a node,
SIGSTOP/SIGCONT of a node, a partition that cuts one node off the lab network
(the leader half of the time), vCenter method delays and failures, and
termination of the nodes' vCenter sessions, (when -replicas has
containers) a restart of the Docker engine under them, degraded links
(1-30 % loss, or a one-way partition, on one node's link) and delayed links
(10-300 ms, jitter up to half of it, both ways on one node's link), and
with -handover address (the default) replica agent faults: an agent killed
(SIGKILL, started again with its state file), cut off from the nodes, or a
rogue replica that puts the address back and announces it after its agent
released it. Before a schedule the lab must be
healthy (leader, every node a voter, service steady, alerts answered, at most
the leader's vCenter session); after it every fault is healed and the lab must
become healthy again within -ready.

Each run's history (the lab's data-path events, the client's gaps, every
node's status and state digest and the vCenter's sessions four times a second,
the switches and the alert ledger) is written to -histories/seed-N.json, and
the checker reports every broken invariant: two replicas on the service
address beyond the make-before-break bound (with address handover a replica
is on it while linked and holding it), an agent that carried out a command
older than one it carried out before, a committed alert unanswered or an exploit never
reported (or reported beyond the outage bound), an exploited replica linked before its revert, an attack not
switched away from, different states at one log index, a vCenter session
outliving its leadership, the service not answering again within the outage
bound, the lab not healthy after the heal, more elections than the faults on
the leader explain.

A failing seed is printed; ars-lab chaos -seed N -schedules 1 runs it again. The
summary (faults by kind, attacks, switches, violations, longest outage) is
printed as a table and written to -out. Exit code 1 if any invariant broke.`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			var f chaosFlags
			f.registerPrefix(fs, "arschaos")
			fs.Int64Var(&f.seed, "seed", 1, "first schedule's `seed`")
			fs.IntVar(&f.schedules, "schedules", 5, "`number` of schedules (1-10000)")
			fs.DurationVar(&f.length, "length", 20*time.Second, "each schedule's `length` (10s-5m)")
			fs.DurationVar(&f.ready, "ready", 60*time.Second, "how `long` the lab may take to be healthy again after a schedule")
			fs.StringVar(&f.out, "out", filepath.Join("bench", "results", "chaos.json"), "summary `file` (JSON); empty: none")
			fs.StringVar(&f.histories, "histories", "", "`directory` for the histories (default STATE-DIR/histories)")
			fs.BoolVar(&f.recheck, "recheck", false, "bring no lab up: check the histories of seeds -seed.. in -histories again (after a change of the checker or its bounds)")
			fs.StringVar(&f.replicas, "replicas", "", "replicas as `NAME:IMPL:OS[:PLATFORM],...` (as for ars-lab up; a container replica needs make images and adds Docker engine restarts to the schedules; default: "+
				chaosAddressReplicas+" with -handover address, "+chaosReplicas+" with nic)")
			fs.StringVar(&f.handover, "handover", lab.HandoverAddress, "`mode` of moving the service address (nic or address; address adds replica agent faults to the schedules)")
			fs.StringVar(&f.profile, "profile", "none", "vCenter latency `profile` of the simulator ("+strings.Join(vcsim.ProfileNames(), ", ")+")")
			fs.DurationVar(&f.sessionTTL, "session-timeout", 5*time.Second, "the simulator's idle session `timeout` (a killed leader's session ends 1-2 of them later)")
			fs.DurationVar(&f.keepAlive, "keepalive", 1500*time.Millisecond, "the nodes' vCenter session check `interval` (well below -session-timeout)")
			fs.DurationVar(&f.bounds.MaxOutage, "max-outage", 10*time.Second, "bound: attack -> switched away and answered again")
			fs.DurationVar(&f.bounds.MaxOverlap, "max-overlap", 10*time.Second, "bound: two replicas linked at once (make-before-break window)")
			fs.DurationVar(&f.bounds.LogoutGrace, "logout-grace", 5*time.Second, "bound: a node's session after its leadership ends")
			fs.BoolVar(&f.disks, "disks", true, "give every node a disk of its own and add disk faults (full, frozen) to the schedules")
			f.ars.register(fs)
			return func(ctx context.Context, e *cli.Env, args []string) error {
				return runChaos(ctx, e, &f)
			}
		},
	})
}

func (f *chaosFlags) check() error {
	switch {
	case f.schedules < 1 || f.schedules > 10000:
		return cli.UsageErrorf("-schedules %d: want 1-10000", f.schedules)
	case f.length < 10*time.Second || f.length > 5*time.Minute:
		return cli.UsageErrorf("-length %s: want 10s to 5m", f.length)
	case f.ready < 5*time.Second || f.ready > 10*time.Minute:
		return cli.UsageErrorf("-ready %s: want 5s to 10m", f.ready)
	case f.sessionTTL < 2*time.Second || f.keepAlive <= 0 || f.keepAlive*2 > f.sessionTTL:
		return cli.UsageErrorf("-session-timeout %s, -keepalive %s: want a timeout of at least 2s and a keep-alive of at most half of it", f.sessionTTL, f.keepAlive)
	case f.bounds.MaxOutage <= 0 || f.bounds.MaxOverlap <= 0 || f.bounds.LogoutGrace <= 0:
		return cli.UsageErrorf("-max-outage, -max-overlap and -logout-grace must be positive")
	case f.handover != lab.HandoverNIC && f.handover != lab.HandoverAddress:
		return cli.UsageErrorf("-handover %q: want %s or %s", f.handover, lab.HandoverNIC, lab.HandoverAddress)
	}
	if f.replicas == "" {
		f.replicas = chaosReplicas
		if f.handover == lab.HandoverAddress {
			f.replicas = chaosAddressReplicas
		}
	}
	if _, ok := vcsim.Profiles[f.profile]; !ok {
		return cli.UsageErrorf("-profile %q: want one of %s", f.profile, strings.Join(vcsim.ProfileNames(), ", "))
	}
	// A killed leader's session ends 1-2 timeouts after its last call.
	f.bounds.SessionExpiry = 2*f.sessionTTL + 5*time.Second
	return nil
}

func runChaos(ctx context.Context, e *cli.Env, f *chaosFlags) error {
	if err := f.check(); err != nil {
		return err
	}
	if f.recheck {
		return recheckChaos(e, f)
	}
	if err := needRoot(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	uf := labUpFlags{labFlags: f.labFlags, profile: f.profile, replicas: f.replicas, nodes: 3,
		service: "dns", probe: "ars", confirm: "quorum", rotation: "diverse", handover: f.handover, ars: f.ars}
	cfg, err := uf.config(e.Getenv)
	if err != nil {
		return err
	}
	// Two or three attacks in 20 s must not meet the default damping (5
	// switches a minute); min_dwell stays as it is.
	cfg.Policy.MaxSwitches = 1000
	cfg.VCenterSessionTimeout, cfg.VCenterKeepAlive = f.sessionTTL, f.keepAlive
	cfg.NodeDisks = f.disks
	cfg.Logger = slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	hdir := f.histories
	if hdir == "" {
		hdir = filepath.Join(f.dir(), "histories")
	}
	// The state directory holds the simulator's log before the lab is up,
	// also when the histories go elsewhere.
	for _, d := range []string{f.dir(), hdir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}

	// The simulator and its HTTP server log through the standard logger:
	// every call on a terminated session's property collector, every
	// connection a fault cut. That goes to a file, not between the
	// results.
	simLog, err := os.OpenFile(filepath.Join(f.dir(), "simulator.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer simLog.Close()
	log.SetOutput(simLog)
	defer log.SetOutput(os.Stderr)

	fmt.Fprintf(e.Stdout, "chaos: lab %s up (state %s, histories %s)\n", f.prefix, f.dir(), hdir)
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		return fmt.Errorf("chaos: lab up: %w", err)
	}
	defer func() {
		if err := l.Down(context.Background()); err != nil {
			fmt.Fprintf(e.Stderr, "chaos: lab down: %v\n", err)
		}
	}()

	sum := chaos.NewSummary(time.Now().UTC().Truncate(time.Second), f.seed, f.length, f.bounds)
	sum.Machine = machineInfo()
	var runErr error
	for i := range f.schedules {
		seed := f.seed + int64(i)
		s := chaos.Generate(seed, chaos.Options{Length: f.length, Containers: l.HasContainers(), Disks: f.disks,
			Agents: f.handover == lab.HandoverAddress})
		if err := readyOrHeal(ctx, l, f.ready); err != nil {
			runErr = fmt.Errorf("chaos: before seed %d: %w", seed, err)
			break
		}
		h, err := l.RunSchedule(ctx, s, f.ready)
		if werr := writeHistory(hdir, h); werr != nil {
			err = errors.Join(err, werr)
		}
		if ctx.Err() != nil {
			runErr = ctx.Err()
			break
		}
		r := chaos.Check(h, f.bounds)
		sum.Add(r)
		printChaosRun(e, i+1, f.schedules, s, r, hdir, err)
	}
	fmt.Fprintln(e.Stdout)
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	sum.WriteTable(tw)
	tw.Flush()
	if f.out != "" && sum.Schedules > 0 {
		if err := writeJSONFile(f.out, sum); err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "\nwrote %s\n", f.out)
	}
	if runErr != nil {
		return runErr
	}
	if n := sum.ViolationCount(); n > 0 {
		return fmt.Errorf("chaos: %d invariant violation(s) in seeds %v", n, sum.FailingSeeds)
	}
	return nil
}

// recheckChaos runs the checker again over the histories a run wrote.
func recheckChaos(e *cli.Env, f *chaosFlags) error {
	hdir := f.histories
	if hdir == "" {
		hdir = filepath.Join(f.dir(), "histories")
	}
	var sum *chaos.Summary
	for i := range f.schedules {
		seed := f.seed + int64(i)
		b, err := os.ReadFile(filepath.Join(hdir, fmt.Sprintf("seed-%d.json", seed)))
		if err != nil {
			return fmt.Errorf("chaos -recheck: %w", err)
		}
		var h chaos.History
		if err := json.Unmarshal(b, &h); err != nil {
			return fmt.Errorf("chaos -recheck: seed %d: %w", seed, err)
		}
		if sum == nil {
			sum = chaos.NewSummary(h.Start.UTC().Truncate(time.Second), f.seed, h.Schedule.Length, f.bounds)
			sum.Machine = machineInfo() + " (rechecked from " + hdir + ")"
		}
		r := chaos.Check(h, f.bounds)
		sum.Add(r)
		printChaosRun(e, i+1, f.schedules, h.Schedule, r, hdir, nil)
	}
	fmt.Fprintln(e.Stdout)
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	sum.WriteTable(tw)
	tw.Flush()
	if f.out != "" {
		if err := writeJSONFile(f.out, sum); err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "\nwrote %s\n", f.out)
	}
	if n := sum.ViolationCount(); n > 0 {
		return fmt.Errorf("chaos: %d invariant violation(s) in seeds %v", n, sum.FailingSeeds)
	}
	return nil
}

// readyOrHeal waits for a healthy lab; if it is not, it heals every fault
// and waits once more.
func readyOrHeal(ctx context.Context, l *lab.Lab, limit time.Duration) error {
	rctx, cancel := context.WithTimeout(ctx, limit)
	err := l.ChaosReady(rctx)
	cancel()
	if err == nil {
		return nil
	}
	if herr := l.Heal(); herr != nil {
		return errors.Join(err, herr)
	}
	rctx, cancel = context.WithTimeout(ctx, limit)
	defer cancel()
	return l.ChaosReady(rctx)
}

func printChaosRun(e *cli.Env, i, n int, s chaos.Schedule, r chaos.Report, hdir string, err error) {
	verdict := "ok"
	if !r.OK() {
		verdict = fmt.Sprintf("FAIL (%d violation(s)); again: ars-lab chaos -seed %d -schedules 1", len(r.Violations), s.Seed)
	}
	var faults []string
	for _, st := range s.Steps {
		faults = append(faults, string(st.Kind))
	}
	fmt.Fprintf(e.Stdout, "[%d/%d] seed %d: %s | %d attacks, %d switches, %d elections (%d explained), longest outage %.0f ms, %.1f s: %s\n",
		i, n, s.Seed, strings.Join(faults, " "), r.Attacks, r.Switches, r.Elections, r.ElectionsExplained,
		float64(r.LongestOutage.Microseconds())/1000, r.Duration.Seconds(), verdict)
	for _, v := range r.Violations {
		fmt.Fprintf(e.Stdout, "    %s\n", v)
	}
	if !r.OK() {
		fmt.Fprintf(e.Stdout, "    schedule:\n")
		for _, st := range s.Steps {
			fmt.Fprintf(e.Stdout, "      %s\n", st)
		}
		fmt.Fprintf(e.Stdout, "    history: %s\n", filepath.Join(hdir, fmt.Sprintf("seed-%d.json", s.Seed)))
	}
	if err != nil {
		fmt.Fprintf(e.Stdout, "    run: %v\n", err)
	}
}

func writeHistory(dir string, h chaos.History) error {
	return writeJSONFile(filepath.Join(dir, fmt.Sprintf("seed-%d.json", h.Seed)), h)
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
