package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/fsm"
)

func init() {
	app.Register(cli.Command{
		Name:    "service show",
		Group:   groupServices,
		Args:    "NAME",
		MinArgs: 1, MaxArgs: 1,
		Summary: "Show a service: spec summary, replica roles and recent switches",
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			n := fs.Int("history", 10, "number of recent switches to show in the table (`N`; 0 = none)")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				if *n < 0 {
					return cli.UsageErrorf("-history %d: must be >= 0", *n)
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				s, err := c.Service(ctx, args[0])
				if err != nil {
					return err
				}
				if e.JSONOutput() {
					return e.JSON(s)
				}
				return printService(e.Stdout, s, *n)
			}
		},
	})
}

func printService(out io.Writer, s fsm.Service, nHistory int) error {
	tw := cli.NewTabWriter(out)
	p, q := s.Spec.Probe, s.Spec.Policy
	probe := fmt.Sprintf("%s %s", dash(p.Type), dash(p.Query))
	if p.Expect != "" {
		probe += " expect " + p.Expect
	}
	probe += fmt.Sprintf(", profile %s (timeout %s, interval %s, window %s, failures %d, confirm %s)",
		dash(p.Profile), p.Timeout, p.Interval, p.Window, p.Failures, dash(p.Confirm))
	policy := fmt.Sprintf("rotation %s, min dwell %s, max %d switches per %s, exploit %s, dos %s",
		dash(q.Rotation), q.MinDwell, q.MaxSwitches, q.Window, dash(q.ExploitMode), dash(q.DoSMode))
	fmt.Fprintf(tw, "Service:\t%s\n", s.Spec.Name)
	fmt.Fprintf(tw, "Address:\t%s\n", s.Spec.Address)
	fmt.Fprintf(tw, "Generation:\t%d\n", s.Generation)
	fmt.Fprintf(tw, "Probe:\t%s\n", probe)
	fmt.Fprintf(tw, "Policy:\t%s\n", policy)
	if in := s.Intent; in != nil {
		fmt.Fprintf(tw, "Switching:\t%s -> %s (%s, %s, generation %d, since %s)\n",
			dash(in.From), in.To, in.Reason, in.Mode, in.Generation, stamp(in.OpenedAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out)
	tw = cli.NewTabWriter(out)
	fmt.Fprintln(tw, "REPLICA\tIMPL\tOS\tPLATFORM\tHANDOVER\tROLE\tCLEAN\tSINCE\tREASON")
	for _, r := range s.Replicas {
		spec, _ := s.Spec.Replica(r.Name)
		handover := "nic"
		if spec.AddressHandover() {
			handover = "address (agent " + spec.Agent + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.Name, dash(spec.Impl), dash(spec.OS), dash(spec.Platform),
			handover, r.Role, cli.YesNo(r.Clean), r.Since, dash(r.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if nHistory == 0 {
		return nil
	}
	fmt.Fprintln(out)
	h := s.History
	if len(h) == 0 {
		_, err := fmt.Fprintln(out, "No switches yet.")
		return err
	}
	if len(h) > nHistory {
		h = h[len(h)-nHistory:]
	}
	fmt.Fprintf(out, "Recent switches (%d of %d, newest last):\n", len(h), len(s.History))
	tw = cli.NewTabWriter(out)
	fmt.Fprintln(tw, "GEN\tSTARTED (UTC)\tFROM\tTO\tREASON\tMODE\tDETECTION\tSWITCH\tTOTAL\tOUTAGE\tPROBES-LOST\tEXPOSURE\tHANDOVER\tOLD-HELD\tDONE")
	for _, r := range h {
		det, sw, tot := "-", "-", "-"
		if r.Done {
			det, sw, tot = ms(r.DetectionMS), ms(r.SwitchMS), ms(r.TotalMS)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Generation, stamp(r.StartedAt),
			switchEnd(r.From, r.FromImpl, r.FromPlatform), switchEnd(r.To, r.ToImpl, r.ToPlatform),
			r.Reason, dash(r.Mode), det, sw, tot, msOrDash(r.OutageMS), probesLost(r), msOrDash(r.ExposureMS),
			dash(r.Handover), msOrDash(r.OldHeldMS), cli.YesNo(r.Done))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprint(out, switchLegend)
	return err
}

// switchLegend says what the switch columns measure.
const switchLegend = `TOTAL: trigger to verified (not downtime). OUTAGE: time the leader's probes of the
service address got no answer, from the last answer before the trigger to the first
after the switch; PROBES-LOST: those probes lost of sent. EXPOSURE: how long the old
replica stayed on the service network after the trigger. HANDOVER: how the address
moved (nic: the new replica's NIC; address: its replica agent); OLD-HELD: how long the
old replica kept the address after the new one had it. "-": not measured.
`

// msOrDash formats a measured figure, "-" when it was not measured.
func msOrDash(v *float64) string {
	if v == nil {
		return "-"
	}
	return ms(*v)
}

// probesLost renders "lost/sent", "-" when not measured.
func probesLost(r fsm.SwitchRecord) string {
	if r.ProbesLost == nil || r.ProbesSent == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%d", *r.ProbesLost, *r.ProbesSent)
}

// stamp formats unix nanoseconds as UTC with milliseconds ("-" for zero).
func stamp(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Unix(0, ns).UTC().Format("2006-01-02 15:04:05.000")
}

func ms(v float64) string { return fmt.Sprintf("%.1fms", v) }

// switchEnd renders "name (impl/platform)".
func switchEnd(name, impl, platform string) string {
	if name == "" {
		return "-"
	}
	var labels []string
	for _, l := range []string{impl, platform} {
		if l != "" {
			labels = append(labels, l)
		}
	}
	if len(labels) == 0 {
		return name
	}
	return name + " (" + strings.Join(labels, "/") + ")"
}
