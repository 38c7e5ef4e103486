package fsm

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func FuzzDecode(f *testing.F) {
	if raw, err := os.ReadFile(filepath.Join("testdata", "commands.golden")); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			f.Add([]byte(line))
		}
	}
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"v":1}`, `{"v":1,"type":"alert","term":0,"body":{}}`,
		`{"v":1,"type":"service.apply","term":3,"body":{"spec":{"probe":{"timeout":12345}}}}`,
		`{"v":2,"type":"switch","term":1,"body":{}}`, `{"v":1,"type":"x","term":1,"body":{}}`,
		`{"v":1,"type":"switch.done","term":1,"body":{"detection_ms":1e308,"lost_queries":-3}}`,
		`{"V":1,"TYPE":"alert","Term":0,"Body":{"ID":"x"}}`,
		"{\"v\":1,\"type\":\"alert\",\"term\":0,\"body\":{\"id\":\"\xff\xfe\"}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, cmd, err := Decode(data)
		if err != nil {
			if cmd != nil {
				t.Fatal("command returned with an error")
			}
			if !Fatal(err) {
				t.Fatalf("decode error is not fatal: %v", err)
			}
			return
		}
		if cmd == nil || env.V != CommandVersion || env.Type != cmd.Type() {
			t.Fatalf("envelope %+v, command %T", env, cmd)
		}
		// Whatever decodes re-encodes to something that decodes to the same.
		again, err := Encode(env.Term, cmd)
		if err != nil {
			t.Fatalf("re-encode %#v: %v", cmd, err)
		}
		env2, cmd2, err := Decode(again)
		if err != nil || env2 != env || !reflect.DeepEqual(cmd, cmd2) {
			t.Fatalf("round trip: %v\n%#v\n%#v", err, cmd, cmd2)
		}
		// Applying it to a populated machine never panics and keeps the invariants.
		m := runScript(t)
		_, _ = m.Apply(m.Index()+1, m.Term(), data)
		checkAll(t, m)
	})
}

// fuzzPool is the replicas a fuzzed spec draws from.
var fuzzPool = []ReplicaSpec{
	replica("r0", "bind9", "windows", "vm"),
	replica("r1", "unbound", "windows", "vm"),
	replica("r2", "bind9", "linux", "container"),
	replica("r3", "unbound", "linux", "container"),
	replica("r4", "knot-resolver", "linux", "vm"),
	replica("r5", "pdns-recursor", "linux", "container"),
}

// FuzzApply drives the machine with a sequence of commands built from the
// fuzz input (4 bytes per command) and checks, after every entry: no panic,
// invariants hold, a rejected command changes nothing, a replica that was
// quarantined or recovering is never active or standby, nor dropped, before a
// "restored"; and at the end that the snapshot round-trips byte for byte and
// a second machine fed the same log ends in the same bytes.
func FuzzApply(f *testing.F) {
	f.Add([]byte{0, 0, 1, 1, 1, 2, 0, 0, 2, 0, 1, 0, 0, 3, 4, 0})
	f.Add([]byte{4, 63, 0, 0, 0, 1, 2, 0, 2, 1, 0, 9, 2, 1, 1, 9, 0, 2, 3, 5, 1, 0, 0, 0})
	f.Add([]byte{2, 3, 2, 0, 2, 3, 3, 0, 0, 0, 0, 4, 5, 0, 0, 0, 4, 1, 0, 0, 6, 0, 0, 0})
	f.Add(bytes.Repeat([]byte{0, 0, 0, 2, 1, 0, 0, 0}, 20))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4*96 {
			data = data[:4*96]
		}
		m := New()
		var log [][]byte
		var terms []uint64
		term := uint64(1)
		apply := func(entryTerm uint64, b []byte) (Result, error) {
			log = append(log, b)
			terms = append(terms, entryTerm)
			return m.Apply(uint64(len(log)), entryTerm, b)
		}
		base := ServiceSpec{Name: "dns", Address: "192.0.2.53:53", Replicas: fuzzPool[:4],
			Probe: ProbeSpec{Query: "www.lab.internal."}}
		if _, err := apply(term, mustEncode(t, term, ServiceApply{Spec: base})); err != nil {
			t.Fatal(err)
		}
		dirty := map[string]bool{}
		gen := func() uint64 {
			s, _ := m.Service("dns")
			return s.Generation
		}
		pick := func(b byte) string {
			if b%8 == 7 {
				return ""
			}
			return fuzzPool[int(b)%len(fuzzPool)].Name
		}
		expect := func(b byte) uint64 {
			switch b % 4 {
			case 0:
				return 0
			case 1:
				if g := gen(); g > 1 {
					return g - 1
				}
			}
			return gen()
		}
		for len(data) >= 4 {
			op, x, y, z := data[0], data[1], data[2], data[3]
			data = data[4:]
			var cmd Command
			cmdTerm := term
			switch op % 8 {
			case 0:
				cmd = Switch{Service: "dns", From: pick(x), To: pick(y), Reason: []string{ReasonDoS, ReasonExploit, ReasonManual}[z%3],
					NextStandby: pick(z / 3), ExpectGeneration: expect(z / 24), At: int64(x)}
			case 1:
				g := gen()
				if x%3 == 0 {
					g = uint64(x)
				}
				d := SwitchDone{Service: "dns", Generation: g, TotalMS: float64(y), LostQueries: int(z % 5)}
				if z%2 == 1 {
					d.OutageMS, d.ProbesSent, d.ProbesLost = ptr(float64(x)), ptr(int(y)), ptr(int(z%7))
				}
				if z%3 == 1 {
					d.ExposureMS = ptr(float64(y) - 3)
				}
				cmd = d
			case 2:
				cmd = ReplicaRole{Service: "dns", Replica: pick(x), Action: []string{ActionQuarantine, ActionRestored, ActionMaintenance, ActionRelease}[y%4],
					ExpectGeneration: expect(z)}
			case 3:
				cmd = Alert{ID: string(rune('a' + x%16)), Service: []string{"dns", "nope"}[y%2], Replica: pick(z), Kind: []string{KindDoS, KindExploit}[z%2]}
			case 4:
				spec := base.Clone()
				spec.Replicas = nil
				for i, r := range fuzzPool {
					if x&(1<<i) != 0 {
						spec.Replicas = append(spec.Replicas, r)
					}
				}
				if y%5 == 0 && len(spec.Replicas) > 0 {
					spec.Replicas[0].Impl = "knot-resolver"
				}
				if y%7 == 0 {
					spec.Policy.Rotation = RotationRoundRobin
				}
				cmd = ServiceApply{Spec: spec, ExpectGeneration: expect(z)}
			case 5:
				cmd = ServiceDelete{Name: "dns", ExpectGeneration: expect(z)}
			case 6:
				cmd = ReplicaRole{Service: "dns", Replica: pick(x), Action: ActionQuarantine}
				cmdTerm = term + 1 // stale: issued for another term
			case 7:
				if x%4 != 3 {
					term++ // a new leader
					continue
				}
				cmd = NotifyCursor{Sink: []string{"pager", "hook", "Bad"}[y%3], Index: uint64(z)}
			}
			prev, _ := m.Service("dns")
			prevCursor := map[string]uint64{"pager": m.NotifyCursor("pager"), "hook": m.NotifyCursor("hook")}
			before := domainState(t, m)
			res, err := apply(term, mustEncode(t, cmdTerm, cmd))
			if Fatal(err) {
				t.Fatalf("well-formed command fatal: %v", err)
			}
			if err != nil {
				if res != (Result{Index: uint64(len(log))}) || domainState(t, m) != before {
					t.Fatalf("rejected %#v (%v) changed state or result %+v", cmd, err, res)
				}
				if Code(err) == "" {
					t.Fatalf("error without code: %v", err)
				}
				continue
			}
			checkAll(t, m)
			if nc, ok := cmd.(NotifyCursor); ok {
				if got, want := m.NotifyCursor(nc.Sink), max(prevCursor[nc.Sink], nc.Index); got != want {
					t.Fatalf("cursor of %s is %d after %+v from %d, want %d", nc.Sink, got, nc, prevCursor[nc.Sink], want)
				}
				continue
			}
			s, ok := m.Service("dns")
			if !ok {
				for _, d := range dirty {
					if d {
						t.Fatal("service with a dirty replica deleted")
					}
				}
				dirty = map[string]bool{}
				continue
			}
			if prev.Generation > s.Generation {
				t.Fatalf("generation went back %d -> %d", prev.Generation, s.Generation)
			}
			restored := ""
			if rr, ok := cmd.(ReplicaRole); ok && rr.Action == ActionRestored {
				restored = rr.Replica
			}
			seen := map[string]bool{}
			for _, r := range s.Replicas {
				seen[r.Name] = true
				if r.Name == restored {
					dirty[r.Name] = false
				}
				if dirty[r.Name] && (r.Role == RoleActive || r.Role == RoleStandby) {
					t.Fatalf("invariant 4: %q was attacked and is %s without restore (%#v)", r.Name, r.Role, cmd)
				}
				if r.Role == RoleQuarantined || r.Role == RoleRecovering {
					dirty[r.Name] = true
				}
			}
			for name, d := range dirty {
				if d && !seen[name] {
					t.Fatalf("dirty replica %q dropped from the spec", name)
				}
			}
		}
		snap := snapshot(t, m)
		r := New()
		if err := r.Restore(snap); err != nil {
			t.Fatalf("restore own snapshot: %v", err)
		}
		if !bytes.Equal(snap, snapshot(t, r)) {
			t.Fatal("snapshot round trip differs")
		}
		m2 := New()
		for i, b := range log {
			_, _ = m2.Apply(uint64(i+1), terms[i], b)
		}
		if !bytes.Equal(snap, snapshot(t, m2)) {
			t.Fatal("same log, different state")
		}
	})
}
