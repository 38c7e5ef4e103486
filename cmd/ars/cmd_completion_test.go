package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// shellWith runs script in shell with the test binary standing in for
// ars (see TestMain) and returns its output.
func shellWith(t *testing.T, shell, script string) string {
	t.Helper()
	path, err := exec.LookPath(shell)
	if err != nil {
		if os.Getenv("ARS_REQUIRE_LAB") != "" {
			t.Fatalf("ARS_REQUIRE_LAB is set but %s is not installed (make lab-deps)", shell)
		}
		t.Skipf("%s is not installed", shell)
	}
	cmd := exec.Command(path, "-c", script)
	cmd.Env = append(os.Environ(), "ARS_TEST_AS_ARS=1", "ARS="+os.Args[0])
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", shell, err, out)
	}
	return string(out)
}

// The bash script, loaded in bash, completes command words, the words of
// multi-word commands and a command's flags by asking the binary.
func TestBashCompletionLoadsAndCompletes(t *testing.T) {
	out := shellWith(t, "bash", `set -e
source <("$ARS" completion bash)
complete -p ars
try() { COMP_WORDS=("$ARS" "$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _ars; echo "$* => ${COMPREPLY[*]}"; }
try ra
try raft tr
try service show -hi
try -addr https://n1:8443 stat`)
	for _, want := range []string{
		"complete -F _ars ars",
		"ra => raft",
		"raft tr => transfer-leader",
		"service show -hi => -history",
		"-addr https://n1:8443 stat => status",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("bash output lacks %q:\n%s", want, out)
		}
	}
}

// The zsh script loads after compinit and registers its function for ars.
func TestZshCompletionLoads(t *testing.T) {
	out := shellWith(t, "zsh", `autoload -U compinit && compinit -u -D
source <("$ARS" completion zsh)
print -r -- "function: ${+functions[_ars]} binding: ${_comps[ars]}"`)
	if !strings.Contains(out, "function: 1 binding: _ars") {
		t.Fatalf("zsh did not load the completion: %s", out)
	}
}

// An unknown shell is refused, naming the ones there are.
func TestCompletionUnknownShell(t *testing.T) {
	r := ars(t, nil, "", "completion", "fish")
	if r.Code != 2 || !strings.Contains(r.Stderr, `unknown shell "fish" (bash or zsh)`) || r.Stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
}
