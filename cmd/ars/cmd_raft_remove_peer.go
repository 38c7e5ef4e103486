package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/ars-project/ars/api"
)

func init() {
	Register(Command{
		Name:    "raft remove-peer",
		Args:    "ID",
		MinArgs: 1, MaxArgs: 1,
		Summary: "Remove server ID from the Raft configuration (for a node that is gone for good)",
		Setup: func(fs *flag.FlagSet) RunFunc {
			return func(ctx context.Context, e *Env, args []string) error {
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
