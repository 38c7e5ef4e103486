package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/internal/cli"
)

func init() {
	app.Register(cli.Command{
		Name:    "events",
		Group:   groupServices,
		MinArgs: 0, MaxArgs: 0,
		Summary: "Show what the cluster committed (switches, alerts, roles, services, leader and member changes, DoS verdicts), and follow it with -f",
		Help: `Prints the commands the node applied, oldest first, one per line: the
log index, the command, the service and what it did (GET /v1/events).
Every node applies the same commands under the same indexes, so a reader
that resumes with -after INDEX on any node misses nothing and sees
nothing twice. A node holds its last 4096 events (and none from before
the snapshot it started from); asking for older ones fails with
events_gone and says from which index on they are held. With -o json
each event is one JSON line (heartbeats left out). With -f the command
runs until it is interrupted (an explicit -timeout still applies).
Needs a reader token.`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			follow := fs.Bool("f", false, "follow: keep printing events as they are committed")
			service := fs.String("service", "", "only the events of `SERVICE`")
			after := fs.Int64("after", -1, "only events after the log `INDEX` (default: the last -tail)")
			tail := fs.Int("tail", 20, "without -after, start with the last `N` events")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				q := api.EventsQuery{Service: *service, Follow: *follow, Tail: *tail}
				switch {
				case *after < -1:
					return cli.UsageErrorf("-after %d: a log index is >= 0", *after)
				case *after >= 0:
					q.After, q.HasAfter = uint64(*after), true
				case *tail < 0 || *tail > 4096:
					return cli.UsageErrorf("-tail %d: from 0 to 4096", *tail)
				}
				if *follow {
					ctx = e.Unbounded(ctx)
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				err = c.Events(ctx, q, func(ev api.Event) error {
					switch ev.Type {
					case api.EventHeartbeat:
						return nil
					case api.EventGone:
						return fmt.Errorf("the stream ended: %s", ev.Error)
					}
					if e.JSONOutput() {
						b, err := json.Marshal(ev)
						if err != nil {
							return err
						}
						_, err = fmt.Fprintf(e.Stdout, "%s\n", b)
						return err
					}
					return printEvent(e.Stdout, ev)
				})
				if *follow && errors.Is(ctx.Err(), context.Canceled) {
					return nil // interrupted: the normal end of -f
				}
				return err
			}
		},
	})
}

// printEvent prints one event for people.
func printEvent(w io.Writer, ev api.Event) error {
	detail := ev.Describe()
	if ev.Refused != "" {
		detail += " [refused: " + ev.Refused + "]"
	}
	_, err := fmt.Fprintf(w, "%-8d %-15s %-12s %s\n", ev.Index, ev.Type, dash(ev.Service), detail)
	return err
}
