package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/internal/cli"
)

func init() {
	app.Register(cli.Command{
		Name:    "history",
		Group:   groupServices,
		Args:    "[SERVICE]",
		MinArgs: 0, MaxArgs: 1,
		Summary: "Show switch times per reason and platform pair, and the last switches",
		Help: `Prints, over the completed switches of SERVICE (default: every service),
per reason and platform pair (from-to, e.g. vm-container) the count and the
mean and max of: the switch time (decision to verified), the total (trigger
to verified: not downtime), the outage (the time the leader's probes of the
service address got no answer) and the exposure (how long the old replica
stayed on the service network after the trigger), the last two over the
switches that measured them; then the last -n switches. Needs a reader
token.`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			n := fs.Int("n", 10, "number of recent switches to list (`N`; 0 = none)")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				if *n < 0 {
					return cli.UsageErrorf("-n %d: must be >= 0", *n)
				}
				service := ""
				if len(args) == 1 {
					service = args[0]
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				h, err := c.History(ctx, service)
				if err != nil {
					return err
				}
				if e.JSONOutput() {
					return e.JSON(h)
				}
				return printHistory(e.Stdout, h, *n)
			}
		},
	})
}

func printHistory(out io.Writer, h api.HistoryResponse, n int) error {
	if len(h.Aggregates) == 0 {
		fmt.Fprintln(out, "No completed switches yet.")
	} else {
		tw := cli.NewTabWriter(out)
		fmt.Fprintln(tw, "REASON\tPAIR\tCOUNT\tMEAN-SWITCH\tMAX-SWITCH\tMEAN-TOTAL\tMAX-TOTAL\tMEAN-OUTAGE\tMAX-OUTAGE\tMEAN-EXPOSURE\tMAX-EXPOSURE")
		for _, a := range h.Aggregates {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Reason, a.Pair, a.Count,
				ms(a.MeanSwitchMS), ms(a.MaxSwitchMS), ms(a.MeanTotalMS), ms(a.MaxTotalMS), stat(a.Outage), stat(a.Exposure))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	recs := h.Switches
	if n == 0 || len(recs) == 0 {
		return historyLegend(out, len(h.Aggregates) > 0)
	}
	if len(recs) > n {
		recs = recs[len(recs)-n:]
	}
	fmt.Fprintf(out, "\nLast switches (%d of %d, newest last):\n", len(recs), len(h.Switches))
	tw := cli.NewTabWriter(out)
	fmt.Fprintln(tw, "SERVICE\tGEN\tSTARTED (UTC)\tFROM\tTO\tREASON\tSWITCH\tTOTAL\tOUTAGE\tPROBES-LOST\tEXPOSURE\tHANDOVER\tOLD-HELD\tDONE")
	for _, r := range recs {
		sw, tot := "-", "-"
		if r.Done {
			sw, tot = ms(r.SwitchMS), ms(r.TotalMS)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Service, r.Generation, stamp(r.StartedAt),
			switchEnd(r.From, r.FromImpl, r.FromPlatform), switchEnd(r.To, r.ToImpl, r.ToPlatform),
			r.Reason, sw, tot, msOrDash(r.OutageMS), probesLost(r), msOrDash(r.ExposureMS),
			dash(r.Handover), msOrDash(r.OldHeldMS), cli.YesNo(r.Done))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return historyLegend(out, len(h.Aggregates) > 0)
}

// historyLegend prints what the columns measure.
func historyLegend(out io.Writer, aggregates bool) error {
	if !aggregates {
		return nil // no completed switch: no figure to explain
	}
	_, err := fmt.Fprint(out, switchLegend+"MEAN and MAX of OUTAGE and EXPOSURE are over the switches that measured them.\n")
	return err
}

// stat renders a measured mean and max as two columns, "-" for both when
// no switch measured it.
func stat(m *api.MeasuredStat) string {
	if m == nil {
		return "-\t-"
	}
	return ms(m.MeanMS) + "\t" + ms(m.MaxMS)
}
