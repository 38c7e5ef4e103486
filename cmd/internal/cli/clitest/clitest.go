// Package clitest runs a cli.App in process for tests and checks its exit
// code and output the way a person at a shell would see them.
package clitest

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ars-project/ars/cmd/internal/cli"
)

// Result is one run: the exit code and what went to stdout and stderr.
type Result struct {
	Prog           string // the program's name, the prefix of its errors
	Code           int
	Stdout, Stderr string
}

// Run runs app with args, the given environment (nothing else of the
// test's) and stdin.
func Run(t *testing.T, app *cli.App, env map[string]string, stdin string, args ...string) Result {
	t.Helper()
	var out, errb bytes.Buffer
	code := app.Run(context.Background(), args, cli.Streams{
		Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return env[k] },
	})
	return Result{Prog: app.Name(), Code: code, Stdout: out.String(), Stderr: errb.String()}
}

// OK asserts success with nothing on stderr.
func (r Result) OK(t *testing.T) Result {
	t.Helper()
	if r.Code != 0 || r.Stderr != "" {
		t.Fatalf("exit %d, stderr %q, stdout %q; want success", r.Code, r.Stderr, r.Stdout)
	}
	return r
}

// Fails asserts the exit code, nothing on stdout, and exactly one stderr
// line "PROG: ..." containing want.
func (r Result) Fails(t *testing.T, code int, want string) {
	t.Helper()
	if r.Code != code {
		t.Errorf("exit %d, want %d (stderr %q)", r.Code, code, r.Stderr)
	}
	if r.Stdout != "" {
		t.Errorf("stdout %q, want nothing on failure", r.Stdout)
	}
	if !strings.HasPrefix(r.Stderr, r.Prog+": ") || strings.Count(r.Stderr, "\n") != 1 || !strings.HasSuffix(r.Stderr, "\n") {
		t.Errorf("stderr %q, want exactly one line \"%s: <reason>\"", r.Stderr, r.Prog)
	}
	if !strings.Contains(r.Stderr, want) {
		t.Errorf("stderr %q, want it to contain %q", r.Stderr, want)
	}
}
