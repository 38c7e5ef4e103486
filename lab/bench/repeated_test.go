package bench

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// repeatedTrials are two trials as today's damping shapes them, and a
// failed one: attacks switched in time, one held with a clean standby
// running (late), one not switched with nowhere to go.
func repeatedTrials() []RepeatedTrial {
	return []RepeatedTrial{
		{Due: 12, FalseSwitches: 1, Attacks: []Attack{
			{Target: "a", To: "b", After: 270 * ms1, InTime: true, Detection: 250 * ms1, Switch: 20 * ms1, Outage: 300 * ms1, Lost: 60, Clean: []string{"b"}},
			{Target: "b", At: 5 * time.Second, To: "c", After: 35 * time.Second, Detection: 250 * ms1, Switch: 30 * ms1, Outage: 35000 * ms1, Lost: 7000, Clean: []string{"c"}},
		}},
		{Err: "lab: no node answered"},
		{Due: 12, Attacks: []Attack{
			{Target: "c", To: "a", After: 280 * ms1, InTime: true, Detection: 260 * ms1, Switch: 20 * ms1, Outage: 400 * ms1, Lost: 80, Clean: []string{"a"}},
			{Target: "a", At: 5 * time.Second, Outage: 900 * ms1, Lost: 180},
		}},
	}
}

func TestSummarizeRepeated(t *testing.T) {
	got, err := SummarizeRepeated(ModeARS, ProfileNone, repeatedTrials(), "shipped policy")
	if err != nil {
		t.Fatal(err)
	}
	want := Result{
		Name: RepeatedDoS, Mode: ModeARS, Profile: ProfileNone, Trials: 2,
		// Per attack: 300, 35000, 400, 900 ms.
		Downtime:      Dist{Mean: 9150, P50: 650, Max: 35000},
		Detection:     Stat{Mean: 253.3, Max: 260},
		Switch:        Stat{Mean: 23.3, Max: 30},
		Lost:          Stat{Mean: 1830, Max: 7000},
		FalseSwitches: 1,
		Errors:        []string{"trial 2: lab: no node answered"},
		Note:          "shipped policy",
		Repeated: &Repeated{Due: 24, Attacks: 4, Switched: 2,
			// The late one had a clean standby running; the last had none.
			NotSwitchedClean: 1,
			Outage:           Stat{Mean: 9150, Max: 35000},
			PerAttack: []AttackRecord{
				{Trial: 1, Target: "a", To: "b", AfterMS: 270, InTime: true, OutageMS: 300, Lost: 60, Clean: []string{"b"}},
				{Trial: 1, Target: "b", AtMS: 5000, To: "c", AfterMS: 35000, OutageMS: 35000, Lost: 7000, Clean: []string{"c"}},
				{Trial: 3, Target: "c", To: "a", AfterMS: 280, InTime: true, OutageMS: 400, Lost: 80, Clean: []string{"a"}},
				{Trial: 3, Target: "a", AtMS: 5000, OutageMS: 900, Lost: 180},
			}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\n     %+v\nwant %+v\n     %+v", got, *got.Repeated, want, *want.Repeated)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestSummarizeRepeatedNoSwitch(t *testing.T) {
	// No attack was answered: detection and switch stay 0, not NaN.
	r, err := SummarizeRepeated(ModeARS, ProfileNone, []RepeatedTrial{{Due: 12, Attacks: []Attack{{Target: "a", Outage: time.Minute, Clean: []string{"b"}}}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Detection != (Stat{}) || r.Switch != (Stat{}) || r.Repeated.Switched != 0 || r.Repeated.NotSwitchedClean != 1 {
		t.Errorf("got %+v, %+v", r, *r.Repeated)
	}
	if err := r.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestSummarizeRepeatedErrors(t *testing.T) {
	one := func(a Attack) []RepeatedTrial { return []RepeatedTrial{{Due: 12, Attacks: []Attack{a}}} }
	tests := []struct {
		name   string
		mode   string
		trials []RepeatedTrial
		want   error
		text   string
	}{
		{"unknown mode", "bind", one(Attack{Target: "a"}), ErrUnknownMode, "unknown mode"},
		{"no trials", ModeARS, nil, ErrNoTrials, "0 trials"},
		{"all failed", ModeARS, []RepeatedTrial{{Err: "x"}}, ErrNoTrials, "1 failed"},
		{"no attack", ModeARS, []RepeatedTrial{{Due: 12}}, ErrInvalid, "made no attack"},
		{"more attacks than due", ModeARS, []RepeatedTrial{{Due: 0, Attacks: []Attack{{Target: "a"}}}}, ErrInvalid, "1 attacks of 0 due"},
		{"negative outage", ModeARS, one(Attack{Target: "a", Outage: -ms1}), ErrNegative, "attack 1: outage"},
		{"negative lost", ModeARS, one(Attack{Target: "a", Lost: -1}), ErrNegative, "lost queries -1"},
		{"negative false switches", ModeARS, []RepeatedTrial{{Due: 1, FalseSwitches: -1, Attacks: []Attack{{Target: "a"}}}}, ErrNegative, "false switches -1"},
		{"no target", ModeARS, one(Attack{}), ErrInvalid, `target ""`},
		{"in time to nowhere", ModeARS, one(Attack{Target: "a", InTime: true}), ErrInvalid, "switched in time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SummarizeRepeated(tt.mode, ProfileNone, tt.trials, "")
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("err = %v, want %v containing %q", err, tt.want, tt.text)
			}
		})
	}
}

func TestRelateDoS(t *testing.T) {
	rep, err := SummarizeRepeated(ModeARS, ProfileNone, repeatedTrials(), "")
	if err != nil {
		t.Fatal(err)
	}
	dos := Result{Name: "dos/vm-vm", Mode: ModeARS, Profile: ProfileNone, Trials: 10, Downtime: Dist{Mean: 300, P50: 300, Max: 350}}
	for _, tt := range []struct {
		name string
		dos  Result
		want float64 // 0: left unset
	}{
		{"same run", dos, 100}, // 35000 / 350
		{"other profile", func() Result { d := dos; d.Profile = ProfilePaper; return d }(), 0},
		{"other mode", func() Result { d := dos; d.Mode = ModeDNSDist; return d }(), 0},
		{"other scenario", func() Result { d := dos; d.Name = "dos/vm-container"; return d }(), 0},
		{"dos did not run", NotRun("dos/vm-vm", ModeARS, ProfileNone, "x"), 0},
		{"dos max 0", func() Result { d := dos; d.Downtime = Dist{}; return d }(), 0},
	} {
		r := rep
		p := *rep.Repeated
		r.Repeated = &p
		r.RelateDoS(tt.dos)
		switch {
		case tt.want == 0 && r.Repeated.VsDoSMax != nil:
			t.Errorf("%s: vs dos max = %v, want unset", tt.name, *r.Repeated.VsDoSMax)
		case tt.want != 0 && (r.Repeated.VsDoSMax == nil || *r.Repeated.VsDoSMax != tt.want):
			t.Errorf("%s: vs dos max = %v, want %v", tt.name, r.Repeated.VsDoSMax, tt.want)
		}
	}
	// Rounded to two decimals: 400 / 300 = 1.333...
	small, err := SummarizeRepeated(ModeARS, ProfileNone, []RepeatedTrial{{Due: 1, Attacks: []Attack{{Target: "a", Outage: 400 * ms1}}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	dos.Downtime.Max = 300
	small.RelateDoS(dos)
	if small.Repeated.VsDoSMax == nil || *small.Repeated.VsDoSMax != 1.33 {
		t.Errorf("vs dos max = %v, want 1.33", small.Repeated.VsDoSMax)
	}
}

func TestValidateRepeated(t *testing.T) {
	good, err := SummarizeRepeated(ModeARS, ProfileNone, repeatedTrials(), "note")
	if err != nil {
		t.Fatal(err)
	}
	neg := -1.0
	tests := []struct {
		name   string
		modify func(*Result, *Repeated)
		want   error
	}{
		{"good", func(*Result, *Repeated) {}, nil},
		{"on another scenario", func(r *Result, _ *Repeated) { r.Name = "dos/vm-vm" }, ErrInvalid},
		{"attacks above due", func(_ *Result, p *Repeated) { p.Due = 3 }, ErrInvalid},
		{"fewer attacks than trials", func(r *Result, _ *Repeated) { r.Trials = 5 }, ErrInvalid},
		{"switched above attacks", func(_ *Result, p *Repeated) { p.Switched = 4 }, ErrInvalid},
		{"records missing", func(_ *Result, p *Repeated) { p.PerAttack = p.PerAttack[:1] }, ErrInvalid},
		{"outage mean above max", func(_ *Result, p *Repeated) { p.Outage.Mean = 40000 }, ErrInvalid},
		{"negative ratio", func(_ *Result, p *Repeated) { p.VsDoSMax = &neg }, ErrInvalid},
		{"not run with a summary", func(r *Result, p *Repeated) {
			*r = NotRun(RepeatedDoS, ModeARS, ProfileNone, "x")
			r.Repeated = p
		}, ErrInvalid},
		{"not run with a note", func(r *Result, _ *Repeated) {
			*r = NotRun(RepeatedDoS, ModeARS, ProfileNone, "x")
			r.Note = "n"
		}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			p := *good.Repeated
			p.PerAttack = append([]AttackRecord(nil), p.PerAttack...)
			r.Repeated = &p
			tt.modify(&r, &p)
			if err := r.Validate(); !errors.Is(err, tt.want) {
				t.Errorf("Validate = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRepeatedJSON(t *testing.T) {
	r, err := SummarizeRepeated(ModeARS, ProfileNone, repeatedTrials(), "shipped policy")
	if err != nil {
		t.Fatal(err)
	}
	r.RelateDoS(Result{Name: "dos/vm-vm", Mode: ModeARS, Profile: ProfileNone, Trials: 1, Downtime: Dist{Mean: 350, P50: 350, Max: 350}})
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"note":"shipped policy"`, `"due":24`, `"attacks":4`, `"switched":2`,
		`"not_switched_clean":1`, `"outage_ms":{"mean":9150,"max":35000}`, `"vs_dos_max":100`,
		`{"trial":1,"target":"b","at_ms":5000,"to":"c","after_ms":35000,"in_time":false,"outage_ms":35000,"lost_queries":7000,"clean":["c"]}`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("JSON lacks %s:\n%s", want, data)
		}
	}
	var back Result
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip differs:\ngot  %+v\nwant %+v", back, r)
	}
}

func TestMarkdownRepeated(t *testing.T) {
	r, err := SummarizeRepeated(ModeARS, ProfileNone, repeatedTrials(), "policy as shipped | max_switches 5")
	if err != nil {
		t.Fatal(err)
	}
	md := Markdown(File{Scenarios: []Result{r}})
	for _, want := range []string{
		"| repeated-dos | ars (note 1) | 2 (+1 failed) | 9150 | 650 | 35000 |",
		`1. repeated-dos ars: policy as shipped \| max_switches 5`,
		"### repeated-dos, ars",
		"| 2 (+1 failed) | 4 (24) | 2 | 1 | 9150 | 35000 | – (dos/vm-vm did not run) |",
		"| 1 | 5 | b | c | 35000 | no | 35000 | 7000 | c |",
		"| 3 | 5 | a | – |  | no | 900 | 180 | none |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}
