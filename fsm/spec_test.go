package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestNormalizeDefaults(t *testing.T) {
	s := ServiceSpec{
		Name:    "dns",
		Address: "192.0.2.53:053",
		Replicas: []ReplicaSpec{
			{Name: "a", Impl: " BIND9", OS: "Linux", Platform: "VM"},
			{Name: "b", Impl: "unbound", OS: "linux", Platform: "container"},
		},
		Probe: ProbeSpec{Query: "www.lab.internal", Type: "aaaa"},
	}
	s.Normalize()
	want := ServiceSpec{
		Name:    "dns",
		Address: "192.0.2.53:53",
		Replicas: []ReplicaSpec{
			{Name: "a", Impl: "bind9", OS: "linux", Platform: "vm", VM: "a"},
			{Name: "b", Impl: "unbound", OS: "linux", Platform: "container"},
		},
		Probe: ProbeSpec{Query: "www.lab.internal.", Type: "AAAA", Profile: ProfileARS, Timeout: Duration(100 * time.Millisecond),
			Interval: Duration(50 * time.Millisecond), Failures: 3, Window: Duration(275 * time.Millisecond), Confirm: ConfirmNone},
		Policy: PolicySpec{Rotation: RotationDiverse, MinDwell: Duration(2 * time.Second), MaxSwitches: 5, Window: Duration(time.Minute),
			ExploitMode: ModeMakeBeforeBreak, DoSMode: ModeMakeBeforeBreak},
	}
	if !s.Equal(want) {
		t.Fatalf("normalized\n%+v\nwant\n%+v", s, want)
	}
	again := s.Clone()
	again.Normalize()
	if !again.Equal(s) {
		t.Fatal("Normalize is not idempotent")
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}

	p := ServiceSpec{Probe: ProbeSpec{Profile: "paper"}}
	p.Normalize()
	if p.Probe.Timeout != Duration(500*time.Millisecond) || p.Probe.Interval != 0 || p.Probe.Window != 0 || p.Probe.Failures != 3 {
		t.Fatalf("paper defaults %+v", p.Probe)
	}
}

// The standby pacing defaults are filled only in a spec with a
// health_addr: a spec without one normalizes (and encodes, at format
// level 1) exactly as before.
func TestNormalizeStandbyDefaults(t *testing.T) {
	without := ServiceSpec{Replicas: []ReplicaSpec{{Name: "a"}}}
	without.Normalize()
	if without.Probe.StandbyInterval != 0 || without.Probe.StandbyFailures != 0 {
		t.Fatalf("defaults without a health_addr: %+v", without.Probe)
	}
	with := ServiceSpec{Replicas: []ReplicaSpec{{Name: "a"}, {Name: "b", HealthAddr: " 198.51.100.7:053 "}}}
	with.Normalize()
	if with.Probe.StandbyInterval != DefaultStandbyInterval || with.Probe.StandbyFailures != DefaultStandbyFailures {
		t.Fatalf("defaults with a health_addr: %+v", with.Probe)
	}
	if got := with.Replicas[1].HealthAddr; got != "198.51.100.7:53" {
		t.Fatalf("health_addr normalized to %q", got)
	}
	if Level(ServiceApply{Spec: without}) != BaseLevel || Level(ServiceApply{Spec: with}) != 5 {
		t.Fatalf("levels %d, %d", Level(ServiceApply{Spec: without}), Level(ServiceApply{Spec: with}))
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(s *ServiceSpec)
		field  string // "" = valid
	}{
		{"valid", func(s *ServiceSpec) {}, ""},
		{"valid without defaults (Validate normalizes a copy)", func(s *ServiceSpec) { s.Probe = ProbeSpec{Query: "x."}; s.Policy = PolicySpec{} }, ""},
		{"valid container definition", func(s *ServiceSpec) {
			s.Replicas[2].Container = &ContainerSpec{Command: []string{"unbound", "-d"}, Env: []string{"A="}, Networks: []string{"mgmt"}, MemoryMB: 64, CPUMilli: 250, PidsMax: 32, AppArmor: "ars-unbound"}
		}, ""},
		{"valid ipv6 address", func(s *ServiceSpec) { s.Address = "[2001:db8::53]:53" }, ""},
		{"valid paper profile", func(s *ServiceSpec) { s.Probe.Profile = "paper"; s.Probe.Failures = 3 }, ""},
		{"valid AAAA expect", func(s *ServiceSpec) { s.Probe.Type = "AAAA"; s.Probe.Expect = "2001:db8::10" }, ""},
		{"valid TXT expect", func(s *ServiceSpec) { s.Probe.Type = "TXT"; s.Probe.Expect = `"hello"` }, ""},
		{"missing name", func(s *ServiceSpec) { s.Name = "" }, "name: required"},
		{"bad name", func(s *ServiceSpec) { s.Name = "DNS_1" }, "name:"},
		{"long name", func(s *ServiceSpec) { s.Name = strings.Repeat("a", 64) }, "name:"},
		{"missing address", func(s *ServiceSpec) { s.Address = "" }, "address: required"},
		{"address without port", func(s *ServiceSpec) { s.Address = "192.0.2.53" }, "address:"},
		{"address with hostname", func(s *ServiceSpec) { s.Address = "dns.example:53" }, "address:"},
		{"address port 0", func(s *ServiceSpec) { s.Address = "192.0.2.53:0" }, "address:"},
		{"no replicas", func(s *ServiceSpec) { s.Replicas = nil }, "replicas: at least one"},
		{"too many replicas", func(s *ServiceSpec) {
			for len(s.Replicas) <= MaxReplicas {
				r := s.Replicas[0]
				r.Name = fmt.Sprintf("r%d", len(s.Replicas))
				s.Replicas = append(s.Replicas, r)
			}
		}, "replicas:"},
		{"replica name", func(s *ServiceSpec) { s.Replicas[1].Name = "Bad Name" }, "replicas[1].name:"},
		{"replica name missing", func(s *ServiceSpec) { s.Replicas[2].Name = "" }, "replicas[2].name: required"},
		{"duplicate replica", func(s *ServiceSpec) { s.Replicas[3].Name = s.Replicas[1].Name }, "replicas[3].name:"},
		{"impl missing", func(s *ServiceSpec) { s.Replicas[0].Impl = "" }, "replicas[0].impl: required"},
		{"impl not a token", func(s *ServiceSpec) { s.Replicas[0].Impl = "bind 9" }, "replicas[0].impl:"},
		{"os", func(s *ServiceSpec) { s.Replicas[1].OS = "bsd" }, `replicas[1].os: must be "windows" or "linux"`},
		{"platform", func(s *ServiceSpec) { s.Replicas[1].Platform = "lxc" }, "replicas[1].platform:"},
		{"image on vm", func(s *ServiceSpec) { s.Replicas[0].Image = "bind:9" }, "replicas[0].image:"},
		{"host on vm", func(s *ServiceSpec) { s.Replicas[0].Host = "docker1" }, "replicas[0].host:"},
		{"vm on container", func(s *ServiceSpec) { s.Replicas[2].VM = "x" }, "replicas[2].vm:"},
		{"valid vcenter", func(s *ServiceSpec) { s.Replicas[0].VCenter = "vc-east.example" }, ""},
		{"vcenter on container", func(s *ServiceSpec) { s.Replicas[2].VCenter = "vc-east" }, "replicas[2].vcenter: only for platform"},
		{"vcenter not a name", func(s *ServiceSpec) { s.Replicas[1].VCenter = "VC East" }, "replicas[1].vcenter:"},
		{"vcenter with port", func(s *ServiceSpec) { s.Replicas[1].VCenter = "vc:443" }, "replicas[1].vcenter:"},
		{"valid health_addr", func(s *ServiceSpec) { s.Replicas[1].HealthAddr = " 198.51.100.7:53 " }, ""},
		{"valid address handover", func(s *ServiceSpec) { addressHandover(&s.Replicas[1], " 198.51.100.7:7444 ") }, ""},
		{"handover nic spelled out", func(s *ServiceSpec) { s.Replicas[1].Handover = "NIC" }, ""},
		{"handover unknown", func(s *ServiceSpec) { s.Replicas[1].Handover = "arp" }, `replicas[1].handover: "arp" must be "nic" (the default) or "address"`},
		{"address handover on windows", func(s *ServiceSpec) {
			addressHandover(&s.Replicas[0], "198.51.100.7:7444")
			s.Replicas[0].OS = OSWindows
		}, `replicas[0].handover: "address" needs os "linux": the replica agent has no tested implementation for windows`},
		{"address handover on a container", func(s *ServiceSpec) {
			addressHandover(&s.Replicas[2], "198.51.100.7:7444")
		}, ""},
		{"address handover on a windows container", func(s *ServiceSpec) {
			addressHandover(&s.Replicas[2], "198.51.100.7:7444")
			s.Replicas[2].OS = OSWindows
		}, `replicas[2].handover: "address" needs os "linux"`},
		{"address handover without agent", func(s *ServiceSpec) { addressHandover(&s.Replicas[1], "") }, `replicas[1].agent: required with handover "address"`},
		{"agent without address handover", func(s *ServiceSpec) { s.Replicas[1].Agent = "198.51.100.7:7444" }, `replicas[1].agent: only with handover "address"`},
		{"agent without port", func(s *ServiceSpec) { addressHandover(&s.Replicas[1], "198.51.100.7") }, `replicas[1].agent: "198.51.100.7" must be "IP:port"`},
		{"agent port 0", func(s *ServiceSpec) { addressHandover(&s.Replicas[1], "198.51.100.7:0") }, "port must be 1-65535"},
		{"agent multicast", func(s *ServiceSpec) { addressHandover(&s.Replicas[1], "224.0.0.1:7444") }, "not a unicast address"},
		{"agent shared", func(s *ServiceSpec) {
			addressHandover(&s.Replicas[0], "198.51.100.7:7444")
			addressHandover(&s.Replicas[1], "198.51.100.7:7444")
		}, `replicas[1].agent: "198.51.100.7:7444" already used by replicas[0]`},
		{"agent is the service address", func(s *ServiceSpec) { addressHandover(&s.Replicas[1], s.Address) }, `replicas[1].agent: "192.0.2.53:53" is the service address`},
		{"valid standby pacing", func(s *ServiceSpec) {
			s.Replicas[1].HealthAddr = "198.51.100.7:53"
			s.Probe.StandbyInterval = Duration(2 * time.Second)
			s.Probe.StandbyFailures = 5
		}, ""},
		{"health_addr without port", func(s *ServiceSpec) { s.Replicas[1].HealthAddr = "198.51.100.7" }, `replicas[1].health_addr: "198.51.100.7" must be "IP:port"`},
		{"health_addr hostname", func(s *ServiceSpec) { s.Replicas[1].HealthAddr = "bind.mgmt:53" }, "replicas[1].health_addr:"},
		{"health_addr port 0", func(s *ServiceSpec) { s.Replicas[1].HealthAddr = "198.51.100.7:0" }, "replicas[1].health_addr: \"198.51.100.7:0\": port"},
		{"health_addr unspecified", func(s *ServiceSpec) { s.Replicas[1].HealthAddr = "0.0.0.0:53" }, "not a unicast address"},
		{"health_addr is the service address", func(s *ServiceSpec) { s.Replicas[2].HealthAddr = s.Address }, "replicas[2].health_addr: " + `"` + "192.0.2.53:53" + `" is the service address`},
		{"health_addr shared", func(s *ServiceSpec) {
			s.Replicas[0].HealthAddr = "198.51.100.7:53"
			s.Replicas[3].HealthAddr = "198.51.100.7:53"
		}, "replicas[3].health_addr: \"198.51.100.7:53\" already used by replicas[0]"},
		{"standby_interval below the timeout", func(s *ServiceSpec) {
			s.Replicas[1].HealthAddr = "198.51.100.7:53"
			s.Probe.StandbyInterval = Duration(50 * time.Millisecond)
		}, "probe.standby_interval: 50ms must be at least the timeout (100ms)"},
		{"standby_failures negative", func(s *ServiceSpec) { s.Probe.StandbyFailures = -1 }, "probe.standby_failures:"},
		{"snapshot on container", func(s *ServiceSpec) { s.Replicas[2].Snapshot = "clean" }, "replicas[2].snapshot:"},
		{"container on vm", func(s *ServiceSpec) { s.Replicas[0].Container = &ContainerSpec{} }, "replicas[0].container: only for"},
		{"container env not k=v", func(s *ServiceSpec) { s.Replicas[2].Container = &ContainerSpec{Env: []string{"NOEQ"}} }, "replicas[2].container.env[0]:"},
		{"container bad network", func(s *ServiceSpec) { s.Replicas[2].Container = &ContainerSpec{Network: "a b"} }, "replicas[2].container.network:"},
		{"container service net twice", func(s *ServiceSpec) {
			s.Replicas[2].Container = &ContainerSpec{Network: "svc", Networks: []string{"mgmt", "svc"}}
		}, "replicas[2].container.networks[1]: \"svc\" is the service network"},
		{"container default service net in networks", func(s *ServiceSpec) {
			s.Replicas[2].Container = &ContainerSpec{Networks: []string{DefaultContainerNetwork}}
		}, "replicas[2].container.networks[0]:"},
		{"container duplicate network", func(s *ServiceSpec) { s.Replicas[2].Container = &ContainerSpec{Networks: []string{"m", "m"}} }, "listed twice"},
		{"container tiny memory", func(s *ServiceSpec) { s.Replicas[2].Container = &ContainerSpec{MemoryMB: 2} }, "replicas[2].container.memory_mb:"},
		{"container negative cpu", func(s *ServiceSpec) { s.Replicas[2].Container = &ContainerSpec{CPUMilli: -1} }, "replicas[2].container.cpu_milli:"},
		{"container negative pids", func(s *ServiceSpec) { s.Replicas[2].Container = &ContainerSpec{PidsMax: -1} }, "replicas[2].container.pids_max:"},
		{"container apparmor space", func(s *ServiceSpec) { s.Replicas[2].Container = &ContainerSpec{AppArmor: "a b"} }, "replicas[2].container.apparmor:"},
		{"container control char in command", func(s *ServiceSpec) { s.Replicas[2].Container = &ContainerSpec{Command: []string{"x\x01"}} }, "replicas[2].container.command[0]:"},
		{"control char in nic", func(s *ServiceSpec) { s.Replicas[0].NIC = "eth\x000" }, "replicas[0].nic:"},
		{"long vm path", func(s *ServiceSpec) { s.Replicas[0].VM = strings.Repeat("v", 300) }, "replicas[0].vm:"},
		{"missing query", func(s *ServiceSpec) { s.Probe.Query = "" }, "probe.query: required"},
		{"bad query", func(s *ServiceSpec) { s.Probe.Query = "a..b." }, "probe.query:"},
		{"unknown type", func(s *ServiceSpec) { s.Probe.Type = "BOGUS" }, "probe.type:"},
		{"axfr type", func(s *ServiceSpec) { s.Probe.Type = "AXFR" }, "probe.type:"},
		{"A expect not ipv4", func(s *ServiceSpec) { s.Probe.Expect = "2001:db8::1" }, "probe.expect:"},
		{"AAAA expect not ipv6", func(s *ServiceSpec) { s.Probe.Type = "AAAA"; s.Probe.Expect = "192.0.2.1" }, "probe.expect:"},
		{"profile", func(s *ServiceSpec) { s.Probe.Profile = "fast" }, "probe.profile:"},
		{"negative timeout", func(s *ServiceSpec) { s.Probe.Timeout = -1 }, "probe.timeout:"},
		{"huge timeout", func(s *ServiceSpec) { s.Probe.Timeout = Duration(time.Hour) }, "probe.timeout:"},
		{"negative interval", func(s *ServiceSpec) { s.Probe.Interval = -1 }, "probe.interval:"},
		{"negative failures", func(s *ServiceSpec) { s.Probe.Failures = -1 }, "probe.failures:"},
		{"negative window", func(s *ServiceSpec) { s.Probe.Window = -1 }, "probe.window:"},
		{"confirm", func(s *ServiceSpec) { s.Probe.Confirm = "all" }, "probe.confirm:"},
		{"rotation", func(s *ServiceSpec) { s.Policy.Rotation = "random" }, "policy.rotation:"},
		{"negative dwell", func(s *ServiceSpec) { s.Policy.MinDwell = -1 }, "policy.min_dwell:"},
		{"negative max switches", func(s *ServiceSpec) { s.Policy.MaxSwitches = -2 }, "policy.max_switches:"},
		{"negative policy window", func(s *ServiceSpec) { s.Policy.Window = -1 }, "policy.window:"},
		{"exploit mode", func(s *ServiceSpec) { s.Policy.ExploitMode = "yolo" }, "policy.exploit_mode:"},
		{"dos mode", func(s *ServiceSpec) { s.Policy.DoSMode = "yolo" }, "policy.dos_mode:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := paperSpec("dns")
			c.mutate(&s)
			err := s.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || Code(err) != CodeInvalid {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error %q does not name %q", err, c.field)
			}
		})
	}
}

func TestDecodeServiceSpec(t *testing.T) {
	good := `{"name":"dns","address":"192.0.2.53:53",
	  "replicas":[{"name":"a","impl":"bind9","os":"linux","platform":"vm"}],
	  "probe":{"query":"www.lab.internal.","timeout":"200ms","interval":50000000},
	  "policy":{"min_dwell":"5s"}}`
	s, err := DecodeServiceSpec([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if s.Probe.Timeout != Duration(200*time.Millisecond) || s.Probe.Interval != Duration(50*time.Millisecond) ||
		s.Policy.MinDwell != Duration(5*time.Second) || s.Policy.MaxSwitches != DefaultMaxSwitches || s.Replicas[0].VM != "a" {
		t.Fatalf("decoded %+v", s)
	}
	named, err := DecodeServiceSpec([]byte(strings.Replace(good, `"platform":"vm"`, `"platform":"vm","vcenter":" vc-b "`, 1)))
	if err != nil || named.Replicas[0].VCenter != "vc-b" {
		t.Fatalf("replica naming its vCenter: %+v, %v", named.Replicas, err)
	}
	for _, c := range []struct{ name, in, msg string }{
		{"unknown field", strings.Replace(good, `"name":"dns"`, `"name":"dns","colour":"red"`, 1), "colour"},
		{"unknown nested field", strings.Replace(good, `"os":"linux"`, `"os":"linux","cpu":4`, 1), "cpu"},
		{"trailing data", good + `{}`, "after"},
		{"not json", `name: dns`, "service spec"},
		{"bad duration", strings.Replace(good, `"200ms"`, `"soon"`, 1), "soon"},
		{"float duration", strings.Replace(good, `50000000`, `1.5`, 1), "duration"},
		{"invalid value", strings.Replace(good, `"linux"`, `"beos"`, 1), "replicas[0].os"},
		{"empty", ``, "service spec"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeServiceSpec([]byte(c.in))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, c.msg)
			}
		})
	}
}

func TestDurationJSON(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Duration
		bad  bool
	}{
		{`"500ms"`, Duration(500 * time.Millisecond), false},
		{`"1m30s"`, Duration(90 * time.Second), false},
		{`250000000`, Duration(250 * time.Millisecond), false},
		{`""`, 0, false},
		{`null`, 0, false},
		{`"-1s"`, Duration(-time.Second), false},
		{`"fast"`, 0, true},
		{`1e9`, 0, true},
		{`true`, 0, true},
		{`{}`, 0, true},
	} {
		var d Duration
		err := json.Unmarshal([]byte(c.in), &d)
		if (err != nil) != c.bad || (!c.bad && d != c.want) {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v (bad=%v)", c.in, d, err, c.want, c.bad)
		}
	}
	b, err := json.Marshal(struct{ D Duration }{Duration(1500 * time.Millisecond)})
	if err != nil || string(b) != `{"D":"1.5s"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	if Duration(time.Second).Std() != time.Second || Duration(time.Second).String() != "1s" {
		t.Fatal("Std/String")
	}
}

func TestRoles(t *testing.T) {
	for _, r := range []Role{RoleActive, RoleStandby, RoleSuspended, RoleQuarantined, RoleRecovering, RoleMaintenance} {
		if !r.Valid() {
			t.Errorf("%s not valid", r)
		}
		if r.Eligible() != (r == RoleStandby || r == RoleSuspended) {
			t.Errorf("%s eligible=%v", r, r.Eligible())
		}
	}
	if Role("idle").Valid() {
		t.Error("unknown role valid")
	}
}

func TestContainerSpecCloneEqual(t *testing.T) {
	s := paperSpec("dns")
	s.Replicas[2].Container = &ContainerSpec{
		Command: []string{"unbound", "-d"}, Env: []string{"A=1"}, Network: "svc",
		Networks: []string{"mgmt"}, MemoryMB: 128, CPUMilli: 500, PidsMax: 64, AppArmor: "ars-unbound",
	}
	s.Normalize()
	if err := s.Validate(); err != nil {
		t.Fatalf("valid container spec rejected: %v", err)
	}
	c := s.Clone()
	if !c.Equal(s) {
		t.Fatal("clone differs")
	}
	c.Replicas[2].Container.Command[0] = "named"
	c.Replicas[2].Container.Networks[0] = "other"
	if s.Replicas[2].Container.Command[0] != "unbound" || s.Replicas[2].Container.Networks[0] != "mgmt" {
		t.Fatal("clone shares slices with the original")
	}
	if c.Equal(s) {
		t.Fatal("Equal ignores the container definition")
	}
	c = s.Clone()
	c.Replicas[2].Container = nil
	if c.Equal(s) || s.Equal(c) {
		t.Fatal("nil and non-nil container compare equal")
	}
}

// addressHandover makes r a Linux replica with address handover and its
// agent at agent.
func addressHandover(r *ReplicaSpec, agent string) {
	r.OS, r.Handover, r.Agent = OSLinux, HandoverAddress, agent
}
