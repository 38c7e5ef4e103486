package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/ars-project/ars/api"
)

func init() {
	Register(Command{
		Name:    "raft transfer-leader",
		Args:    "[ID]",
		MaxArgs: 1,
		Summary: "Hand Raft leadership to server ID (or to any up-to-date voter)",
		Setup: func(fs *flag.FlagSet) RunFunc {
			return func(ctx context.Context, e *Env, args []string) error {
				c, err := e.Client()
				if err != nil {
					return err
				}
				to := ""
				if len(args) == 1 {
					to = args[0]
				}
				if err := c.TransferLeader(ctx, to); err != nil {
					return err
				}
				if e.JSONOutput() {
					return e.JSON(api.OKResponse{OK: true})
				}
				if to == "" {
					to = "another voter"
				}
				_, err = fmt.Fprintf(e.Stdout, "Leadership transferred to %s.\n", to)
				return err
			}
		},
	})
}
