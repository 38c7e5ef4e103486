package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/ars-project/ars/cmd/internal/cli"
)

func init() {
	app.Register(cli.Command{
		Name:    "engine restart",
		Group:   groupNodes,
		Local:   true,
		Summary: "Restart the Docker engine under the lab's container replicas (a crashed and restarted Docker host daemon)",
		Help: `Sends SIGTERM to the machine's Docker engine (the daemon of
/var/run/docker.pid), waits for it to exit — the engine stops every
container, and the replicas' restart policy is "no" —, starts the same
command line again and waits until it answers; prints how long the engine
was away. The nodes see their Docker calls fail and retried, the replicas
stopped, and repair what the roles need. Only a lab with container
replicas (-replicas NAME:IMPL:OS:container) does it. It restarts the
machine's engine: anything else that uses it sees the restart too.`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			var f labFlags
			f.register(fs)
			return func(ctx context.Context, e *cli.Env, args []string) error {
				r, err := f.control().RestartEngine(ctx)
				if err != nil {
					return err
				}
				return e.Print(r, func(w io.Writer) {
					fmt.Fprintf(w, "docker engine restarted: away %.0f ms\n", r.AwayMS)
				})
			}
		},
	})
}
