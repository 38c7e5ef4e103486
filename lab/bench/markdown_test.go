package bench

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
