package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/fsm"
)

func init() {
	app.Register(cli.Command{
		Name:    "service list",
		Group:   groupServices,
		Summary: "List services with their active and standby replicas",
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			return func(ctx context.Context, e *cli.Env, args []string) error {
				c, err := e.Client()
				if err != nil {
					return err
				}
				svcs, err := c.Services(ctx)
				if err != nil {
					return err
				}
				if svcs == nil {
					svcs = []fsm.Service{}
				}
				return e.Print(svcs, func(w io.Writer) {
					fmt.Fprintln(w, "NAME\tADDRESS\tACTIVE\tSTANDBY\tREPLICAS\tGENERATION\tSWITCHING")
					for _, s := range svcs {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.Spec.Name, s.Spec.Address,
							roleHolder(s.Active()), roleHolder(s.Standby()), len(s.Replicas),
							strconv.FormatUint(s.Generation, 10), intentSummary(s.Intent))
					}
				})
			}
		},
	})
}

func roleHolder(r fsm.ReplicaState, ok bool) string {
	if !ok {
		return "-"
	}
	return r.Name
}

func intentSummary(in *fsm.Intent) string {
	if in == nil {
		return "-"
	}
	return fmt.Sprintf("%s -> %s (%s)", dash(in.From), in.To, in.Reason)
}
