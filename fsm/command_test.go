package fsm

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// sampleCommands has one command of every type with every field set.
func sampleCommands() []Command {
	spec := paperSpec("dns")
	spec.Normalize()
	vcSpec := paperSpec("dns2")
	vcSpec.Replicas[0].VCenter = "vc-east"
	vcSpec.Replicas[1].VCenter = "vc-west"
	vcSpec.Normalize()
	return []Command{
		ServiceApply{Spec: spec, ExpectGeneration: 3},
		ServiceDelete{Name: "dns", ExpectGeneration: 4},
		Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonExploit, Mode: ModeMakeBeforeBreak,
			NextStandby: "win-unbound", ExpectGeneration: 5, At: 1700000000000000000},
		SwitchDone{Service: "dns", Generation: 6, DetectionMS: 250.5, SwitchMS: 12.25, TotalMS: 262.75, LostQueries: 3, At: 1700000000300000000},
		ReplicaRole{Service: "dns", Replica: "win-bind", Action: ActionRestored, ExpectGeneration: 6, Reason: "reverted to snapshot clean"},
		Alert{ID: "aa-1", Service: "dns", Replica: "win-bind", Kind: KindExploit, Source: "apparmor",
			Evidence: `apparmor="DENIED" operation="exec" <x>`, At: 1699999999900000000},
		Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonExploit, ExpectGeneration: 7, At: 1700000000500000000, AlertID: "aa-1"},
		ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionQuarantine, ExpectGeneration: 8, AlertID: "aa-2"},
		AlertOutcome{ID: "aa-3", Outcome: "ignored: already handled"},
		SwitchDone{Service: "dns", Generation: 9, DetectionMS: 1.5, SwitchMS: 40.25, TotalMS: 41.75, At: 1700000000900000000,
			OutageMS: ptr(0.0), ProbesSent: ptr(7), ProbesLost: ptr(0), ExposureMS: ptr(38.5)},
		// Added within version 1: a VM replica naming its vCenter.
		ServiceApply{Spec: vcSpec},
		// Level 3: a notification sink's cursor.
		NotifyCursor{Sink: "pager", Index: 41},
	}
}

func ptr[T any](v T) *T { return &v }

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		t.Run(string(c.Type()), func(t *testing.T) {
			data, err := Encode(7, c)
			if err != nil {
				t.Fatal(err)
			}
			env, back, err := Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if env != (Envelope{V: 1, Type: c.Type(), Term: 7}) {
				t.Errorf("envelope %+v", env)
			}
			if !reflect.DeepEqual(back, c) {
				t.Errorf("decoded %#v, want %#v", back, c)
			}
			// A pointer encodes the same.
			p := reflect.New(reflect.TypeOf(c))
			p.Elem().Set(reflect.ValueOf(c))
			data2, err := Encode(7, p.Interface().(Command))
			if err != nil || !bytes.Equal(data, data2) {
				t.Errorf("pointer encoding differs: %s vs %s (%v)", data, data2, err)
			}
		})
	}
}

// TestCommandWireGolden pins the wire format: entries written by this
// version must decode the same way forever (or get a new version).
func TestCommandWireGolden(t *testing.T) {
	var buf bytes.Buffer
	for _, c := range sampleCommands() {
		data, err := Encode(7, c)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(data)
		buf.WriteByte('\n')
	}
	golden(t, "commands.golden", buf.Bytes())

	// Every line of the golden file decodes to the sample command.
	raw, err := os.ReadFile(filepath.Join("testdata", "commands.golden"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	for i, c := range sampleCommands() {
		_, back, err := Decode([]byte(lines[i]))
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Errorf("golden line %d: %v %#v", i, err, back)
		}
	}
}

type bogusCommand struct{}

func (bogusCommand) Type() CommandType { return "bogus" }

// wrongBody claims to be a switch but has another body.
type wrongBody struct {
	Colour string `json:"colour"`
}

func (wrongBody) Type() CommandType { return CmdSwitch }

func TestEncodeErrors(t *testing.T) {
	var nilSwitch *Switch
	for _, c := range []struct {
		name string
		cmd  Command
		want error
	}{
		{"nil", nil, ErrInvalid},
		{"nil pointer", nilSwitch, ErrInvalid},
		{"unknown type", bogusCommand{}, ErrUnknownCommand},
		{"body that would not decode", wrongBody{Colour: "red"}, ErrInvalid},
		{"invalid utf-8 does not round-trip", Alert{ID: "\xff", Service: "dns", Replica: "a", Kind: KindDoS}, ErrInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Encode(1, c.cmd); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		want error
		msg  string
	}{
		{"empty", ``, ErrCorrupt, "envelope"},
		{"not json", `hello`, ErrCorrupt, "envelope"},
		{"array", `[1,2]`, ErrCorrupt, "envelope"},
		{"truncated", `{"v":1,"type":"alert","term":0,"body":{"id":"x"`, ErrCorrupt, "envelope"},
		{"trailing data", `{"v":1,"type":"alert","term":0,"body":{}} {}`, ErrCorrupt, "after"},
		{"unknown envelope field", `{"v":1,"type":"alert","term":0,"body":{},"x":1}`, ErrCorrupt, "x"},
		{"missing version", `{"type":"alert","term":0,"body":{}}`, ErrCorrupt, "version"},
		{"newer version", `{"v":2,"type":"alert","term":0,"body":{}}`, ErrUnknownCommand, "version 2"},
		{"negative version", `{"v":-1,"type":"alert","term":0,"body":{}}`, ErrUnknownCommand, "version -1"},
		{"missing type", `{"v":1,"term":0,"body":{}}`, ErrCorrupt, "type"},
		{"unknown type", `{"v":1,"type":"reboot","term":0,"body":{}}`, ErrUnknownCommand, `"reboot"`},
		{"missing body", `{"v":1,"type":"alert","term":0}`, ErrCorrupt, "body"},
		{"null body", `{"v":1,"type":"alert","term":0,"body":null}`, ErrCorrupt, "body"},
		{"string body", `{"v":1,"type":"alert","term":0,"body":"x"}`, ErrCorrupt, "body"},
		{"unknown body field", `{"v":1,"type":"switch","term":0,"body":{"service":"dns","force":true}}`, ErrCorrupt, "force"},
		{"unknown nested field", `{"v":1,"type":"service.apply","term":0,"body":{"spec":{"name":"dns","probe":{"port":53}}}}`, ErrCorrupt, "port"},
		{"wrong field type", `{"v":1,"type":"switch.done","term":0,"body":{"generation":"two"}}`, ErrCorrupt, "switch.done"},
		{"bad duration", `{"v":1,"type":"service.apply","term":0,"body":{"spec":{"probe":{"timeout":"soon"}}}}`, ErrCorrupt, "soon"},
		{"negative term", `{"v":1,"type":"alert","term":-1,"body":{}}`, ErrCorrupt, "envelope"},
		{"trailing data in body", `{"v":1,"type":"alert","term":0,"body":{} }x`, ErrCorrupt, "envelope"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, cmd, err := Decode([]byte(c.in))
			if !errors.Is(err, c.want) || cmd != nil {
				t.Fatalf("Decode = %v, %v; want %v", cmd, err, c.want)
			}
			if !Fatal(err) {
				t.Fatal("decode error not fatal")
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %q does not mention %q", err, c.msg)
			}
		})
	}
	// Header fields decoded before the failure are reported.
	env, _, _ := Decode([]byte(`{"v":1,"type":"reboot","term":9,"body":{}}`))
	if env != (Envelope{V: 1, Type: "reboot", Term: 9}) {
		t.Fatalf("envelope %+v", env)
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the golden file (if intended, rerun with -update):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
