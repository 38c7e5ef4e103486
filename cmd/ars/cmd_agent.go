package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/ars-project/ars/cluster"
	"github.com/ars-project/ars/cmd/ars/agent"
	"github.com/ars-project/ars/cmd/internal/cli"
)

func init() {
	app.Register(cli.Command{
		Name:    "agent",
		Group:   groupOperations,
		Summary: "Run a controller node (-config FILE, or -dev for one in-memory node)",
		Help: `Runs one ars controller node until SIGINT/SIGTERM (which stops it without
leaving the cluster, so a restart keeps its membership) or until 'ars leave'
makes it leave gracefully.

  ars agent -config /etc/ars/agent.yaml
  ars agent -dev          one node, in-memory Raft, plain HTTP, no tokens`,
		Local: true,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			file := fs.String("config", "", "agent configuration `FILE` (YAML)")
			dev := fs.Bool("dev", false, "run one in-memory node with no TLS and no authentication")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				var (
					cfg *agent.Config
					err error
				)
				switch {
				case *dev && *file != "":
					return cli.UsageErrorf("-dev and -config are exclusive")
				case *dev:
					cfg = agent.DevConfig()
				case *file != "":
					if cfg, err = agent.LoadConfig(*file); err != nil {
						return err
					}
				default:
					return cli.UsageErrorf("agent needs -config FILE or -dev")
				}
				cluster.Version = Version()
				log := agent.NewLogger(cfg, e.Stderr)
				a, err := agent.Start(cfg, log)
				if err != nil {
					return fmt.Errorf("start agent: %w", err)
				}
				if cfg.Dev {
					fmt.Fprint(e.Stderr, agent.DevBanner(a.APIURL()))
				}
				select {
				case <-ctx.Done():
					log.Info("signal received; stopping (not leaving the cluster)")
					return a.Shutdown()
				case <-a.Done():
					if err := a.Err(); err != nil && !errors.Is(err, context.Canceled) {
						return err
					}
					return nil
				}
			}
		},
	})
}
