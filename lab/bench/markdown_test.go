package bench

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("Markdown differs from %s (run go test -update to accept):\n%s", path, got)
	}
}

func TestMarkdownGolden(t *testing.T) {
	tests := map[string]File{
		"sample": sampleFile(t),
		"empty":  {},
		"not_run": {Scenarios: []Result{
			NotRun("dos/vm-container", ModePaperCLI, ProfileNone, "no container replicas"),
			NotRun("dos/vm-container", ModeARS, ProfileNone, "no container\nreplicas | yet"),
		}},
		"notes": notesFile(t),
	}
	for name, f := range tests {
		t.Run(name, func(t *testing.T) { golden(t, name, Markdown(f)) })
	}
}

func TestMarkdownWrittenByWrite(t *testing.T) {
	dir := t.TempDir()
	f := sampleFile(t)
	if err := Write(dir, f); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, TableFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != Markdown(f) {
		t.Error("latest.md differs from Markdown(f)")
	}
}

func TestMarkdownVsARS(t *testing.T) {
	md := Markdown(sampleFile(t))
	// Profile none, dos/vm-vm: ars mean 120, paper-sdk 650, dnsdist 1000,
	// paper-cli 2000 (one failed trial left out).
	for _, want := range []string{
		"| dos/vm-vm | ars | 3 | 120 | 120 | 150 |",
		"| dos/vm-vm | paper-sdk | 2 | 650 |",
		"| 1 | ars = 18.5 % of this |",
		"| 0 | ars = 12 % of this |",
		"| dos/vm-vm | paper-cli | 1 (+1 failed) | 2000 |",
		"| 0 | ars = 6 % of this |",
		// exploit/vm-vm paper-sdk has a zero mean: no ratio.
		"| exploit/vm-vm | paper-sdk | 1 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 |  |  | 0 | – |",
		"| dos/vm-container | ars | 0 | not run: no container replicas |",
		`- dos/vm-vm paper-cli: trial 2: govc: timeout \| retry`,
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
}

// notesFile has rows with notes (a system that cannot switch, a policy of
// its own) beside rows without, and a not-run row.
func notesFile(t *testing.T) File {
	t.Helper()
	sum := func(name, mode, note string, trials ...Trial) Result {
		t.Helper()
		r, err := Summarize(name, mode, ProfileNone, trials, 0)
		if err != nil {
			t.Fatal(err)
		}
		r.Note = note
		return r
	}
	return File{Scenarios: []Result{
		sum("leader-loss/dos", ModePaperSDK, "no switch: one management node | killed",
			Trial{Downtime: 10 * time.Second, Lost: 2000, Outages: 1}),
		sum("leader-loss/dos", ModeARS, "", Trial{Downtime: 1500 * time.Millisecond, Lost: 300, Switched: true, Outages: 1}),
		sum("impl-attack/first-available", ModeDNSDist, "firstAvailable: no notion of implementation",
			Trial{Downtime: 2 * time.Second, Switched: true, Outages: 2}),
		sum("impl-attack/diverse", ModeARS, "", Trial{Downtime: 300 * time.Millisecond, Switched: true, Outages: 1}),
		NotRun("exploit/vm-vm", ModeDNSDist, ProfileNone, "dnsdist has no exploit detection"),
	}}
}

func TestMarkdownNotes(t *testing.T) {
	md := Markdown(notesFile(t))
	for _, want := range []string{
		// Rows sort by name: the dnsdist row sits between diverse and round-robin.
		"| impl-attack/first-available | dnsdist (note 1) | 1 | 2000 |",
		"| leader-loss/dos | ars | 1 | 1500 |",
		"| leader-loss/dos | paper-sdk (note 2) | 1 | 10000 |",
		"| 0 | ars = 15 % of this |",
		"Notes:\n\n1. impl-attack/first-available dnsdist: firstAvailable: no notion of implementation\n" +
			"2. leader-loss/dos paper-sdk: no switch: one management node \\| killed\n",
		"| exploit/vm-vm | dnsdist | 0 | not run: dnsdist has no exploit detection |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "ars (note") {
		t.Error("a row without a note is marked with one")
	}
}
