package bench

import (
	"bytes"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleFile is a small but complete file: two profiles, all modes on a VM
// pair, container pairs not run, an impl-attack with outages and a failed
// trial. Its scenarios are deliberately out of order.
func sampleFile(t *testing.T) File {
	t.Helper()
	sum := func(name, mode, profile string, falseSwitches int, trials ...Trial) Result {
		t.Helper()
		r, err := Summarize(name, mode, profile, trials, falseSwitches)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	dt := func(down, det, sw time.Duration, lost int) Trial {
		return Trial{Downtime: down, Detection: det, Switch: sw, Lost: lost, Switched: true}
	}
	f := File{
		Machine: "lab-host-1 (8 vCPU)",
		Started: time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC),
		Go:      "go1.26.8",
		Command: "ars-bench -trials 3 -profile none,paper",
	}
	for _, p := range []struct {
		name  string
		scale time.Duration
	}{{ProfileNone, 1}, {ProfilePaper, 3}} {
		s := p.scale
		f.Scenarios = append(f.Scenarios,
			sum("dos/vm-vm", ModeDNSDist, p.name, 0, dt(900*s*ms1, 300*s*ms1, 600*s*ms1, 90), dt(1100*s*ms1, 350*s*ms1, 750*s*ms1, 110)),
			sum("dos/vm-vm", ModeARS, p.name, 0, dt(120*s*ms1, 40*s*ms1, 80*s*ms1, 3), dt(150*s*ms1, 50*s*ms1, 100*s*ms1, 5), dt(90*s*ms1, 30*s*ms1, 60*s*ms1, 2)),
			sum("dos/vm-vm", ModePaperSDK, p.name, 1, dt(600*s*ms1, 200*s*ms1, 400*s*ms1, 40), dt(700*s*ms1, 250*s*ms1, 450*s*ms1, 50)),
			sum("dos/vm-vm", ModePaperCLI, p.name, 0, dt(2000*s*ms1, 200*s*ms1, 1800*s*ms1, 200), Trial{Err: "govc: timeout | retry"}),
			sum("exploit/vm-vm", ModeARS, p.name, 0, dt(200*s*ms1, 100*s*ms1, 100*s*ms1, 7)),
			sum("exploit/vm-vm", ModePaperSDK, p.name, 0, dt(0, 0, 0, 0)),
			NotRun("dos/container-container", ModeARS, p.name, "no container replicas"),
			NotRun("dos/vm-container", ModeARS, p.name, "no container replicas"),
			sum("impl-attack/diverse", ModeARS, p.name, 0,
				Trial{Downtime: 50 * s * ms1, Outages: 1}, Trial{Downtime: 70 * s * ms1, Outages: 1}),
			sum("impl-attack/round-robin", ModeARS, p.name, 0,
				Trial{Downtime: 150 * s * ms1, Outages: 3}, Trial{Downtime: 210 * s * ms1, Outages: 3}),
			NotRun(RepeatedDoS, ModePaperSDK, p.name, "measured for ars only"),
		)
		rep, err := SummarizeRepeated(ModeARS, p.name, []RepeatedTrial{{Due: 3, FalseSwitches: 0, Attacks: []Attack{
			{Target: "bind9-win", To: "unbound-win", After: 50 * s * ms1, InTime: true, Detection: 40 * s * ms1, Switch: 10 * s * ms1,
				Outage: 110 * s * ms1, Lost: 3, Clean: []string{"unbound-win"}},
			{Target: "unbound-win", At: 5 * time.Second, To: "bind9-win", After: 30 * time.Second, Detection: 40 * s * ms1, Switch: 10 * s * ms1,
				Outage: 30 * time.Second, Lost: 6000, Clean: []string{"knot-lin", "pdns-lin"}},
		}}}, "the policy ars ships with")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range f.Scenarios {
			rep.RelateDoS(r) // only the ars dos/vm-vm of this profile counts
		}
		f.Scenarios = append(f.Scenarios, rep)
	}
	return f
}

func TestWriteReadRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bench", "results")
	f := sampleFile(t)
	if err := Write(dir, f); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{JSONFile, ChartFile, TableFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	got, err := Read(filepath.Join(dir, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	want := f
	want.Scenarios = sorted(f.Scenarios)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip differs:\ngot  %+v\nwant %+v", got, want)
	}

	// Writing what was read gives the same bytes.
	first, _ := os.ReadFile(filepath.Join(dir, JSONFile))
	if err := Write(dir, got); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(filepath.Join(dir, JSONFile))
	if !bytes.Equal(first, second) {
		t.Error("rewriting a read file changed latest.json")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("dir holds %d entries, want 3 (temporary files left?)", len(entries))
	}
}

func TestWriteJSONOrderAndShape(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, sampleFile(t)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	// Sorted by profile, then name, then mode order.
	order := []string{
		`"name": "dos/container-container"`,
		`"name": "dos/vm-vm",
      "mode": "ars"`,
		`"name": "dos/vm-vm",
      "mode": "paper-sdk"`,
		`"name": "dos/vm-vm",
      "mode": "paper-cli"`,
		`"name": "dos/vm-vm",
      "mode": "dnsdist"`,
		`"name": "exploit/vm-vm"`,
		`"name": "impl-attack/diverse"`,
		`"profile": "paper"`,
	}
	last := -1
	for _, o := range order {
		i := strings.Index(s, o)
		if i <= last {
			t.Fatalf("%q at %d, not after %d", o, i, last)
		}
		last = i
	}
	for _, want := range []string{
		`"started": "2026-03-14T09:26:53Z"`,
		`"downtime_ms": {`,
		`"p50": 120`,
		`"outages": {`,
		`"status": "not-run"`,
		`"errors": [`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("latest.json lacks %s", want)
		}
	}
	if !strings.HasSuffix(s, "}\n") {
		t.Error("latest.json does not end with a newline")
	}
}

func TestWriteEmptyFile(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, File{}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), "{\n  \"scenarios\": []\n}\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestWriteRejects(t *testing.T) {
	good := sampleFile(t).Scenarios[0]
	tests := []struct {
		name   string
		modify func(*Result)
		want   error
	}{
		{"unknown mode", func(r *Result) { r.Mode = "unbound" }, ErrUnknownMode},
		{"empty name", func(r *Result) { r.Name = "" }, ErrEmptyName},
		{"negative duration", func(r *Result) { r.Switch.Max = -0.1 }, ErrNegative},
		{"zero trials", func(r *Result) { r.Trials = 0 }, ErrNoTrials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			tt.modify(&r)
			dir := filepath.Join(t.TempDir(), "out")
			err := Write(dir, File{Scenarios: []Result{good, r}})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Write = %v, want %v", err, tt.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("Write created %s despite the error", dir)
			}
		})
	}
	t.Run("duplicate", func(t *testing.T) {
		err := Write(t.TempDir(), File{Scenarios: []Result{good, good}})
		if !errors.Is(err, ErrDuplicate) {
			t.Fatalf("Write = %v, want %v", err, ErrDuplicate)
		}
	})
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"scenarios": [{"name": "dos/vm-vm", "mode": "bind", "profile": "none", "trials": 1}]}`), 0o644)
	if _, err := Read(bad); !errors.Is(err, ErrUnknownMode) {
		t.Errorf("unknown mode: %v", err)
	}
	garbled := filepath.Join(dir, "garbled.json")
	os.WriteFile(garbled, []byte(`{"scenarios": [`), 0o644)
	if _, err := Read(garbled); err == nil || !strings.Contains(err.Error(), "decode") {
		t.Errorf("garbled: %v", err)
	}
}

func TestChart(t *testing.T) {
	data, err := Chart(sampleFile(t))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	// Two profiles: two 1200×600 panels.
	if b := img.Bounds(); b.Dx() != chartWidth || b.Dy() != 2*chartPanelHeight {
		t.Errorf("size %v, want %dx%d", b, chartWidth, 2*chartPanelHeight)
	}
	if len(data) < 20_000 {
		t.Errorf("PNG is only %d bytes", len(data))
	}
}

func TestChartWithoutResults(t *testing.T) {
	for name, f := range map[string]File{
		"only not run": {Scenarios: []Result{
			NotRun("dos/vm-container", ModeARS, ProfileNone, "no container replicas"),
			NotRun("dos/vm-container", ModeDNSDist, ProfileNone, "no container replicas"),
		}},
		"empty": {},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := Write(dir, f); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(dir, ChartFile))
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if b := img.Bounds(); b.Dx() != chartWidth || b.Dy() != chartPanelHeight {
				t.Errorf("size %v, want %dx%d", b, chartWidth, chartPanelHeight)
			}
			if len(data) < 2_000 {
				t.Errorf("PNG is only %d bytes", len(data))
			}
		})
	}
}
