package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/internal/cli"
)

func init() {
	app.Register(cli.Command{
		Name:    "members",
		Group:   groupCluster,
		Summary: "List the cluster members as gossip sees them",
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			return func(ctx context.Context, e *cli.Env, args []string) error {
				c, err := e.Client()
				if err != nil {
					return err
				}
				ms, err := c.Members(ctx)
				if err != nil {
					return err
				}
				if ms == nil {
					ms = []api.Member{}
				}
				sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
				return e.Print(ms, func(w io.Writer) {
					fmt.Fprintln(w, "NAME\tSTATUS\tVOTER\tLEADER\tGOSSIP\tRAFT\tAPI")
					for _, m := range ms {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Status, cli.YesNo(m.Voter), cli.YesNo(m.Leader),
							dash(m.GossipAddr), dash(m.RaftAddr), dash(m.APIAddr))
					}
				})
			}
		},
	})
}
