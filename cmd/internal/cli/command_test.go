package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testApp is a program with two groups, a prefix family ("node …"), a
// hidden command and commands that fail in chosen ways.
func testApp(t *testing.T) *App {
	t.Helper()
	a := New(Config{Name: "prog", Groups: []string{"First", "Second"}, Unreachable: "no daemon",
		Moved: map[string]string{"old": "it is other-prog's now"}})
	ok := func(fs *flag.FlagSet) RunFunc {
		return func(ctx context.Context, e *Env, args []string) error {
			_, err := fmt.Fprintln(e.Stdout, "ran", strings.Join(args, " "))
			return err
		}
	}
	failWith := func(err error) func(fs *flag.FlagSet) RunFunc {
		return func(fs *flag.FlagSet) RunFunc {
			return func(ctx context.Context, e *Env, args []string) error { return err }
		}
	}
	a.Register(Command{Name: "up", Group: "First", Local: true, Summary: "Bring it up", Setup: ok})
	a.Register(Command{Name: "node kill", Group: "Second", Local: true, Summary: "Kill a node", Setup: ok})
	a.Register(Command{Name: "node start", Group: "Second", Local: true, Summary: "Start a node", Setup: ok})
	a.Register(Command{Name: "node secret", Hidden: true, Local: true, Summary: "Internal node thing", Setup: ok})
	a.Register(Command{Name: "serve", Hidden: true, Local: true, MaxArgs: -1, Summary: "The daemon", Setup: ok})
	a.Register(Command{Name: "gone", Group: "First", Local: true, Summary: "Fails: no daemon", Setup: failWith(fmt.Errorf("asking: %w", errNoDaemon))})
	a.Register(Command{Name: "child", Group: "First", Local: true, Summary: "Fails with a child's code", Setup: failWith(&ExitCodeError{Code: 7})})
	a.ExitCode(func(err error) (int, bool) { return ExitUnreachable, errors.Is(err, errNoDaemon) })
	return a
}

var errNoDaemon = errors.New("no daemon is running")

type ran struct {
	code           int
	stdout, stderr string
}

func runApp(a *App, args ...string) ran {
	var out, errb bytes.Buffer
	code := a.Run(context.Background(), args, Streams{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
	return ran{code, out.String(), errb.String()}
}

func TestHelpListsGroupsInOrderAndHidesHidden(t *testing.T) {
	a := testApp(t)
	r := runApp(a, "help")
	if r.code != ExitOK || r.stderr != "" {
		t.Fatalf("help: exit %d, stderr %q", r.code, r.stderr)
	}
	first, second := strings.Index(r.stdout, "\nFirst:\n"), strings.Index(r.stdout, "\nSecond:\n")
	if first < 0 || second < first {
		t.Errorf("help: want the groups First then Second:\n%s", r.stdout)
	}
	if up, kill := strings.Index(r.stdout, "  up "), strings.Index(r.stdout, "  node kill "); up < first || up > second || kill < second {
		t.Errorf("help: up belongs under First, node kill under Second:\n%s", r.stdout)
	}
	for _, hidden := range []string{"serve", "secret", "The daemon"} {
		if strings.Contains(r.stdout, hidden) {
			t.Errorf("help lists the hidden %q:\n%s", hidden, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "Usage: prog COMMAND") || !strings.Contains(r.stdout, "3 no daemon.") {
		t.Errorf("help: want the program's name and its meaning of exit 3:\n%s", r.stdout)
	}
	// Summaries form one column across the groups.
	col := -1
	for _, line := range strings.Split(r.stdout, "\n") {
		if !strings.HasPrefix(line, "  ") {
			continue
		}
		for _, s := range []string{"Bring it up", "Kill a node", "Start a node", "Fails"} {
			if i := strings.Index(line, s); i >= 0 {
				if col >= 0 && i != col {
					t.Errorf("summary column %d, want %d:\n%s", i, col, r.stdout)
				}
				col = i
			}
		}
	}

	// A hidden command still runs and is described when asked for.
	if r := runApp(a, "serve", "x"); r.code != ExitOK || r.stdout != "ran x\n" {
		t.Errorf("serve: %+v", r)
	}
	if r := runApp(a, "help", "serve"); r.code != ExitOK || !strings.Contains(r.stdout, "Usage: prog serve [flags]") {
		t.Errorf("help serve: %+v", r)
	}
	// A prefix lists its visible commands only.
	r = runApp(a, "node", "-h")
	if r.code != ExitOK || !strings.Contains(r.stdout, "node kill") || strings.Contains(r.stdout, "node secret") {
		t.Errorf("node -h: %+v", r)
	}
	r = runApp(a, "node", "nope")
	if r.code != ExitUsage || r.stderr != "prog: unknown command \"node nope\" (try: node kill, node start)\n" {
		t.Errorf("node nope: %+v", r)
	}
}

func TestErrorsCarryTheProgramNameAndMappedCodes(t *testing.T) {
	a := testApp(t)
	if r := runApp(a, "gone"); r.code != ExitUnreachable || r.stderr != "prog: asking: no daemon is running\n" {
		t.Errorf("gone: %+v; want exit 3 with the error as the reason", r)
	}
	if r := runApp(a, "child"); r.code != 7 || r.stderr != "" {
		t.Errorf("child: %+v; want exit 7 and nothing printed", r)
	}
	if r := runApp(a, "nope"); r.code != ExitUsage || r.stderr != "prog: unknown command \"nope\" (see 'prog help')\n" {
		t.Errorf("nope: %+v", r)
	}
	if r := runApp(a, "old", "up"); r.code != ExitUsage || r.stderr != "prog: unknown command \"old\": it is other-prog's now\n" {
		t.Errorf("old up: %+v; want the hint where it went", r)
	}
	// No command talks to a node: no API flags, before the command or after.
	if r := runApp(a, "-addr", "127.0.0.1:1", "up"); r.code != ExitUsage || !strings.Contains(r.stderr, "unknown flag -addr") {
		t.Errorf("-addr up: %+v", r)
	}
	if r := runApp(a, "-o", "json", "up"); r.code != ExitOK {
		t.Errorf("-o json up: %+v", r)
	}
}

func TestRegisterRejectsMistakes(t *testing.T) {
	setup := func(fs *flag.FlagSet) RunFunc { return nil }
	cases := map[string]Command{
		"duplicate":        {Name: "up", Group: "First", Setup: setup},
		"no name":          {Group: "First", Setup: setup},
		"no setup":         {Name: "down", Group: "First"},
		"no group":         {Name: "down", Setup: setup},
		"an unknown group": {Name: "down", Group: "Third", Setup: setup},
	}
	for what, c := range cases {
		t.Run(what, func(t *testing.T) {
			a := testApp(t)
			defer func() {
				if recover() == nil {
					t.Errorf("registering a command with %s did not panic", what)
				}
			}()
			a.Register(c)
		})
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args    []string
		pos     []string
		force   bool
		timeout time.Duration
	}{
		{[]string{"a", "b"}, []string{"a", "b"}, false, 0},
		{[]string{"a", "-force", "b"}, []string{"a", "b"}, true, 0},
		{[]string{"-force", "a", "-t", "5s"}, []string{"a"}, true, 5 * time.Second},
		{[]string{"-", "-force"}, []string{"-"}, true, 0},
		{[]string{"a", "--", "-force", "b"}, []string{"a", "-force", "b"}, false, 0},
		{[]string{"--", "-x"}, []string{"-x"}, false, 0},
		{nil, nil, false, 0},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		force := fs.Bool("force", false, "")
		timeout := fs.Duration("t", 0, "")
		pos, err := parseInterspersed(fs, tt.args)
		if err != nil {
			t.Errorf("%q: %v", tt.args, err)
			continue
		}
		if !reflect.DeepEqual(pos, tt.pos) || *force != tt.force || *timeout != tt.timeout {
			t.Errorf("%q: pos %q force %v t %v; want %q %v %v", tt.args, pos, *force, *timeout, tt.pos, tt.force, tt.timeout)
		}
	}
}
