package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/fsm"
)

func init() {
	app.Register(cli.Command{
		Name:    "alert",
		Group:   groupAttacks,
		Args:    "SERVICE REPLICA",
		MinArgs: 2, MaxArgs: 2,
		Summary: "Report an attack on a replica (recorded once committed)",
		Help: `Posts an alert to the alert ledger (POST /v1/alerts) and waits until the
leader has committed it. An alert whose -id is already in the ledger is
acknowledged as a duplicate and changes nothing, so a command that failed
or timed out can be repeated with the same -id without recording the alert
twice. Without -id a random id is used (printed on success only: give -id
when you may need to repeat). Needs an operator or detector token. -evidence - reads the evidence from stdin (at most
16 KiB; the ledger keeps the first 4 KiB).`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			kind := fs.String("kind", "", "`kind` of attack: exploit or dos (required)")
			id := fs.String("id", "", "alert `id` (default: random); letters, digits and . _ : -")
			source := fs.String("source", "cli", "`name` of the detector")
			evidence := fs.String("evidence", "", "free-text `evidence`, or - for stdin")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				switch *kind {
				case fsm.KindExploit, fsm.KindDoS:
				case "":
					return cli.UsageErrorf("-kind is required: exploit or dos")
				default:
					return cli.UsageErrorf("-kind %q: must be exploit or dos", *kind)
				}
				req := api.AlertRequest{ID: *id, Service: args[0], Replica: args[1], Kind: *kind,
					Source: *source, Evidence: *evidence}
				if req.ID == "" {
					req.ID = randomAlertID()
				}
				if *evidence == "-" {
					data, err := io.ReadAll(io.LimitReader(e.Stdin, api.MaxAlertEvidenceBytes+1))
					if err != nil {
						return fmt.Errorf("reading evidence from stdin: %w", err)
					}
					if len(data) > api.MaxAlertEvidenceBytes {
						return cli.UsageErrorf("-evidence -: more than %d bytes on stdin", api.MaxAlertEvidenceBytes)
					}
					req.Evidence = strings.TrimRight(string(data), "\n")
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				res, err := c.PostAlert(ctx, req)
				if err != nil {
					return err
				}
				if e.JSONOutput() {
					return e.JSON(res)
				}
				what := "committed"
				if res.Duplicate {
					what = "duplicate (already in the ledger)"
				}
				_, err = fmt.Fprintf(e.Stdout, "Alert %s %s: %s %s/%s (index %d).\n", res.ID, what, res.Kind, res.Service, res.Replica, res.Index)
				return err
			}
		},
	})
}

// randomAlertID is "cli-" and 16 random bytes in hex.
func randomAlertID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather)
	return "cli-" + hex.EncodeToString(b[:])
}
