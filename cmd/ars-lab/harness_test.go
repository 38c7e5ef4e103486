package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ars-project/ars/cmd/internal/cli"
)

type result struct {
	code           int
	stdout, stderr string
}

// arsLab runs ars-lab with args and the given environment (nothing else
// of the test's environment).
func arsLab(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := app.Run(context.Background(), args, cli.Streams{
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return env[k] },
	})
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// ok asserts success with nothing on stderr.
func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q, stdout %q; want success", r.code, r.stderr, r.stdout)
	}
	return r
}

// fails asserts the exit code, nothing on stdout, and exactly one stderr
// line "ars-lab: ..." containing want.
func (r result) fails(t *testing.T, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d (stderr %q)", r.code, code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing on failure", r.stdout)
	}
	if !strings.HasPrefix(r.stderr, "ars-lab: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr %q, want exactly one line \"ars-lab: <reason>\"", r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr %q, want it to contain %q", r.stderr, want)
	}
}
