package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ars-project/ars/cmd/internal/cli"
)

// ars-lab help lists its commands under Lab, Attacks, Nodes and Bench &
// chaos, in that order, and not the daemon (serve), which still has help
// of its own.
func TestHelpGroups(t *testing.T) {
	r := arsLab(t, nil, "help").OK(t)
	at := -1
	for _, g := range []string{"Lab:", "Attacks:", "Nodes:", "Bench & chaos:"} {
		i := strings.Index(r.Stdout, "\n"+g+"\n")
		if i < at {
			t.Errorf("help: group %q missing or out of order:\n%s", g, r.Stdout)
		}
		at = i
	}
	for _, name := range app.Names() {
		listed := strings.Contains(r.Stdout, "\n  "+name+" ")
		if hidden := app.Command(name).Hidden; listed == hidden {
			t.Errorf("help lists %q: %v, hidden: %v", name, listed, hidden)
		}
	}
	for _, want := range []string{"Usage: ars-lab COMMAND", "3 no lab is running"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("help lacks %q:\n%s", want, r.Stdout)
		}
	}
	if strings.Contains(r.Stdout, "  serve ") {
		t.Errorf("help lists serve:\n%s", r.Stdout)
	}
	if r := arsLab(t, nil, "help", "serve").OK(t); !strings.Contains(r.Stdout, "Usage: ars-lab serve [flags]") {
		t.Errorf("help serve:\n%s", r.Stdout)
	}
	if r := arsLab(t, nil, "node", "-h").OK(t); !strings.Contains(r.Stdout, "node partition") {
		t.Errorf("node -h:\n%s", r.Stdout)
	}
	// The lab commands are local: the node API flags are not theirs.
	arsLab(t, nil, "status", "-addr", "127.0.0.1:7500").Fails(t, cli.ExitUsage, "unknown flag -addr")
}

// writeExecutable creates an executable file named name in dir.
func writeExecutable(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// The ars binary: -ars beats $ARS_BIN, which beats the ars next to
// ars-lab; whichever is chosen must be an executable file, and the error
// says which was looked at and how to point elsewhere.
func TestArsBinaryLookup(t *testing.T) {
	dir := t.TempDir()
	flagBin, envBin := writeExecutable(t, dir, "ars-flag"), writeExecutable(t, dir, "ars-env")
	notExec := filepath.Join(dir, "ars-text")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == EnvArsBin {
				return v
			}
			return ""
		}
	}
	cases := []struct {
		flag, env string
		want      string // the path, or a piece of the error
		ok        bool
	}{
		{flagBin, envBin, flagBin, true},
		{"", envBin, envBin, true},
		{"", filepath.Join(dir, "missing"), "no ars binary at " + filepath.Join(dir, "missing") + " ($ARS_BIN)", false},
		{filepath.Join(dir, "missing"), envBin, "(-ars)", false},
		{notExec, "", "is not an executable file", false},
		{dir, "", "is not an executable file", false},
		// The test binary has no ars next to it.
		{"", "", "(next to ars-lab): build it (make build puts ars and ars-lab in bin/), or give -ars PATH or ARS_BIN", false},
	}
	for _, c := range cases {
		b := arsBinary{path: c.flag}
		got, err := b.resolve(env(c.env))
		switch {
		case c.ok && (err != nil || got != c.want):
			t.Errorf("-ars %q, $ARS_BIN %q: %q, %v; want %q", c.flag, c.env, got, err, c.want)
		case !c.ok && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("-ars %q, $ARS_BIN %q: %q, %v; want an error containing %q", c.flag, c.env, got, err, c.want)
		}
	}

	// A relative path is made absolute: the daemon and the namespaces
	// run it from elsewhere.
	t.Chdir(dir)
	if got, err := (&arsBinary{path: "ars-flag"}).resolve(env("")); err != nil || got != flagBin {
		t.Errorf("relative -ars: %q, %v; want %q", got, err, flagBin)
	}
}

// up finds the ars binary before it needs root or starts anything, and a
// missing one is a usage error.
func TestUpNeedsTheArsBinary(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-ars")
	arsLab(t, map[string]string{EnvArsBin: missing}, "up", "-state-dir", dir).
		Fails(t, cli.ExitUsage, "no ars binary at "+missing+" ($ARS_BIN)")
	arsLab(t, nil, "up", "-state-dir", dir, "-ars", missing).
		Fails(t, cli.ExitUsage, "no ars binary at "+missing+" (-ars)")
	arsLab(t, map[string]string{EnvArsBin: missing}, "chaos", "-state-dir", dir, "-recheck", "-histories", dir, "-schedules", "1").
		Fails(t, cli.ExitFailed, "seed-1.json")
}
