package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// RunFunc runs a command with its positional arguments (flags removed).
type RunFunc func(ctx context.Context, e *Env, args []string) error

// Command is one subcommand of a program. Commands register themselves
// from init() with App.Register, one file per command.
type Command struct {
	// Name is the word(s) after the program name: "status", "raft peers".
	Name string
	// Group is the heading the command is listed under by `help` (one of
	// the App's Groups). Only a Hidden command may have none.
	Group string
	// Hidden commands are not listed by `help` (internal ones, such as
	// the daemon a command starts); they still run, and `help NAME`
	// still describes them.
	Hidden bool
	// Args describes the positional arguments for the usage line, e.g. "FILE".
	Args string
	// MinArgs and MaxArgs bound the number of positional arguments
	// (MaxArgs < 0: no upper bound). The dispatcher enforces them.
	MinArgs, MaxArgs int
	// Summary is the one-line description shown by `help`.
	Summary string
	// Help is an optional longer description shown by `COMMAND -h`.
	Help string
	// Local commands do not talk to a node: the API flags (-addr, -token,
	// TLS files) and -timeout are not registered and the context passed to
	// Run has no deadline (it is cancelled on SIGINT/SIGTERM).
	Local bool
	// Timeout replaces the default of -timeout (10s) for this command, for
	// long transfers; an explicit -timeout still wins.
	Timeout time.Duration
	// Setup registers the command's own flags on fs and returns the function
	// that runs the command; the flag values are read when it runs.
	Setup func(fs *flag.FlagSet) RunFunc
}

// Config describes a program.
type Config struct {
	// Name is the program's name, as typed: usage lines and the prefix of
	// every error line ("NAME: reason").
	Name string
	// Groups are the headings of `help`, in the order shown.
	Groups []string
	// Unreachable says what exit code 3 means for this program, for the
	// footer of `help` ("cannot reach the node or TLS failure").
	Unreachable string
	// Moved maps a first word that is no longer a command of this
	// program to a hint where it went, added to the unknown-command
	// error.
	Moved map[string]string
}

// App is a program: its commands and how errors map to exit codes.
type App struct {
	cfg      Config
	commands map[string]*Command
	codes    []func(error) (int, bool)
}

// New returns a program with no commands yet.
func New(cfg Config) *App {
	return &App{cfg: cfg, commands: map[string]*Command{}}
}

// Name is the program's name.
func (a *App) Name() string { return a.cfg.Name }

// Register adds a command. It panics on an empty or duplicate name, a
// missing Setup, or a visible command without one of the App's groups:
// all programming errors caught by any test run.
func (a *App) Register(c Command) {
	if c.Name == "" || c.Setup == nil {
		panic(fmt.Sprintf("%s: bad command registration %+v", a.cfg.Name, c))
	}
	if _, dup := a.commands[c.Name]; dup {
		panic(a.cfg.Name + ": command registered twice: " + c.Name)
	}
	if !c.Hidden && !slices.Contains(a.cfg.Groups, c.Group) {
		panic(fmt.Sprintf("%s: command %q: group %q is not one of %q", a.cfg.Name, c.Name, c.Group, a.cfg.Groups))
	}
	a.commands[c.Name] = &c
}

// ExitCode adds a mapping from errors to exit codes, tried in the order
// added after usage errors and before the API and network errors: code
// is used, with the error's text as the reason, when ok. A program maps
// the errors of its own packages this way, so this package imports none
// of them.
func (a *App) ExitCode(f func(err error) (code int, ok bool)) {
	a.codes = append(a.codes, f)
}

// Names returns all registered names, hidden ones too, sorted.
func (a *App) Names() []string {
	names := make([]string, 0, len(a.commands))
	for n := range a.commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Command returns the command registered as name, or nil.
func (a *App) Command(name string) *Command { return a.commands[name] }

// lookup finds the command named by the leading words of args (the longest
// match) and returns it with the remaining arguments. prefix is set when
// the first word is only the prefix of commands ("raft").
func (a *App) lookup(args []string) (c *Command, rest []string, prefix string) {
	for n := min(len(args), 3); n >= 1; n-- {
		if c, ok := a.commands[strings.Join(args[:n], " ")]; ok {
			return c, args[n:], ""
		}
	}
	if len(args) > 0 {
		for _, name := range a.Names() {
			if strings.HasPrefix(name, args[0]+" ") {
				return nil, args[1:], args[0]
			}
		}
	}
	return nil, args, ""
}

// hasAPICommands reports whether any command talks to a node, so that the
// API flags are accepted before the command word.
func (a *App) hasAPICommands() bool {
	for _, c := range a.commands {
		if !c.Local {
			return true
		}
	}
	return false
}

// Streams are the standard streams and environment a run uses.
type Streams struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// Run executes one invocation (args without the program name) and returns
// its exit code.
func (a *App) Run(ctx context.Context, args []string, s Streams) int {
	g := newGlobals(s.Getenv)

	// Global flags may precede the command word.
	top := flag.NewFlagSet(a.cfg.Name, flag.ContinueOnError)
	top.SetOutput(io.Discard)
	g.register(top, a.hasAPICommands())
	help := top.Bool("h", false, "show help")
	top.BoolVar(help, "help", false, "show help")
	if err := top.Parse(args); err != nil {
		return a.fail(s.Stderr, UsageErrorf("%v (see '%s help')", flagError(err), a.cfg.Name))
	}
	args = top.Args()
	if *help || len(args) > 0 && args[0] == "help" {
		if len(args) > 0 && args[0] == "help" {
			args = args[1:]
		}
		return a.helpFor(s, args)
	}
	if len(args) == 0 {
		a.printUsage(s.Stderr)
		return ExitUsage
	}

	c, rest, prefix := a.lookup(args)
	if c == nil {
		if prefix != "" {
			if len(rest) == 0 || rest[0] == "-h" || rest[0] == "-help" || rest[0] == "--help" {
				w, code := s.Stdout, ExitOK
				if len(rest) == 0 {
					w, code = s.Stderr, ExitUsage
				}
				a.printPrefix(w, prefix)
				return code
			}
			return a.fail(s.Stderr, UsageErrorf("unknown command %q (try: %s)", prefix+" "+rest[0], strings.Join(a.prefixCommands(prefix), ", ")))
		}
		if hint, ok := a.cfg.Moved[args[0]]; ok {
			return a.fail(s.Stderr, UsageErrorf("unknown command %q: %s", args[0], hint))
		}
		return a.fail(s.Stderr, UsageErrorf("unknown command %q (see '%s help')", args[0], a.cfg.Name))
	}

	if c.Timeout > 0 && !flagSet(top, "timeout") {
		g.timeout = c.Timeout
	}
	fs := flag.NewFlagSet(a.cfg.Name+" "+c.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs, !c.Local)
	runFn := c.Setup(fs)
	pos, err := parseInterspersed(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		a.printCommandHelp(s.Stdout, c, fs)
		return ExitOK
	}
	if err != nil {
		return a.fail(s.Stderr, UsageErrorf("%v (see '%s %s -h')", flagError(err), a.cfg.Name, c.Name))
	}
	if len(pos) < c.MinArgs || c.MaxArgs >= 0 && len(pos) > c.MaxArgs {
		return a.fail(s.Stderr, UsageErrorf("usage: %s (see '%s %s -h')", a.usageLine(c), a.cfg.Name, c.Name))
	}
	if err := g.check(); err != nil {
		return a.fail(s.Stderr, err)
	}

	e := &Env{Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, Output: g.output, g: g, cmd: c}
	if !flagSet(top, "timeout") && !flagSet(fs, "timeout") {
		e.parent = ctx
	}
	if !c.Local && g.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	err = runFn(ctx, e, pos)
	e.close()
	return a.fail(s.Stderr, err)
}

// parseInterspersed parses fs from args, allowing flags after and between
// positional arguments. "--" ends flag parsing; everything after it is
// positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagSet reports whether the flag name was given on fs.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// flagError shortens the flag package's messages.
func flagError(err error) error {
	msg := err.Error()
	msg = strings.Replace(msg, "flag provided but not defined: ", "unknown flag ", 1)
	return errors.New(msg)
}

func (a *App) usageLine(c *Command) string {
	s := a.cfg.Name + " " + c.Name + " [flags]"
	if c.Args != "" {
		s += " " + c.Args
	}
	return s
}

// prefixCommands are the visible commands whose name starts with prefix
// and a space.
func (a *App) prefixCommands(prefix string) []string {
	var out []string
	for _, n := range a.Names() {
		if strings.HasPrefix(n, prefix+" ") && !a.commands[n].Hidden {
			out = append(out, n)
		}
	}
	return out
}

// helpFor serves `help [COMMAND...]` and `-h`.
func (a *App) helpFor(s Streams, words []string) int {
	if len(words) == 0 {
		a.printUsage(s.Stdout)
		return ExitOK
	}
	c, rest, prefix := a.lookup(words)
	switch {
	case c != nil && len(rest) == 0:
		fs := flag.NewFlagSet(a.cfg.Name+" "+c.Name, flag.ContinueOnError)
		newGlobals(s.Getenv).register(fs, !c.Local)
		c.Setup(fs)
		a.printCommandHelp(s.Stdout, c, fs)
		return ExitOK
	case prefix != "" && len(rest) == 0:
		a.printPrefix(s.Stdout, prefix)
		return ExitOK
	}
	return a.fail(s.Stderr, UsageErrorf("unknown command %q (see '%s help')", strings.Join(words, " "), a.cfg.Name))
}

// printUsage lists the visible commands under their groups, in the order
// of Config.Groups, each group's commands sorted.
func (a *App) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s COMMAND [flags] [args]\n", a.cfg.Name)
	byGroup := map[string][]string{}
	width := 0 // one column of summaries across the groups
	for _, n := range a.Names() {
		if c := a.commands[n]; !c.Hidden {
			byGroup[c.Group] = append(byGroup[c.Group], n)
			width = max(width, len(n))
		}
	}
	for _, g := range a.cfg.Groups {
		if len(byGroup[g]) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", g)
		for _, n := range byGroup[g] {
			fmt.Fprintf(w, "  %-*s  %s\n", width, n, a.commands[n].Summary)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Run '%s COMMAND -h' for a command's flags. Exit codes: 0 ok, 1 operation failed,\n", a.cfg.Name)
	fmt.Fprintf(w, "2 usage error, 3 %s.\n", a.cfg.Unreachable)
}

func (a *App) printPrefix(w io.Writer, prefix string) {
	fmt.Fprintf(w, "Usage: %s %s COMMAND [flags] [args]\n\nCommands:\n", a.cfg.Name, prefix)
	tw := NewTabWriter(w)
	for _, n := range a.prefixCommands(prefix) {
		fmt.Fprintf(tw, "  %s\t%s\n", n, a.commands[n].Summary)
	}
	tw.Flush()
}

func (a *App) printCommandHelp(w io.Writer, c *Command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", a.usageLine(c), c.Summary)
	if c.Help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.Help))
	}
	var global, own []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if slices.Contains(globalFlagNames, f.Name) {
			global = append(global, f)
		} else {
			own = append(own, f)
		}
	})
	printFlags := func(title string, flags []*flag.Flag) {
		if len(flags) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		tw := NewTabWriter(w)
		for _, f := range flags {
			name, usage := flag.UnquoteUsage(f)
			arg := "-" + f.Name
			if name != "" {
				arg += " " + name
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(tw, "  %s\t%s%s\n", arg, usage, def)
		}
		tw.Flush()
	}
	printFlags("Flags", own)
	printFlags("Global flags", global)
}
