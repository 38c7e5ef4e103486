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
		Name:    "raft remove-peer",
		Group:   groupCluster,
		Args:    "ID",
		MinArgs: 1, MaxArgs: 1,
		Summary: "Remove server ID from the Raft configuration (for a node that is gone for good)",
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			return func(ctx context.Context, e *cli.Env, args []string) error {
				c, err := e.Client()
				if err != nil {
					return err
				}
				if err := c.RemovePeer(ctx, args[0]); err != nil {
					return err
				}
				if e.JSONOutput() {
					return e.JSON(api.OKResponse{OK: true})
				}
				_, err = fmt.Fprintf(e.Stdout, "Removed %s from the Raft configuration.\n", args[0])
				return err
			}
		},
	})
}
