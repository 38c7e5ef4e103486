package bench

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const ms1 = time.Millisecond

func downtimes(ds ...time.Duration) []Trial {
	ts := make([]Trial, len(ds))
	for i, d := range ds {
		ts[i] = Trial{Downtime: d}
	}
	return ts
}

func TestSummarizeDowntime(t *testing.T) {
	tests := []struct {
		name   string
		trials []Trial
		want   Dist
	}{
		{"one trial", downtimes(42 * ms1), Dist{Mean: 42, P50: 42, Max: 42}},
		{"odd count", downtimes(30*ms1, 10*ms1, 20*ms1), Dist{Mean: 20, P50: 20, Max: 30}},
		// Even count: p50 is the mean of the two middle trials (20 and 30).
		{"even count", downtimes(40*ms1, 10*ms1, 30*ms1, 20*ms1), Dist{Mean: 25, P50: 25, Max: 40}},
		{"even count, skewed", downtimes(1*ms1, 2*ms1, 4*ms1, 100*ms1), Dist{Mean: 26.8, P50: 3, Max: 100}},
		// Rounding to 0.1 ms, half away from zero, after aggregation: the
		// mean and p50 are 1.24 ms, the max 1.26 ms.
		{"rounding", downtimes(1260*time.Microsecond, 1220*time.Microsecond), Dist{Mean: 1.2, P50: 1.2, Max: 1.3}},
		{"rounding half up", downtimes(1250 * time.Microsecond), Dist{Mean: 1.3, P50: 1.3, Max: 1.3}},
		{"rounding large", downtimes(12345678*time.Microsecond, 0), Dist{Mean: 6172.8, P50: 6172.8, Max: 12345.7}},
		{"sub-0.05 ms rounds to 0", downtimes(40 * time.Microsecond), Dist{}},
		{"all zero", downtimes(0, 0, 0), Dist{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Summarize("dos/vm-vm", ModeARS, ProfileNone, tt.trials, 0)
			if err != nil {
				t.Fatal(err)
			}
			if r.Downtime != tt.want {
				t.Errorf("downtime = %+v, want %+v", r.Downtime, tt.want)
			}
			if r.Trials != len(tt.trials) {
				t.Errorf("trials = %d, want %d", r.Trials, len(tt.trials))
			}
			if err := r.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestSummarizeAllFields(t *testing.T) {
	trials := []Trial{
		{Downtime: 100 * ms1, Detection: 20 * ms1, Switch: 80 * ms1, Lost: 5, Switched: true, Outages: 1},
		{Downtime: 300 * ms1, Detection: 40 * ms1, Switch: 260 * ms1, Lost: 8, Switched: true, Outages: 3},
		{Err: "replica did not come back"},
		{Downtime: 200 * ms1, Detection: 30 * ms1, Switch: 170 * ms1, Lost: 6, Outages: 2},
	}
	got, err := Summarize("impl-attack/round-robin", ModePaperSDK, ProfilePaper, trials, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := Result{
		Name: "impl-attack/round-robin", Mode: ModePaperSDK, Profile: ProfilePaper, Trials: 3,
		Downtime:      Dist{Mean: 200, P50: 200, Max: 300},
		Detection:     Stat{Mean: 30, Max: 40},
		Switch:        Stat{Mean: 170, Max: 260},
		Lost:          Stat{Mean: 6.3, Max: 8},
		FalseSwitches: 2,
		Outages:       &Stat{Mean: 2, Max: 3},
		Switched:      2,
		Errors:        []string{"trial 3: replica did not come back"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestSummarizeExposure: the exposure is over the successful trials
// that measured it, and absent when none did.
func TestSummarizeExposure(t *testing.T) {
	d := func(v time.Duration) *time.Duration { return &v }
	trials := []Trial{
		{Downtime: ms1, Exposure: d(40 * ms1)},
		{Downtime: ms1},
		{Err: "no switch", Exposure: d(900 * ms1)},
		{Downtime: ms1, Exposure: d(21 * ms1)},
	}
	r, err := Summarize("exploit/vm-vm", ModeARSAddress, ProfilePaper, trials, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Exposure == nil || *r.Exposure != (Stat{Mean: 30.5, Max: 40}) || r.ExposureTrials != 2 || r.Trials != 3 {
		t.Fatalf("exposure %+v over %d of %d trials; want mean 30.5, max 40 over 2 of 3", r.Exposure, r.ExposureTrials, r.Trials)
	}
	md := Markdown(File{Scenarios: []Result{r}})
	if !strings.Contains(md, "| exposure mean | exposure max |") || !strings.Contains(md, "| 30.5 (2 of 3) | 40 |") {
		t.Errorf("table does not show the exposure over the trials that measured it:\n%s", md)
	}
	r, err = Summarize("exploit/vm-vm", ModeARS, ProfilePaper, downtimes(ms1), 0)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(r); r.Exposure != nil || strings.Contains(string(b), "exposure") {
		t.Errorf("an exposure no trial measured is shown: %s", b)
	}
	if md := Markdown(File{Scenarios: []Result{r}}); strings.Contains(md, "exposure mean") {
		t.Errorf("an exposure column with nothing measured:\n%s", md)
	}
	if _, err := Summarize("exploit/vm-vm", ModeARS, ProfilePaper, []Trial{{Exposure: d(-ms1)}}, 0); !errors.Is(err, ErrNegative) {
		t.Errorf("negative exposure: %v", err)
	}
}

func TestSummarizeNoOutages(t *testing.T) {
	r, err := Summarize("dos/vm-vm", ModeARS, ProfileNone, downtimes(ms1), 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Outages != nil {
		t.Errorf("outages = %+v, want nil when no trial counts outages", r.Outages)
	}
}

func TestSummarizeErrors(t *testing.T) {
	ok := downtimes(ms1)
	tests := []struct {
		name                 string
		scenario, mode, prof string
		trials               []Trial
		falseSwitches        int
		want                 error
		wantText             string
	}{
		{"empty name", "", ModeARS, ProfileNone, ok, 0, ErrEmptyName, "empty scenario name"},
		{"empty profile", "dos/vm-vm", ModeARS, "", ok, 0, ErrEmptyProfile, `use "none"`},
		{"unknown mode", "dos/vm-vm", "bind", ProfileNone, ok, 0, ErrUnknownMode, `unknown mode "bind"`},
		{"mode is case sensitive", "dos/vm-vm", "ARS", ProfileNone, ok, 0, ErrUnknownMode, "want one of"},
		{"negative downtime", "dos/vm-vm", ModeARS, ProfileNone, []Trial{{}, {Downtime: -ms1}}, 0, ErrNegative, "trial 2: downtime -1ms"},
		{"negative detection", "dos/vm-vm", ModeARS, ProfileNone, []Trial{{Detection: -ms1}}, 0, ErrNegative, "detection -1ms"},
		{"negative switch", "dos/vm-vm", ModeARS, ProfileNone, []Trial{{Switch: -ms1}}, 0, ErrNegative, "switch -1ms"},
		{"negative lost", "dos/vm-vm", ModeARS, ProfileNone, []Trial{{Lost: -1}}, 0, ErrNegative, "lost queries -1"},
		{"negative outages", "dos/vm-vm", ModeARS, ProfileNone, []Trial{{Outages: -1}}, 0, ErrNegative, "outages -1"},
		{"negative false switches", "dos/vm-vm", ModeARS, ProfileNone, ok, -1, ErrNegative, "false switches -1"},
		{"zero trials", "dos/vm-vm", ModeARS, ProfileNone, nil, 0, ErrNoTrials, "0 trials"},
		{"all trials failed", "dos/vm-vm", ModeARS, ProfileNone, []Trial{{Err: "x"}, {Err: "y"}}, 0, ErrNoTrials, "2 trials, 2 failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Summarize(tt.scenario, tt.mode, tt.prof, tt.trials, tt.falseSwitches)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("err = %q, want it to contain %q", err, tt.wantText)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good := Result{Name: "dos/vm-vm", Mode: ModeARS, Profile: ProfileNone, Trials: 2,
		Downtime: Dist{Mean: 2, P50: 2, Max: 3}}
	tests := []struct {
		name   string
		modify func(*Result)
		want   error
	}{
		{"good", func(*Result) {}, nil},
		{"not run", func(r *Result) { *r = NotRun("dos/vm-container", ModeDNSDist, ProfileNone, "no container replicas") }, nil},
		{"zero trials", func(r *Result) { r.Trials = 0 }, ErrNoTrials},
		{"unknown mode", func(r *Result) { r.Mode = "" }, ErrUnknownMode},
		{"negative mean", func(r *Result) { r.Detection.Mean = -1 }, ErrNegative},
		{"mean above max", func(r *Result) { r.Downtime.Mean = 4 }, ErrInvalid},
		{"p50 above max", func(r *Result) { r.Downtime.P50 = 4 }, ErrInvalid},
		{"switched above trials", func(r *Result) { r.Switched = 3 }, ErrInvalid},
		{"unknown status", func(r *Result) { r.Status = "skipped" }, ErrInvalid},
		{"reason on a run", func(r *Result) { r.Reason = "x" }, ErrInvalid},
		{"not run with trials", func(r *Result) { r.Status, r.Reason = StatusNotRun, "x" }, ErrInvalid},
		{"not run without reason", func(r *Result) { *r = NotRun("dos/vm-vm", ModeARS, ProfileNone, "") }, ErrInvalid},
		{"not run with numbers", func(r *Result) {
			*r = NotRun("dos/vm-vm", ModeARS, ProfileNone, "x")
			r.Lost.Max = 1
		}, ErrInvalid},
		{"note on a run", func(r *Result) { r.Note = "no switch" }, nil},
		{"not run with a note", func(r *Result) {
			*r = NotRun("dos/vm-vm", ModeARS, ProfileNone, "x")
			r.Note = "y"
		}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			tt.modify(&r)
			if err := r.Validate(); !errors.Is(err, tt.want) {
				t.Errorf("Validate = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNotRunJSON(t *testing.T) {
	r := NotRun("dos/vm-container", ModeARS, ProfileNone, "no container replicas")
	got, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"dos/vm-container","mode":"ars","profile":"none","trials":0,"status":"not-run","reason":"no container replicas"}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	var back Result
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip: got %+v, want %+v", back, r)
	}
}

func TestNoteJSONRoundTrip(t *testing.T) {
	r, err := Summarize("leader-loss/dos", ModePaperSDK, ProfileNone, downtimes(10*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	r.Note = "no switch"
	got, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), `"note":"no switch"`) {
		t.Errorf("no note in %s", got)
	}
	var back Result
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip: got %+v, want %+v", back, r)
	}
}

func TestRunJSONHasSchemaFields(t *testing.T) {
	r, err := Summarize("dos/vm-vm", ModeARS, ProfileNone, downtimes(0), 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	// All-zero numbers are still present: zero downtime is a result.
	want := `{"name":"dos/vm-vm","mode":"ars","profile":"none","trials":1,` +
		`"downtime_ms":{"mean":0,"p50":0,"max":0},"detection_ms":{"mean":0,"max":0},` +
		`"switch_ms":{"mean":0,"max":0},"lost_queries":{"mean":0,"max":0},"false_switches":0}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestSortedModeOrder(t *testing.T) {
	in := []Result{
		{Profile: "paper", Name: "dos/vm-vm", Mode: ModeARS},
		{Profile: "none", Name: "exploit/vm-vm", Mode: ModeARS},
		{Profile: "none", Name: "dos/vm-vm", Mode: ModeDNSDist},
		{Profile: "none", Name: "dos/vm-vm", Mode: ModePaperCLI},
		{Profile: "none", Name: "dos/vm-vm", Mode: ModeARS},
		{Profile: "none", Name: "dos/vm-vm", Mode: ModePaperSDK},
	}
	var got []string
	for _, r := range sorted(in) {
		got = append(got, r.Profile+" "+r.Name+" "+r.Mode)
	}
	want := []string{
		"none dos/vm-vm ars",
		"none dos/vm-vm paper-sdk",
		"none dos/vm-vm paper-cli",
		"none dos/vm-vm dnsdist",
		"none exploit/vm-vm ars",
		"paper dos/vm-vm ars",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if in[0].Profile != "paper" {
		t.Error("sorted modified its argument")
	}
}

func TestScenarios(t *testing.T) {
	got := Scenarios()
	if len(got) != 11 {
		t.Fatalf("Scenarios() = %q, want 11 names", got)
	}
	for _, n := range []string{"dos/container-container", "exploit/vm-container", "leader-loss/dos", "impl-attack/diverse", "impl-attack/round-robin", "impl-attack/first-available", "repeated-dos"} {
		found := false
		for _, g := range got {
			found = found || g == n
		}
		if !found {
			t.Errorf("Scenarios() lacks %q", n)
		}
	}
}
