package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/internal/cli"
)

func init() {
	app.Register(cli.Command{
		Name:    "snapshot restore",
		Group:   groupOperations,
		Args:    "FILE",
		MinArgs: 1, MaxArgs: 1,
		Timeout: 10 * time.Minute,
		Summary: "Replace the replicated state with a saved snapshot ('-' = stdin)",
		Help: `The leader installs the snapshot and every node follows. This replaces
all services, roles and history. The default -timeout of this command is
10m.`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			return func(ctx context.Context, e *cli.Env, args []string) error {
				path := args[0]
				var r io.Reader = e.Stdin
				if path != "-" {
					f, err := os.Open(path)
					if err != nil {
						return err
					}
					defer f.Close()
					r = f
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				if err := c.SnapshotRestore(ctx, r); err != nil {
					return err
				}
				if e.JSONOutput() {
					return e.JSON(api.OKResponse{OK: true})
				}
				_, err = fmt.Fprintf(e.Stdout, "Restored snapshot from %s.\n", path)
				return err
			}
		},
	})
}
