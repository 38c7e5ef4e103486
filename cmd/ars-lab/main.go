package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/lab"
)

// The headings of `ars-lab help`, in this order.
const (
	groupLab     = "Lab"
	groupAttacks = "Attacks"
	groupNodes   = "Nodes"
	groupBench   = "Bench & chaos"
)

// app is the ars-lab program; every cmd_*.go registers its commands on it.
var app = cli.New(cli.Config{
	Name:        "ars-lab",
	Groups:      []string{groupLab, groupAttacks, groupNodes, groupBench},
	Unreachable: "no lab is running",
})

func init() {
	// The lab's own errors: a request the daemon refused as malformed is
	// a usage error; no daemon to ask means nothing to reach.
	app.ExitCode(func(err error) (int, bool) {
		switch {
		case lab.IsBadRequest(err):
			return cli.ExitUsage, true
		case errors.Is(err, lab.ErrNoLab):
			return cli.ExitUnreachable, true
		}
		return 0, false
	})
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Run(ctx, os.Args[1:], cli.Streams{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
