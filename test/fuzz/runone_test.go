package fuzz

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeGo writes a stand-in for the go command that answers each run from
// script (one line per run: "ok", "deadline", "deadline+input" or
// "crash"), appending the run to a log.
func fakeGo(t *testing.T, dir string, script ...string) (gobin, log string) {
	t.Helper()
	log = filepath.Join(dir, "runs")
	plan := filepath.Join(dir, "plan")
	if err := os.WriteFile(plan, []byte(strings.Join(script, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gobin = filepath.Join(dir, "go")
	body := `#!/usr/bin/env bash
n=$(wc -l < "` + log + `" 2>/dev/null || echo 0)
echo run >> "` + log + `"
what=$(sed -n "$((n+1))p" "` + plan + `")
case "$what" in
ok) echo ok; exit 0;;
deadline) echo "--- FAIL: FuzzX (11.01s)"; echo "    context deadline exceeded"; echo FAIL; exit 1;;
deadline+input) mkdir -p "$PKGDIR/testdata/fuzz/FuzzX"; touch "$PKGDIR/testdata/fuzz/FuzzX/new$n"; echo "    context deadline exceeded"; exit 1;;
crash) echo "--- FAIL: FuzzX"; echo "    panic: boom"; exit 1;;
esac
`
	if err := os.WriteFile(gobin, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return gobin, log
}

// The runner passes a passing run, runs a bare end-of-fuzztime deadline
// failure once more (and passes if that one does), and fails on a crash,
// on a deadline failure that wrote an input, and on the same deadline
// failure twice.
func TestRunOne(t *testing.T) {
	for _, c := range []struct {
		name   string
		script []string
		ok     bool
		runs   int
	}{
		{"pass", []string{"ok"}, true, 1},
		{"deadline then pass", []string{"deadline", "ok"}, true, 2},
		{"deadline twice", []string{"deadline", "deadline"}, false, 2},
		{"deadline with an input written", []string{"deadline+input", "ok"}, false, 1},
		{"crash", []string{"crash", "ok"}, false, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			pkg := filepath.Join(dir, "pkg")
			if err := os.MkdirAll(pkg, 0o755); err != nil {
				t.Fatal(err)
			}
			gobin, log := fakeGo(t, dir, c.script...)
			cmd := exec.Command("bash", "run-one.sh", pkg, "FuzzX", "10s")
			cmd.Env = append(os.Environ(), "GO="+gobin, "PKGDIR="+pkg)
			out, err := cmd.CombinedOutput()
			if (err == nil) != c.ok {
				t.Fatalf("exit %v, want ok=%v:\n%s", err, c.ok, out)
			}
			b, _ := os.ReadFile(log)
			if n := strings.Count(string(b), "run"); n != c.runs {
				t.Fatalf("%d runs, want %d:\n%s", n, c.runs, out)
			}
		})
	}
}
