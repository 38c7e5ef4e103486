package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/ars-project/ars/api"
)

func init() {
	Register(Command{
		Name:    "leave",
		Summary: "Make the node leave the cluster gracefully (it transfers leadership first, then exits)",
		Setup: func(fs *flag.FlagSet) RunFunc {
			return func(ctx context.Context, e *Env, args []string) error {
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
