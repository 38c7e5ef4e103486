package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/lab"
	"github.com/ars-project/ars/lab/netlab"
)

func registerLabAttacks() {
	waitHelp := `With -wait, returns once the cluster has switched and the service answers
again, and prints what the lab's client saw from the attack on: queries
lost, the longest gap (the downtime) and the switch with its phases.`
	app.Register(cli.Command{
		Name:    "attack dos",
		Group:   groupAttacks,
		Args:    "[REPLICA]",
		MaxArgs: 1,
		Local:   true,
		Summary: "Make a replica (-active: the serving one; -impl: every one of an implementation) stop answering",
		Help: `A replica's server is wedged (SIGSTOP: it keeps its sockets and answers
nothing, like a server with a hang bug); the simulator sees nothing, so only
the probes can tell. Restoring the replica (a revert) ends it. With -impl,
every replica of that implementation is wedged as soon as it serves, for -for.
` + waitHelp,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			var f labFlags
			f.register(fs)
			impl := fs.String("impl", "", "attack every replica of this `implementation` instead")
			active := fs.Bool("active", false, "attack the replica that is active now")
			dur := fs.Duration("for", time.Minute, "how long an -impl attack lasts (at most 10m)")
			wait := fs.Bool("wait", false, "wait for the switch and print the measured outage")
			timeout := fs.Duration("wait-timeout", 30*time.Second, "how long -wait waits")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				req := lab.AttackRequest{Kind: "dos", Impl: *impl, Active: *active, Wait: *wait, Timeout: timeout.String()}
				switch {
				case len(args) == 1 && *impl == "" && !*active:
					req.Replica = args[0]
				case len(args) == 0 && *impl != "" && !*active:
					req.Duration = dur.String()
				case len(args) == 0 && *impl == "" && *active:
				default:
					return cli.UsageErrorf("name one target: a REPLICA, -active or -impl IMPL")
				}
				return labAttack(ctx, e, &f, req)
			}
		},
	})
	app.Register(cli.Command{
		Name:    "attack exploit",
		Group:   groupAttacks,
		Args:    "[REPLICA]",
		MaxArgs: 1,
		Local:   true,
		Summary: "Write an AppArmor denial into a replica's audit log (its watcher posts the alert)",
		Help: `Appends an auditd AVC record (apparmor="DENIED", the server exec'ing a
shell) to the replica's audit log; the ars watch apparmor that the lab runs
for that replica turns it into an exploit alert.
` + waitHelp,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			var f labFlags
			f.register(fs)
			wait := fs.Bool("wait", false, "wait for the switch and print the measured outage")
			timeout := fs.Duration("wait-timeout", 30*time.Second, "how long -wait waits")
			active := fs.Bool("active", false, "attack the replica that is active now")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				req := lab.AttackRequest{Kind: "exploit", Active: *active, Wait: *wait, Timeout: timeout.String()}
				switch {
				case len(args) == 1 && !*active:
					req.Replica = args[0]
				case len(args) == 0 && *active:
				default:
					return cli.UsageErrorf("name one target: a REPLICA or -active")
				}
				return labAttack(ctx, e, &f, req)
			}
		},
	})
}

func labAttack(ctx context.Context, e *cli.Env, f *labFlags, req lab.AttackRequest) error {
	resp, err := f.control().Attack(ctx, req)
	if err != nil {
		return err
	}
	if err := e.Print(resp, func(w io.Writer) { printAttack(w, req.Kind, resp) }); err != nil {
		return err
	}
	if resp.Error != "" {
		return fmt.Errorf("%s", resp.Error)
	}
	return nil
}

func printAttack(w io.Writer, kind string, r lab.AttackResponse) {
	fmt.Fprintf(w, "%s attack on %s at %s", kind, r.Target, r.At.Format("15:04:05.000"))
	if len(r.Wedged) > 0 {
		fmt.Fprintf(w, " (wedged now: %v)", r.Wedged)
	}
	fmt.Fprintln(w)
	ev := r.Event
	if ev == nil {
		return
	}
	if s := ev.Switch; s != nil {
		fmt.Fprintf(w, "switch %s (%s) -> %s (%s), reason %s, %s: detection %.0f ms, switch %.0f ms\n",
			s.From, s.FromImpl, s.To, s.ToImpl, s.Reason, s.Mode, s.DetectionMS, s.SwitchMS)
		outage, exposure := "not measured", "not measured"
		if s.OutageMS != nil && s.ProbesLost != nil && s.ProbesSent != nil {
			outage = fmt.Sprintf("%.1f ms (%d of %d probes lost)", *s.OutageMS, *s.ProbesLost, *s.ProbesSent)
		}
		if s.ExposureMS != nil {
			exposure = fmt.Sprintf("%.1f ms", *s.ExposureMS)
		}
		fmt.Fprintf(w, "leader: outage %s; old replica exposed %s after the trigger\n", outage, exposure)
	} else {
		fmt.Fprintln(w, "no switch")
	}
	fmt.Fprintf(w, "client: %d queries sent, %d lost in %d gap(s); downtime %.1f ms\n", ev.Sent, ev.Lost, ev.Gaps, ev.Longest)
}

func registerLabNodes() {
	summaries := map[string]string{
		"kill":      "Kill a node's agent with SIGKILL (-leader: whichever leads)",
		"start":     "Start a killed node's agent again from its data dir",
		"stop":      "Suspend a node's agent with SIGSTOP (-leader: whichever leads); node cont resumes it",
		"cont":      "Resume a node's agent stopped with node stop (SIGCONT)",
		"partition": "Cut a node off the lab network (its link to the bridge goes down; -leader: whichever leads)",
		"heal":      "Connect a partitioned node to the lab network again",
	}
	for _, action := range []string{"kill", "start", "stop", "cont", "partition", "heal"} {
		summary := summaries[action]
		app.Register(cli.Command{
			Name:    "node " + action,
			Group:   groupNodes,
			Args:    "[NODE]",
			MaxArgs: 1,
			Local:   true,
			Summary: summary,
			Setup: func(fs *flag.FlagSet) cli.RunFunc {
				var f labFlags
				f.register(fs)
				leader := fs.Bool("leader", false, "the node that leads now")
				wait := fs.Bool("wait", false, "kill, stop, partition: wait until another node leads and print how long it took")
				return func(ctx context.Context, e *cli.Env, args []string) error {
					c := f.control()
					node, err := nodeTarget(ctx, c, args, *leader)
					if err != nil {
						return err
					}
					at := time.Now()
					if err := c.Node(ctx, node, action); err != nil {
						return err
					}
					out := map[string]any{"node": node, "action": action, "at": at.Format(time.RFC3339Nano)}
					newLeader := ""
					if *wait && (action == "kill" || action == "stop" || action == "partition") {
						var err error
						if newLeader, err = waitNewLeader(ctx, c, node, 20*time.Second); err != nil {
							return err
						}
						out["new_leader"], out["new_leader_ms"] = newLeader, time.Since(at).Milliseconds()
					}
					return e.Print(out, func(w io.Writer) {
						fmt.Fprintf(w, "node %s: %s done at %s\n", node, action, at.Format("15:04:05.000"))
						if newLeader != "" {
							fmt.Fprintf(w, "new leader %s, %d ms after the %s\n", newLeader, out["new_leader_ms"], action)
						}
					})
				}
			},
		})
	}
}

// registerLabLinks registers node degrade and node clear: link faults by
// hand, the ones the chaos suite injects.
func registerLabLinks() {
	app.Register(cli.Command{
		Name:    "node degrade",
		Group:   groupNodes,
		Args:    "[NODE]",
		MaxArgs: 1,
		Local:   true,
		Summary: "Degrade a node's link: lose a share of its frames, delay them, or both (replaces its link fault; the link stays up)",
		Help: `Loss drops each frame with -loss percent chance (nftables on the lab
bridge); -delay holds each frame for the delay, give or take a uniform
-jitter (iptables NFQUEUE in the node's namespace and a delayer in the lab
daemon). -direction picks the frames: both (default), to (those the node
receives) or from (those it sends). node clear ends it.`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			var f labFlags
			f.register(fs)
			leader := fs.Bool("leader", false, "the node that leads now")
			loss := fs.Int("loss", 0, "`percent` of the frames dropped (0-100)")
			delay := fs.Duration("delay", 0, "how `long` each frame is held (0-1s, whole milliseconds)")
			jitter := fs.Duration("jitter", 0, "uniform `spread` of the delay, up to the delay")
			dir := fs.String("direction", "both", "`frames`: both, to (the node) or from (the node)")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				lf := netlab.LinkFault{Loss: *loss, DelayMS: int(delay.Milliseconds()), JitterMS: int(jitter.Milliseconds())}
				if *delay%time.Millisecond != 0 || *jitter%time.Millisecond != 0 {
					return cli.UsageErrorf("-delay %s, -jitter %s: want whole milliseconds", *delay, *jitter)
				}
				switch *dir {
				case "both":
					lf.ToNode, lf.FromNode = true, true
				case "to":
					lf.ToNode = true
				case "from":
					lf.FromNode = true
				default:
					return cli.UsageErrorf("-direction %q: want both, to or from", *dir)
				}
				if err := lf.Validate(); err != nil {
					return cli.UsageErrorf("%v", err)
				}
				c := f.control()
				node, err := nodeTarget(ctx, c, args, *leader)
				if err != nil {
					return err
				}
				if err := c.DegradeLink(ctx, node, lf); err != nil {
					return err
				}
				return e.Print(map[string]any{"node": node, "link": lf}, func(w io.Writer) {
					fmt.Fprintf(w, "node %s: link %s\n", node, lf)
				})
			}
		},
	})
	app.Register(cli.Command{
		Name:    "node clear",
		Group:   groupNodes,
		Args:    "[NODE]",
		MaxArgs: 1,
		Local:   true,
		Summary: "End a node's link fault (node degrade); a link without one is left as it is",
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			var f labFlags
			f.register(fs)
			leader := fs.Bool("leader", false, "the node that leads now")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				c := f.control()
				node, err := nodeTarget(ctx, c, args, *leader)
				if err != nil {
					return err
				}
				if err := c.ClearLink(ctx, node); err != nil {
					return err
				}
				return e.Print(map[string]any{"node": node, "link": "clear"}, func(w io.Writer) {
					fmt.Fprintf(w, "node %s: link clear\n", node)
				})
			}
		},
	})
}

// nodeTarget is the node a node command names: its NODE argument, or with
// -leader the node that leads now.
func nodeTarget(ctx context.Context, c *lab.Control, args []string, leader bool) (string, error) {
	switch {
	case len(args) == 1 && !leader:
		return args[0], nil
	case len(args) == 0 && leader:
		st, err := c.Status(ctx)
		if err != nil {
			return "", err
		}
		if st.Leader == "" {
			return "", fmt.Errorf("no node leads now")
		}
		return st.Leader, nil
	}
	return "", cli.UsageErrorf("name a NODE or give -leader")
}

// waitNewLeader polls the lab until a node other than old leads.
func waitNewLeader(ctx context.Context, c *lab.Control, old string, limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if st, err := c.Status(ctx); err == nil && st.Leader != "" && st.Leader != old {
			return st.Leader, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", fmt.Errorf("no new leader within %s", limit)
}
