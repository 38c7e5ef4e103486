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
		Name:    "switch",
		Group:   groupAttacks,
		Args:    "SERVICE",
		MinArgs: 1, MaxArgs: 1,
		Summary: "Switch a service to another replica now (manual switch)",
		Help: `Asks the leader to switch SERVICE away from its active replica (POST
/v1/services/SERVICE/switch). Without -to the leader picks the most diverse
eligible replica, as for an attack. A switch the leader refuses (the
replica is quarantined, in maintenance, already active, or nothing is
eligible) fails with the reason and changes nothing. Needs an operator
token.`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			to := fs.String("to", "", "`replica` to switch to (default: the leader picks)")
			reason := fs.String("reason", "", "free-text `reason`, logged with the decision (at most 256 bytes)")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				if len(*reason) > api.MaxOperateReasonBytes {
					return cli.UsageErrorf("-reason: %d bytes, at most %d allowed", len(*reason), api.MaxOperateReasonBytes)
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				res, err := c.Switch(ctx, args[0], api.SwitchRequest{To: *to, Reason: *reason})
				if err != nil {
					return err
				}
				if e.JSONOutput() {
					return e.JSON(res)
				}
				_, err = fmt.Fprintf(e.Stdout, "switched %s: %s -> %s (generation %d)\n", res.Service, res.From, res.To, res.Generation)
				return err
			}
		},
	})
}
