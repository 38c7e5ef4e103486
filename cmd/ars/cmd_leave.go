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
		Name:    "leave",
		Group:   groupCluster,
		Summary: "Make the node leave the cluster gracefully (it transfers leadership first, then exits)",
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			return func(ctx context.Context, e *cli.Env, args []string) error {
				c, err := e.Client()
				if err != nil {
					return err
				}
				if err := c.Leave(ctx); err != nil {
					return err
				}
				if e.JSONOutput() {
					return e.JSON(api.OKResponse{OK: true})
				}
				_, err = fmt.Fprintf(e.Stdout, "Node at %s left the cluster.\n", e.Addr())
				return err
			}
		},
	})
}
