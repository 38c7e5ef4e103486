package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"

	"github.com/ars-project/ars/api"
)

func init() {
	Register(Command{
		Name:    "members",
		Summary: "List the cluster members as gossip sees them",
		Setup: func(fs *flag.FlagSet) RunFunc {
			return func(ctx context.Context, e *Env, args []string) error {
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
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Status, yesNo(m.Voter), yesNo(m.Leader),
							dash(m.GossipAddr), dash(m.RaftAddr), dash(m.APIAddr))
					}
				})
			}
		},
	})
}
