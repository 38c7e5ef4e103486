package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/ars-project/ars/cmd/internal/cli"
)

func init() {
	app.Register(cli.Command{
		Name:    "completion",
		Group:   groupOperations,
		Local:   true,
		Args:    "bash|zsh",
		MinArgs: 1, MaxArgs: 1,
		Summary: "Print the shell completion script for bash or zsh",
		Help: `Prints a script that completes ars's commands and flags; it asks this
binary (ars __complete) for the candidates, so it always matches the
installed version.

  bash: source <(ars completion bash)
        (or ars completion bash > /usr/share/bash-completion/completions/ars)
  zsh:  source <(ars completion zsh)     (after compinit)
        (or ars completion zsh > "${fpath[1]}/_ars")`,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			return func(ctx context.Context, e *cli.Env, args []string) error {
				script, err := app.CompletionScript(args[0])
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(e.Stdout, script)
				return err
			}
		},
	})
	app.Register(cli.Command{
		Name:    "__complete",
		Hidden:  true,
		Local:   true,
		Args:    "WORD...",
		MaxArgs: -1,
		Summary: "Print the completions of the last word (for the completion scripts)",
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			return func(ctx context.Context, e *cli.Env, args []string) error {
				out := app.Complete(args)
				if len(out) == 0 {
					return nil
				}
				_, err := fmt.Fprintln(e.Stdout, strings.Join(out, "\n"))
				return err
			}
		},
	})
}
