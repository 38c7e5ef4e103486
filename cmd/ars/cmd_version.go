package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/ars-project/ars/cmd/internal/cli"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Version returns the version string of this binary, with the VCS revision
// when the build recorded one.
func Version() string {
	v := version
	if info, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			v += " (" + rev + dirty + ")"
		}
	}
	return v
}

func init() {
	app.Register(cli.Command{
		Name:    "version",
		Group:   groupOperations,
		Local:   true,
		Summary: "Print the version of this binary",
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			return func(ctx context.Context, e *cli.Env, args []string) error {
				info := map[string]string{"version": Version(), "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH}
				if e.JSONOutput() {
					return e.JSON(info)
				}
				_, err := fmt.Fprintf(e.Stdout, "ars %s %s %s\n", info["version"], info["go"], info["platform"])
				return err
			}
		},
	})
}
