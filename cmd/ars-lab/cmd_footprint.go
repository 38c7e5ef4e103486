package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/lab"
)

// footprintReport is what footprint prints: each running node's use of
// CPU and memory over the window, with what the lab was doing.
type footprintReport struct {
	Started   time.Time       `json:"started"`
	Seconds   float64         `json:"seconds"`
	LoadStart string          `json:"load_start,omitempty"`
	LoadEnd   string          `json:"load_end,omitempty"`
	Replicas  int             `json:"replicas"`
	Nodes     []nodeFootprint `json:"nodes"`
}

type nodeFootprint struct {
	Name   string `json:"name"`
	Pid    int    `json:"pid"`
	Leader bool   `json:"leader"`
	lab.Footprint
}

func init() {
	app.Register(cli.Command{
		Name:    "footprint",
		Group:   groupBench,
		Local:   true,
		Summary: "Measure each running node's CPU and memory on the lab, for -for",
		Help: `Reads every running node's agent process from /proc each -every for -for:
the CPU time it used (user and system, all threads) as a share of one
core over the window and its highest share over one interval, and its
resident set (mean, highest). The lab runs as it is: idle unless you
attack it meanwhile. The machine's load average is printed with the
figures; measure with nothing else running.`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			var f labFlags
			f.register(fs)
			var every, d time.Duration
			fs.DurationVar(&d, "for", time.Minute, "how `long` to measure (1s-1h)")
			fs.DurationVar(&every, "every", time.Second, "sample `interval` (100ms-1m, at most -for)")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				if d < time.Second || d > time.Hour {
					return cli.UsageErrorf("-for %s: want 1s to 1h", d)
				}
				if every < 100*time.Millisecond || every > time.Minute || every > d {
					return cli.UsageErrorf("-every %s: want 100ms to 1m, and at most -for", every)
				}
				st, err := f.control().Status(ctx)
				if err != nil {
					return err
				}
				pids := map[string]int{}
				for _, n := range st.Nodes {
					if n.Pid > 0 {
						pids[n.Name] = n.Pid
					}
				}
				if len(pids) == 0 {
					return fmt.Errorf("the lab has no running node")
				}
				rep := footprintReport{Started: time.Now().UTC().Truncate(time.Second), LoadStart: loadAverage(), Replicas: len(st.Replicas)}
				fps, err := lab.MeasureFootprints(ctx, pids, every, d)
				if err != nil {
					return fmt.Errorf("footprint: %w", err)
				}
				rep.Seconds, rep.LoadEnd = d.Seconds(), loadAverage()
				for _, n := range st.Nodes {
					if fp, ok := fps[n.Name]; ok {
						rep.Nodes = append(rep.Nodes, nodeFootprint{Name: n.Name, Pid: n.Pid, Leader: n.Leader, Footprint: fp})
					}
				}
				return e.Print(rep, func(w io.Writer) {
					fmt.Fprintf(w, "%d node(s), %d replicas, %s from %s; load average %s -> %s\n\n",
						len(rep.Nodes), rep.Replicas, d, rep.Started.Format(time.RFC3339), rep.LoadStart, rep.LoadEnd)
					fmt.Fprintln(w, "NODE\tROLE\tPID\tCPU %\tCPU MAX %\tRSS MB\tRSS MAX MB")
					for _, n := range rep.Nodes {
						role := "follower"
						if n.Leader {
							role = "leader"
						}
						fmt.Fprintf(w, "%s\t%s\t%d\t%.2f\t%.1f\t%.1f\t%.1f\n", n.Name, role, n.Pid, n.CPUPercent, n.CPUMaxPercent, n.RSSMeanMB, n.RSSMaxMB)
					}
				})
			}
		},
	})
}
