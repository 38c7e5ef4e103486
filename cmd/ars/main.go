package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ars-project/ars/cmd/internal/cli"
)

// The headings of `ars help`, in this order.
const (
	groupCluster    = "Cluster"
	groupServices   = "Services"
	groupAttacks    = "Attacks & response"
	groupOperations = "Operations"
)

// app is the ars program; every cmd_*.go registers its command on it.
var app = cli.New(cli.Config{
	Name:        "ars",
	Groups:      []string{groupCluster, groupServices, groupAttacks, groupOperations},
	Unreachable: "cannot reach the node or TLS failure",
	Moved: map[string]string{
		"lab":   "the lab's commands are ars-lab's now (ars lab up is ars-lab up; see 'ars-lab help')",
		"bench": "it is ars-lab bench now",
		"chaos": "it is ars-lab chaos now",
	},
})

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Run(ctx, os.Args[1:], cli.Streams{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
