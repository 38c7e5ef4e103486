package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ars-project/ars/cmd/internal/cli"
)

// EnvArsBin names the ars binary that ars-lab runs, where -ars is not
// given.
const EnvArsBin = "ARS_BIN"

// arsBinary is where ars-lab finds the ars binary it runs as processes
// (each node's `ars agent`, each replica's `ars watch apparmor`, the `ars`
// of `ars-lab exec -- ars …`): -ars, else $ARS_BIN, else the ars next to
// ars-lab's own executable (make build puts both in bin/).
type arsBinary struct{ path string }

func (b *arsBinary) register(fs *flag.FlagSet) {
	fs.StringVar(&b.path, "ars", "", "the ars `binary` the lab runs (agents, watch apparmor, exec's ars) [$"+EnvArsBin+"] (default: the ars next to ars-lab)")
}

// resolve returns the binary's absolute path. A missing or
// non-executable file is a usage error that says where it looked and how
// to point elsewhere.
func (b *arsBinary) resolve(getenv func(string) string) (string, error) {
	path, from := b.path, "-ars"
	if path == "" && getenv != nil {
		path, from = getenv(EnvArsBin), "$"+EnvArsBin
	}
	if path == "" {
		self, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("finding the ars binary next to ars-lab: %w", err)
		}
		path, from = filepath.Join(filepath.Dir(self), "ars"), "next to ars-lab"
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("the ars binary %s (%s): %w", path, from, err)
	}
	st, err := os.Stat(abs)
	switch {
	case err != nil:
		return "", cli.UsageErrorf("no ars binary at %s (%s): build it (make build puts ars and ars-lab in bin/), or give -ars PATH or %s", abs, from, EnvArsBin)
	case st.IsDir() || st.Mode().Perm()&0o111 == 0:
		return "", cli.UsageErrorf("the ars binary %s (%s) is not an executable file", abs, from)
	}
	return abs, nil
}
