package main

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

// Command is one `ars` subcommand. Commands register themselves from init()
// with Register, one file per command.
type Command struct {
	// Name is the word(s) after "ars": "status", "raft peers".
	Name string
	// Args describes the positional arguments for the usage line, e.g. "FILE".
	Args string
	// MinArgs and MaxArgs bound the number of positional arguments
	// (MaxArgs < 0: no upper bound). The dispatcher enforces them.
	MinArgs, MaxArgs int
	// Summary is the one-line description shown by `ars help`.
	Summary string
	// Help is an optional longer description shown by `ars COMMAND -h`.
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

var registry = map[string]*Command{}

// Register adds a command. It panics on an empty or duplicate name, or on
// a missing Setup: both are programming errors caught by any test run.
func Register(c Command) {
	if c.Name == "" || c.Setup == nil {
		panic(fmt.Sprintf("ars: bad command registration %+v", c))
	}
	if _, dup := registry[c.Name]; dup {
		panic("ars: command registered twice: " + c.Name)
	}
	registry[c.Name] = &c
}

// commandNames returns all registered names, sorted.
func commandNames() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// lookup finds the command named by the leading words of args (the longest
// match) and returns it with the remaining arguments. group is set when the
// first word is only the prefix of commands ("raft").
func lookup(args []string) (c *Command, rest []string, group string) {
	for n := min(len(args), 3); n >= 1; n-- {
		if c, ok := registry[strings.Join(args[:n], " ")]; ok {
			return c, args[n:], ""
		}
	}
	if len(args) > 0 {
		for _, name := range commandNames() {
			if strings.HasPrefix(name, args[0]+" ") {
				return nil, args[1:], args[0]
			}
		}
	}
	return nil, args, ""
}

// Streams are the standard streams and environment a run uses.
type Streams struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// run executes one ars invocation and returns its exit code.
func run(ctx context.Context, args []string, s Streams) int {
	g := newGlobals(s.Getenv)

	// Global flags may precede the command word.
	top := flag.NewFlagSet("ars", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	g.register(top, true)
	help := top.Bool("h", false, "show help")
	top.BoolVar(help, "help", false, "show help")
	if err := top.Parse(args); err != nil {
		return fail(s.Stderr, usageErrorf("%v (see 'ars help')", flagError(err)))
	}
	args = top.Args()
	if *help || len(args) > 0 && args[0] == "help" {
		if len(args) > 0 && args[0] == "help" {
			args = args[1:]
		}
		return helpFor(s, args)
	}
	if len(args) == 0 {
		printUsage(s.Stderr)
		return exitUsage
	}

	c, rest, group := lookup(args)
	if c == nil {
		if group != "" {
			if len(rest) == 0 || rest[0] == "-h" || rest[0] == "-help" || rest[0] == "--help" {
				w, code := s.Stdout, exitOK
				if len(rest) == 0 {
					w, code = s.Stderr, exitUsage
				}
				printGroup(w, group)
				return code
			}
			return fail(s.Stderr, usageErrorf("unknown command %q (try: %s)", group+" "+rest[0], strings.Join(groupCommands(group), ", ")))
		}
		return fail(s.Stderr, usageErrorf("unknown command %q (see 'ars help')", args[0]))
	}

	if c.Timeout > 0 && !flagSet(top, "timeout") {
		g.timeout = c.Timeout
	}
	fs := flag.NewFlagSet("ars "+c.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs, !c.Local)
	runFn := c.Setup(fs)
	pos, err := parseInterspersed(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		printCommandHelp(s.Stdout, c, fs)
		return exitOK
	}
	if err != nil {
		return fail(s.Stderr, usageErrorf("%v (see 'ars %s -h')", flagError(err), c.Name))
	}
	if len(pos) < c.MinArgs || c.MaxArgs >= 0 && len(pos) > c.MaxArgs {
		return fail(s.Stderr, usageErrorf("usage: %s (see 'ars %s -h')", usageLine(c), c.Name))
	}
	if err := g.check(); err != nil {
		return fail(s.Stderr, err)
	}

	e := &Env{Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, Output: g.output, g: g, cmd: c}
	if !c.Local && g.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	err = runFn(ctx, e, pos)
	e.close()
	return fail(s.Stderr, err)
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

func usageLine(c *Command) string {
	s := "ars " + c.Name + " [flags]"
	if c.Args != "" {
		s += " " + c.Args
	}
	return s
}

func groupCommands(group string) []string {
	var out []string
	for _, n := range commandNames() {
		if strings.HasPrefix(n, group+" ") {
			out = append(out, n)
		}
	}
	return out
}

// helpFor serves `ars help [COMMAND...]` and `ars -h`.
func helpFor(s Streams, words []string) int {
	if len(words) == 0 {
		printUsage(s.Stdout)
		return exitOK
	}
	c, rest, group := lookup(words)
	switch {
	case c != nil && len(rest) == 0:
		fs := flag.NewFlagSet("ars "+c.Name, flag.ContinueOnError)
		newGlobals(s.Getenv).register(fs, !c.Local)
		c.Setup(fs)
		printCommandHelp(s.Stdout, c, fs)
		return exitOK
	case group != "" && len(rest) == 0:
		printGroup(s.Stdout, group)
		return exitOK
	}
	return fail(s.Stderr, usageErrorf("unknown command %q (see 'ars help')", strings.Join(words, " ")))
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: ars COMMAND [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	tw := newTabWriter(w)
	for _, n := range commandNames() {
		fmt.Fprintf(tw, "  %s\t%s\n", n, registry[n].Summary)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'ars COMMAND -h' for a command's flags. Exit codes: 0 ok, 1 operation failed,")
	fmt.Fprintln(w, "2 usage error, 3 cannot reach the node or TLS failure.")
}

func printGroup(w io.Writer, group string) {
	fmt.Fprintf(w, "Usage: ars %s COMMAND [flags] [args]\n\nCommands:\n", group)
	tw := newTabWriter(w)
	for _, n := range groupCommands(group) {
		fmt.Fprintf(tw, "  %s\t%s\n", n, registry[n].Summary)
	}
	tw.Flush()
}

func printCommandHelp(w io.Writer, c *Command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", usageLine(c), c.Summary)
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
		tw := newTabWriter(w)
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
