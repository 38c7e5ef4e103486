package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/internal/cli"
)

func init() {
	app.Register(cli.Command{
		Name:    "join",
		Group:   groupCluster,
		Args:    "ADDR...",
		MinArgs: 1, MaxArgs: -1,
		Summary: "Make the node join a cluster through gossip addresses (host:port)",
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			return func(ctx context.Context, e *cli.Env, args []string) error {
				c, err := e.Client()
				if err != nil {
					return err
				}
				n, err := c.Join(ctx, args)
				if err != nil {
					return err
				}
				if e.JSONOutput() {
					return e.JSON(api.JoinResponse{Joined: n})
				}
				_, err = fmt.Fprintf(e.Stdout, "Joined %d node(s).\n", n)
				return err
			}
		},
	})
}
