package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/internal/cli"
)

// replicaActionHelp describes each `ars replica ACTION`.
var replicaActionHelp = map[string]struct{ summary, help string }{
	"quarantine": {"Quarantine a replica (it is not used until restored)",
		"Marks the replica quarantined and not clean. The active replica cannot be\nquarantined: switch away from it first."},
	"restore": {"Mark a quarantined replica clean again",
		"Marks a quarantined or recovering replica clean (suspended, eligible\nagain): you assert it was restored out of band (rebuilt, reimaged)."},
	"maintenance": {"Take a replica out of rotation for maintenance",
		"Takes a replica that is not active out of rotation until released."},
	"release": {"Return a replica from maintenance to rotation", "Returns a replica in maintenance to rotation."},
}

func init() {
	for _, action := range api.ReplicaActions {
		h := replicaActionHelp[action]
		app.Register(cli.Command{
			Name:    "replica " + action,
			Group:   groupAttacks,
			Args:    "SERVICE REPLICA",
			MinArgs: 2, MaxArgs: 2,
			Summary: h.summary,
			Help: h.help + "\n\nPOST /v1/services/SERVICE/replicas/REPLICA/" + action +
				"; the leader refuses it if the service changed meanwhile. Needs an operator token.",
			Setup: func(fs *flag.FlagSet) cli.RunFunc {
				reason := fs.String("reason", "", "free-text `reason`, recorded on the replica (at most 256 bytes)")
				return func(ctx context.Context, e *cli.Env, args []string) error {
					if len(*reason) > api.MaxOperateReasonBytes {
						return cli.UsageErrorf("-reason: %d bytes, at most %d allowed", len(*reason), api.MaxOperateReasonBytes)
					}
					c, err := e.Client()
					if err != nil {
						return err
					}
					res, err := c.ReplicaAction(ctx, args[0], args[1], action, *reason)
					if err != nil {
						return err
					}
					if e.JSONOutput() {
						return e.JSON(res)
					}
					_, err = fmt.Fprintf(e.Stdout, "%s %s/%s: done (generation %d, index %d)\n",
						action, res.Service, res.Replica, res.Result.Generation, res.Result.Index)
					return err
				}
			},
		})
	}
}
