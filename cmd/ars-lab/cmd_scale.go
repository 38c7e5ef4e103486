package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
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

// The scale benchmark (issue 19): for each N, a lab of N services x 4
// diverse replicas, three nodes, quorum-confirmed probes at the default
// profile; what the cluster costs and how fast it answers there.

// scaleResponderReal runs every replica's own implementation.
const scaleResponderReal = "real"

type scaleFlags struct {
	labFlags
	ns, responder, profile, out string
	idle, every, during         time.Duration
	switchLimit, settleLimit    time.Duration
	takeoverLimit               time.Duration
	sample                      int
	concurrent                  float64
	ars                         arsBinary
}

// scaleTakeoverPoll is how often the takeover is polled.
const scaleTakeoverPoll = 50 * time.Millisecond

func init() {
	app.Register(cli.Command{
		Name:    "scale",
		Group:   groupBench,
		Local:   true,
		Summary: "Measure how the cluster's cost grows with services: N services x 4 replicas on the lab; writes bench/results/scale.{json,png}",
		Help: `For each N of -n, brings up a lab (root, Linux) with N services of four
diverse replicas each (BIND 9, Unbound, Knot Resolver, PowerDNS Recursor:
one simulator VM, namespace and link per replica), three ars agents and
quorum-confirmed probes at the default profile, waits until every service
is settled, then measures in turn:

  idle       the leader's and a follower's CPU and RSS for -idle, and the
             Raft entries the leader appended meanwhile; a snapshot's size
  detection  a DoS on the active replica of -sample services, one at a
             time: the switch records' detection time (p50, p99)
  concurrent a DoS on -concurrent % of the services at once: how many
             switched, the outage the leader's probes saw, and the
             leader's and a follower's CPU and RSS for -during from the
             attack
  takeover   kill -9 of the leader: the time until a survivor leads, and
             until it has judged every service (its probers' first verdict
             for each, ars_controller_verdicts_total) and reconciled every
             service (a full reconcile pass, ars_controller_reconcile_passes_total)

and takes the lab down (also on an error or Ctrl-C). With -responder dnsd
(the default) every replica runs the project's test responder (test/dnsd,
one small process per replica, found on PATH or next to ars) under its
implementation's name; -responder real runs the real servers. A phase that
fails is reported in the run's errors and its figures left out; a lab that
does not come up ends the run (larger N would not either).`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			var f scaleFlags
			f.registerPrefix(fs, "arsscale") // never the lab an operator may have up
			fs.StringVar(&f.ns, "n", "1,10,50,200", fmt.Sprintf("service `counts`, comma-separated (1-%d each)", bench.MaxScaleServices))
			fs.StringVar(&f.responder, "responder", "dnsd", "what each replica runs: `dnsd` (the test responder) or real (its implementation's server)")
			fs.StringVar(&f.profile, "profile", "none", "vCenter latency `profile` of the simulator ("+strings.Join(vcsim.ProfileNames(), ", ")+")")
			fs.StringVar(&f.out, "out", filepath.Join("bench", "results"), "output `directory` for scale.json and scale.png ('' writes none)")
			fs.DurationVar(&f.idle, "idle", 30*time.Second, "how `long` the idle footprint and Raft log are measured (5s-30m)")
			fs.DurationVar(&f.every, "every", time.Second, "footprint sample `interval` (100ms-1m, at most -idle and -during)")
			fs.DurationVar(&f.during, "during", 10*time.Second, "how `long` the footprint is measured from the concurrent attack on (1s-10m)")
			fs.IntVar(&f.sample, "sample", 10, "how many `services` are attacked one at a time for the detection time (0-100; 0: none)")
			fs.Float64Var(&f.concurrent, "concurrent", 10, "`percent` of the services attacked at once (0-100; 0: none; at least one service otherwise)")
			fs.DurationVar(&f.switchLimit, "switch-timeout", 30*time.Second, "how `long` an attack waits for its switches (1s-5m)")
			fs.DurationVar(&f.settleLimit, "settle-timeout", 5*time.Minute, "how `long` the services may take to settle after up and between phases (10s-30m)")
			fs.DurationVar(&f.takeoverLimit, "takeover-timeout", time.Minute, "how `long` the takeover after kill -9 may take (1s-10m; 0: no takeover)")
			f.ars.register(fs)
			return func(ctx context.Context, e *cli.Env, args []string) error {
				ns, err := f.check()
				if err != nil {
					return err
				}
				return runScale(ctx, e, &f, ns)
			}
		},
	})
}

// check validates the flags (before root is needed) and returns the Ns.
func (f *scaleFlags) check() ([]int, error) {
	ns, err := bench.ParseScaleNs(f.ns)
	if err != nil {
		return nil, cli.UsageErrorf("-n: %v", err)
	}
	if f.responder != "dnsd" && f.responder != scaleResponderReal {
		return nil, cli.UsageErrorf("-responder %q: want dnsd or %s", f.responder, scaleResponderReal)
	}
	if _, ok := vcsim.Profiles[f.profile]; !ok {
		return nil, cli.UsageErrorf("-profile %q: want one of %s", f.profile, strings.Join(vcsim.ProfileNames(), ", "))
	}
	for _, d := range []struct {
		name   string
		v      time.Duration
		lo, hi time.Duration
		zero   bool
	}{
		{"-idle", f.idle, 5 * time.Second, 30 * time.Minute, false},
		{"-during", f.during, time.Second, 10 * time.Minute, false},
		{"-switch-timeout", f.switchLimit, time.Second, 5 * time.Minute, false},
		{"-settle-timeout", f.settleLimit, 10 * time.Second, 30 * time.Minute, false},
		{"-takeover-timeout", f.takeoverLimit, time.Second, 10 * time.Minute, true},
	} {
		if (d.v < d.lo || d.v > d.hi) && !(d.zero && d.v == 0) {
			zero := ""
			if d.zero {
				zero = "0, or "
			}
			return nil, cli.UsageErrorf("%s %s: want %s%s to %s", d.name, d.v, zero, d.lo, d.hi)
		}
	}
	if f.every < 100*time.Millisecond || f.every > time.Minute || f.every > f.idle || f.every > f.during {
		return nil, cli.UsageErrorf("-every %s: want 100ms to 1m, and at most -idle and -during", f.every)
	}
	if f.sample < 0 || f.sample > 100 {
		return nil, cli.UsageErrorf("-sample %d: want 0-100", f.sample)
	}
	if f.concurrent < 0 || f.concurrent > 100 {
		return nil, cli.UsageErrorf("-concurrent %g: want 0-100", f.concurrent)
	}
	return ns, nil
}

// scaleConfig is the lab of n services.
func (f *scaleFlags) config(n int, ars, dnsd string, log *slog.Logger) (lab.Config, error) {
	plan, err := bench.ScaleServices(n)
	if err != nil {
		return lab.Config{}, err
	}
	cfg := lab.Config{Prefix: f.prefix, StateDir: f.dir(), Profile: f.profile, Agent: ars, DNSD: dnsd, Logger: log,
		Service: plan[0].Name, Subnet: bench.ScaleSubnet, NoWatchers: true,
		Nodes: []string{"n1", "n2", "n3"},
		Probe: fsm.ProbeSpec{Profile: "ars", Confirm: "quorum"}, Policy: fsm.PolicySpec{Rotation: fsm.RotationDiverse}}
	if f.responder != scaleResponderReal {
		cfg.Responder = f.responder
	}
	for i, s := range plan {
		if i > 0 {
			if cfg.ServiceAddrs == nil {
				cfg.ServiceAddrs = map[string]netip.Addr{}
			}
			cfg.ServiceAddrs[s.Name] = s.Addr
		}
		for _, r := range s.Replicas {
			cfg.Replicas = append(cfg.Replicas, lab.Replica{Name: r.Name, Impl: r.Impl, OS: r.OS, Platform: fsm.PlatformVM, Service: s.Name})
		}
	}
	return cfg, nil
}

func runScale(ctx context.Context, e *cli.Env, f *scaleFlags, ns []int) error {
	ars, err := f.ars.resolve(e.Getenv)
	if err != nil {
		return err
	}
	dnsd := ""
	if f.responder == "dnsd" {
		if dnsd = findDNSD(ars); dnsd == "" {
			return cli.UsageErrorf("-responder dnsd needs the test responder: build it next to ars (go build -o %s ./test/dnsd) or put dnsd on PATH",
				filepath.Join(filepath.Dir(ars), "dnsd"))
		}
	}
	if err := needRoot(); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	file := bench.ScaleFile{Machine: machineInfo(), Started: time.Now().UTC().Truncate(time.Second), Go: runtime.Version(),
		Command: "ars-lab " + strings.Join(os.Args[1:], " "), LoadStart: loadAverage(),
		Responder: f.responder, Probe: "ars", Confirm: "quorum"}
	var runErr error
	for _, n := range ns {
		cfg, err := f.config(n, ars, dnsd, log)
		if err != nil {
			return err
		}
		run, err := scaleRun(ctx, e.Stdout, f, cfg, n)
		if err != nil {
			// The lab did not come up, or the run was interrupted: a
			// larger lab would not do better.
			runErr = fmt.Errorf("scale: %d services: %w", n, err)
			run.Errors = append(run.Errors, err.Error())
			file.Runs = append(file.Runs, run)
			break
		}
		file.Runs = append(file.Runs, run)
	}
	file.LoadEnd = loadAverage()
	if f.out != "" {
		if err := bench.WriteScale(f.out, file); err != nil {
			return errors.Join(runErr, err)
		}
		fmt.Fprintf(e.Stdout, "\nwrote %s and %s\n", filepath.Join(f.out, bench.ScaleJSONFile), filepath.Join(f.out, bench.ScaleChartFile))
	}
	fmt.Fprintln(e.Stdout)
	if err := e.Print(file, func(w io.Writer) { bench.ScaleTable(w, file) }); err != nil {
		return errors.Join(runErr, err)
	}
	for _, r := range file.Runs {
		for _, msg := range r.Errors {
			fmt.Fprintf(e.Stdout, "N=%d: %s\n", r.Services, msg)
		}
	}
	return runErr
}

// scaleRun brings up the lab of cfg, measures it and takes it down. An
// error means the lab did not come up (or ctx ended); a phase that fails
// is recorded in the run's Errors and the next one runs.
func scaleRun(ctx context.Context, w io.Writer, f *scaleFlags, cfg lab.Config, n int) (run bench.ScaleRun, err error) {
	run = bench.ScaleRun{Services: n, Replicas: len(cfg.Replicas)}
	say := func(format string, a ...any) {
		fmt.Fprintf(w, "%s N=%d: %s\n", time.Now().UTC().Format("15:04:05"), n, fmt.Sprintf(format, a...))
	}
	say("lab up: %d replicas (%s), 3 nodes", run.Replicas, f.responder)
	start := time.Now()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		return run, fmt.Errorf("up: %w", err)
	}
	defer func() {
		say("lab down")
		if derr := l.Down(context.Background()); derr != nil {
			run.Errors = append(run.Errors, "down: "+derr.Error())
		}
	}()
	names := l.ServiceNames()
	settle := func(targets []string, dwell time.Duration) (map[string]fsm.Service, error) {
		sctx, cancel := context.WithTimeout(ctx, f.settleLimit)
		defer cancel()
		return l.SettleAll(sctx, targets, dwell)
	}
	if _, err := settle(names, 0); err != nil {
		return run, fmt.Errorf("settle after up: %w", err)
	}
	up := round1(time.Since(start).Seconds())
	run.UpSeconds = &up
	if left, err := l.Net.Leftovers(); err == nil {
		run.Namespaces, run.Processes = len(left.Namespaces), len(left.Pids)
	}
	say("settled after %.1f s: %d namespaces, %d processes", up, run.Namespaces, run.Processes)
	fail := func(phase string, err error) {
		run.Errors = append(run.Errors, phase+": "+err.Error())
		say("%s failed: %v", phase, err)
	}
	stop := func() error { return ctx.Err() } // an interrupt ends the run

	idleFrom := time.Now()
	if run.Idle, run.Raft, run.Gossip, err = scaleIdle(ctx, l, f); err != nil {
		fail("idle", err)
	} else {
		say("idle: leader %s CPU %.1f %%, RSS %.1f MB; Raft %d entries in %.0f s; snapshot %s",
			run.Idle.Leader.Node, run.Idle.Leader.CPUPercent, run.Idle.Leader.RSSMeanMB, run.Raft.Entries, run.Raft.Seconds, kb(run.Raft.SnapshotKB))
	}
	if g := run.Gossip; g != nil {
		line := fmt.Sprintf("idle gossip: leader %s sent %.0f B/s, received %.0f B/s", g.Leader.Node, g.Leader.SentPerSec, g.Leader.ReceivedPerSec)
		if fo := g.Follower; fo != nil {
			line += fmt.Sprintf("; follower %s sent %.0f B/s, received %.0f B/s", fo.Node, fo.SentPerSec, fo.ReceivedPerSec)
		}
		say("%s", line)
	}
	if k, err := l.SwitchesBetween(ctx, idleFrom, time.Now()); err != nil {
		fail("idle switches", err)
	} else {
		run.IdleSwitches = &k
		say("idle: %d switches nobody asked for", k)
	}
	if err := stop(); err != nil {
		return run, err
	}

	dwell := time.Duration(fsm.DefaultMinDwell) + 500*time.Millisecond
	if f.sample > 0 {
		var det, done []float64
		for _, i := range bench.ScaleSample(n, f.sample) {
			rec, at, err := scaleAttack(ctx, l, f, settle, []string{names[i]}, dwell)
			if err != nil {
				fail("detection "+names[i], err)
				if ctx.Err() != nil {
					return run, ctx.Err()
				}
				continue
			}
			r := rec[names[i]]
			det = append(det, r.DetectionMS)
			done = append(done, doneMS(r, at[names[i]]))
			say("DoS on %s: switched %s -> %s, detection %.0f ms", names[i], r.From, r.To, r.DetectionMS)
		}
		run.Detection, run.DoneMS = bench.QuantilesOf(det), bench.QuantilesOf(done)
	}
	if err := stop(); err != nil {
		return run, err
	}

	if f.concurrent > 0 {
		var targets []string
		for _, i := range bench.ScaleSample(n, bench.ScaleConcurrent(n, f.concurrent)) {
			targets = append(targets, names[i])
		}
		c, fp, err := scaleConcurrent(ctx, l, f, settle, targets, dwell)
		run.Concurrent, run.Attacks = c, fp
		if err != nil {
			fail("concurrent", err)
		}
		if c != nil {
			say("concurrent DoS on %d services: %d switched", c.Attacked, c.Switched)
		}
	}
	if err := stop(); err != nil {
		return run, err
	}

	if f.takeoverLimit > 0 {
		if _, err := settle(names, 0); err != nil {
			fail("takeover", err)
		} else {
			t, err := l.TakeoverAfterKill(ctx, scaleTakeoverPoll, f.takeoverLimit)
			if err != nil {
				fail("takeover", err)
			}
			if t.Killed != "" { // else nothing was killed, nothing measured
				run.Takeover = takeoverResult(t)
				say("takeover after kill -9 of %s: %s leads after %s, judged after %s, reconciled after %s", t.Killed, t.NewLeader,
					msOr(run.Takeover.ElectedMS), msOr(run.Takeover.JudgedMS), msOr(run.Takeover.ReconciledMS))
			}
		}
	}
	return run, ctx.Err()
}

// scaleIdle measures the idle lab: the leader's and a follower's
// footprint for -idle, the leader's Raft entries over the same window,
// and a snapshot's size.
func scaleIdle(ctx context.Context, l *lab.Lab, f *scaleFlags) (fp *bench.Footprints, raft *bench.ScaleRaft, gossipUse *bench.ScaleGossip, err error) {
	before, err := l.LeaderStatus(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	gossip := []string{before.Node}
	if pids, _, err := l.NodePids(ctx); err == nil {
		if fo := measuredFollower(pids, before.Node); fo != "" {
			gossip = append(gossip, fo) // the one scaleFootprints measures
		}
	}
	for _, n := range gossip {
		if err := l.Net.CountPort(n, lab.GossipPort); err != nil {
			return nil, nil, nil, err
		}
	}
	t0 := time.Now()
	fp, err = scaleFootprints(ctx, l, f.every, f.idle)
	if err != nil {
		return nil, nil, nil, err
	}
	gsecs := time.Since(t0).Seconds()
	for i, n := range gossip {
		sent, recv, err := l.Net.PortBytes(n)
		_ = l.Net.StopCountPort(n)
		if err != nil {
			return fp, nil, nil, fmt.Errorf("gossip bytes of %s: %w", n, err)
		}
		g := bench.GossipBytes{Node: n, SentPerSec: round1(float64(sent) / gsecs), ReceivedPerSec: round1(float64(recv) / gsecs)}
		if i == 0 {
			gossipUse = &bench.ScaleGossip{Seconds: round1(gsecs), Leader: g}
		} else {
			gossipUse.Follower = &g
		}
	}
	after, err := l.LeaderStatus(ctx)
	if err != nil {
		return fp, nil, gossipUse, err
	}
	if after.Node != before.Node {
		return fp, nil, gossipUse, fmt.Errorf("the leader changed from %s to %s while idle", before.Node, after.Node)
	}
	secs := time.Since(t0).Seconds()
	entries := after.LastLogIndex - before.LastLogIndex
	raft = &bench.ScaleRaft{Seconds: round1(secs), Entries: entries, EntriesPerMinute: round1(float64(entries) / secs * 60)}
	if b, err := l.SnapshotBytes(ctx); err == nil {
		kb := round1(float64(b) / 1024)
		raft.SnapshotBytes, raft.SnapshotKB = &b, &kb
	} else {
		return fp, raft, gossipUse, fmt.Errorf("snapshot: %w", err)
	}
	return fp, raft, gossipUse, nil
}

// measuredFollower is the follower the scale benchmark measures beside
// the leader: the first other node by name ("" with none).
func measuredFollower(pids map[string]int, leader string) string {
	for _, n := range slices.Sorted(maps.Keys(pids)) {
		if n != leader {
			return n
		}
	}
	return ""
}

// scaleFootprints measures the leader and one follower for d.
func scaleFootprints(ctx context.Context, l *lab.Lab, every, d time.Duration) (*bench.Footprints, error) {
	pids, leader, err := l.NodePids(ctx)
	if err != nil {
		return nil, err
	}
	if pids[leader] == 0 {
		return nil, fmt.Errorf("the leader %q is not a running node", leader)
	}
	follower := measuredFollower(pids, leader)
	want := map[string]int{leader: pids[leader]}
	if follower != "" {
		want[follower] = pids[follower]
	}
	fps, err := lab.MeasureFootprints(ctx, want, every, d)
	if err != nil {
		return nil, err
	}
	out := &bench.Footprints{Seconds: d.Seconds(), Leader: nodeUse(leader, fps[leader])}
	if follower != "" {
		u := nodeUse(follower, fps[follower])
		out.Follower = &u
	}
	return out, nil
}

func nodeUse(name string, fp lab.Footprint) bench.NodeUse {
	return bench.NodeUse{Node: name, CPUPercent: round1(fp.CPUPercent), CPUMaxPercent: round1(fp.CPUMaxPercent),
		RSSMeanMB: round1(fp.RSSMeanMB), RSSMaxMB: round1(fp.RSSMaxMB)}
}

// scaleAttack settles targets (dwell since their last switch), wedges
// the active replica of each at once and waits for their switches.
func scaleAttack(ctx context.Context, l *lab.Lab, f *scaleFlags, settle func([]string, time.Duration) (map[string]fsm.Service, error),
	targets []string, dwell time.Duration) (map[string]fsm.SwitchRecord, map[string]time.Time, error) {
	svcs, err := settle(targets, dwell)
	if err != nil {
		return nil, nil, err
	}
	var attacks []lab.ServiceAttack
	at := map[string]time.Time{}
	for _, name := range targets {
		a, err := l.DoSActive(svcs[name])
		if err != nil {
			return nil, at, err
		}
		attacks = append(attacks, a)
		at[name] = a.At
	}
	wctx, cancel := context.WithTimeout(ctx, f.switchLimit)
	defer cancel()
	recs, err := l.AwaitSwitches(wctx, attacks)
	return recs, at, err
}

// scaleConcurrent attacks targets at once while the footprint is
// measured for -during from the attack on.
func scaleConcurrent(ctx context.Context, l *lab.Lab, f *scaleFlags, settle func([]string, time.Duration) (map[string]fsm.Service, error),
	targets []string, dwell time.Duration) (*bench.ScaleConcurrentResult, *bench.Footprints, error) {
	if _, err := settle(targets, dwell); err != nil {
		return nil, nil, err
	}
	type fpResult struct {
		fp  *bench.Footprints
		err error
	}
	fpc := make(chan fpResult, 1)
	go func() {
		fp, err := scaleFootprints(ctx, l, f.every, f.during)
		fpc <- fpResult{fp, err}
	}()
	recs, at, err := scaleAttack(ctx, l, f, settle, targets, 0)
	fr := <-fpc
	c := &bench.ScaleConcurrentResult{Attacked: len(targets), Switched: len(recs)}
	var det, out, done []float64
	for name, r := range recs {
		det = append(det, r.DetectionMS)
		if r.OutageMS != nil {
			out = append(out, *r.OutageMS)
		}
		done = append(done, doneMS(r, at[name]))
	}
	c.Detection, c.Outage, c.Done = bench.QuantilesOf(det), bench.QuantilesOf(out), bench.QuantilesOf(done)
	if fr.err != nil {
		err = errors.Join(err, fmt.Errorf("footprint during the attacks: %w", fr.err))
	}
	return c, fr.fp, err
}

// doneMS is from the attack to the switch's completion.
func doneMS(r fsm.SwitchRecord, at time.Time) float64 {
	return round1(float64(time.Unix(0, r.DoneAt).Sub(at)) / float64(time.Millisecond))
}

func takeoverResult(t lab.Takeover) *bench.ScaleTakeover {
	out := &bench.ScaleTakeover{Killed: t.Killed, NewLeader: t.NewLeader, PollMS: float64(t.Poll.Milliseconds())}
	ms := func(ok bool, d time.Duration) *float64 {
		if !ok {
			return nil
		}
		v := round1(float64(d) / float64(time.Millisecond))
		return &v
	}
	out.ElectedMS = ms(t.ElectedOK, t.Elected)
	out.JudgedMS = ms(t.JudgedOK, t.Judged)
	out.ReconciledMS = ms(t.ReconOK, t.Reconciled)
	out.ReadyMS = ms(t.JudgedOK && t.ReconOK, max(t.Judged, t.Reconciled))
	return out
}

func round1(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }

func kb(v *float64) string {
	if v == nil {
		return "not measured"
	}
	return fmt.Sprintf("%.1f KB", *v)
}

func msOr(v *float64) string {
	if v == nil {
		return "(not reached)"
	}
	return fmt.Sprintf("%.0f ms", *v)
}
