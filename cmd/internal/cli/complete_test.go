package cli

import (
	"context"
	"flag"
	"slices"
	"testing"
)

func TestComplete(t *testing.T) {
	a := New(Config{Name: "prog", Groups: []string{"G"}})
	setup := func(fs *flag.FlagSet) RunFunc {
		fs.Bool("follow", false, "")
		fs.String("service", "", "")
		return func(context.Context, *Env, []string) error { return nil }
	}
	a.Register(Command{Name: "status", Group: "G", Setup: setup})
	a.Register(Command{Name: "raft peers", Group: "G", Setup: setup})
	a.Register(Command{Name: "raft remove-peer", Group: "G", Setup: setup})
	a.Register(Command{Name: "version", Group: "G", Local: true, Setup: func(fs *flag.FlagSet) RunFunc { return nil }})
	a.Register(Command{Name: "secret", Hidden: true, Setup: setup})
	for _, tt := range []struct {
		words []string
		want  []string
	}{
		{nil, []string{"help", "raft", "status", "version"}},
		{[]string{""}, []string{"help", "raft", "status", "version"}},
		{[]string{"s"}, []string{"status"}}, // not the hidden "secret"
		{[]string{"raft", ""}, []string{"peers", "remove-peer"}},
		{[]string{"raft", "r"}, []string{"remove-peer"}},
		{[]string{"help", "ra"}, []string{"raft"}},
		{[]string{"status", "-f"}, []string{"-follow"}},
		{[]string{"status", "-"}, []string{"-addr", "-ca-file", "-client-cert", "-client-key", "-follow", "-o", "-service", "-timeout", "-tls-server-name", "-token", "-token-file"}},
		{[]string{"version", "-"}, []string{"-o"}},                       // a local command has no API flags
		{[]string{"status", "x"}, nil},                                   // a positional argument: the shell's files
		{[]string{"-addr", "https://n1:8443", "st"}, []string{"status"}}, // a global flag's value is skipped
		{[]string{"-addr=https://n1:8443", "raft", "p"}, []string{"peers"}},
		{[]string{"nope", ""}, nil},
	} {
		if got := a.Complete(tt.words); !slices.Equal(got, tt.want) {
			t.Errorf("Complete(%q) = %q, want %q", tt.words, got, tt.want)
		}
	}
}

func TestCompletionScriptRefusesUnknownShells(t *testing.T) {
	a := New(Config{Name: "prog"})
	for _, sh := range []string{"bash", "zsh"} {
		if s, err := a.CompletionScript(sh); err != nil || len(s) == 0 {
			t.Errorf("%s: %v", sh, err)
		}
	}
	if _, err := a.CompletionScript("fish"); err == nil {
		t.Error("fish accepted")
	}
}
