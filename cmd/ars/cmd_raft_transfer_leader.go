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
		Name:    "raft transfer-leader",
		Group:   groupCluster,
		Args:    "[ID]",
		MaxArgs: 1,
		Summary: "Hand Raft leadership to server ID (or to any up-to-date voter)",
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			return func(ctx context.Context, e *cli.Env, args []string) error {
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
