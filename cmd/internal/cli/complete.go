package cli

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Complete returns the completions of the last of words (the arguments
// typed after the program name; the last one is the word being
// completed, maybe empty): the next word of the visible command names
// that start with the words before it, or, once those name a command and
// the word starts with "-", that command's flags. Nothing for a
// positional argument (the shell then completes file names).
func (a *App) Complete(words []string) []string {
	if len(words) == 0 {
		words = []string{""}
	}
	done, cur := words[:len(words)-1], words[len(words)-1]
	done = a.withoutFlags(done)
	if len(done) > 0 && done[0] == "help" {
		done = done[1:]
	}
	if c, _, _ := a.lookup(done); c != nil {
		if !strings.HasPrefix(cur, "-") {
			return nil
		}
		fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		newGlobals(func(string) string { return "" }).register(fs, !c.Local)
		c.Setup(fs)
		var out []string
		fs.VisitAll(func(f *flag.Flag) {
			if name := "-" + f.Name; strings.HasPrefix(name, cur) {
				out = append(out, name)
			}
		})
		sort.Strings(out)
		return out
	}
	seen := map[string]bool{}
	var out []string
	add := func(w string) {
		if strings.HasPrefix(w, cur) && !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	if len(done) == 0 {
		add("help")
	}
	for _, name := range a.Names() {
		if a.commands[name].Hidden {
			continue
		}
		parts := strings.Fields(name)
		if len(parts) <= len(done) || strings.Join(parts[:len(done)], " ") != strings.Join(done, " ") {
			continue
		}
		add(parts[len(done)])
	}
	sort.Strings(out)
	return out
}

// withoutFlags drops the global flags before the command word, with the
// value of one that takes it as the next word, and any later flag.
func (a *App) withoutFlags(words []string) []string {
	top := flag.NewFlagSet(a.cfg.Name, flag.ContinueOnError)
	newGlobals(func(string) string { return "" }).register(top, a.hasAPICommands())
	var out []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "-") {
			out = append(out, w)
			continue
		}
		name := strings.TrimLeft(w, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := top.Lookup(name); f != nil {
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				i++ // its value
			}
		}
	}
	return out
}

// CompletionScript is the shell code that completes the program's
// commands and flags by asking the program itself (its hidden command
// "__complete"), for shell "bash" or "zsh".
func (a *App) CompletionScript(shell string) (string, error) {
	n := a.cfg.Name
	fn := "_" + strings.NewReplacer("-", "_", ".", "_").Replace(n)
	switch shell {
	case "bash":
		return fmt.Sprintf(`# bash completion for %[1]s: source it, or install it as
# /usr/share/bash-completion/completions/%[1]s
%[2]s() {
	local cur="${COMP_WORDS[COMP_CWORD]}"
	local IFS=$'\n'
	COMPREPLY=($("${COMP_WORDS[0]}" __complete -- "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
	if [ ${#COMPREPLY[@]} -eq 0 ]; then
		COMPREPLY=($(compgen -f -- "$cur"))
	fi
}
complete -F %[2]s %[1]s
`, n, fn), nil
	case "zsh":
		return fmt.Sprintf(`#compdef %[1]s
# zsh completion for %[1]s: source it after compinit, or install it as
# _%[1]s in a directory of $fpath
%[2]s() {
	local -a cands
	cands=("${(@f)$("${words[1]}" __complete -- "${(@)words[2,CURRENT]}" 2>/dev/null)}")
	if (( ${#cands} )) && [[ -n "${cands[1]}" ]]; then
		compadd -a cands
	else
		_files
	fi
}
compdef %[2]s %[1]s
`, n, fn), nil
	}
	return "", UsageErrorf("unknown shell %q (bash or zsh)", shell)
}
