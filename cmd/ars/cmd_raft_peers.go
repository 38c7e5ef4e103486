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
		Name:    "raft peers",
		Group:   groupCluster,
		Summary: "List the servers in the Raft configuration",
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			return func(ctx context.Context, e *cli.Env, args []string) error {
				c, err := e.Client()
				if err != nil {
					return err
				}
				ps, err := c.Peers(ctx)
				if err != nil {
					return err
				}
				if ps == nil {
					ps = []api.Peer{}
				}
				return e.Print(ps, func(w io.Writer) {
					fmt.Fprintln(w, "ID\tADDRESS\tSUFFRAGE\tLEADER")
					for _, p := range ps {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.ID, p.Address, p.Suffrage, cli.YesNo(p.Leader))
					}
				})
			}
		},
	})
}
