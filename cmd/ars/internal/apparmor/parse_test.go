package apparmor

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	auditdExec = `type=AVC msg=audit(1700000000.123:456): apparmor="DENIED" operation="exec" profile="/usr/sbin/named" name="/bin/sh" pid=1234 comm="named" requested_mask="x" denied_mask="x" fsuid=0 ouid=0`
	kernelExec = `Nov 14 22:13:20 replica1 kernel: [  123.456789] audit: type=1400 audit(1700000000.123:456): apparmor="DENIED" operation="exec" profile="/usr/sbin/named" name="/bin/sh" pid=1234 comm="named" requested_mask="x" denied_mask="x" fsuid=0 ouid=0`
)

func TestParseDenials(t *testing.T) {
	at := time.Unix(1700000000, 123_000_000).UTC()
	cases := []struct {
		name string
		line string
		want Record // Fields and Raw are checked separately
	}{
		{"auditd", auditdExec, Record{Time: at, Stamp: "1700000000.123:456", Serial: 456, Type: TypeDenied, Operation: "exec",
			Profile: "/usr/sbin/named", Name: "/bin/sh", PID: 1234, Comm: "named", RequestedMask: "x", DeniedMask: "x"}},
		{"kernel via syslog", kernelExec, Record{Time: at, Stamp: "1700000000.123:456", Serial: 456, Type: TypeDenied, Operation: "exec",
			Profile: "/usr/sbin/named", Name: "/bin/sh", PID: 1234, Comm: "named", RequestedMask: "x", DeniedMask: "x"}},
		{"journald iso time, no uptime", `2024-01-02T03:04:05.678901+00:00 replica1 kernel: audit: type=1400 audit(1704164645.5:99): apparmor="DENIED" operation="open" profile="unbound" name="/etc/shadow" pid=77 comm="unbound" requested_mask="r" denied_mask="r" fsuid=101 ouid=0`,
			Record{Time: time.Unix(1704164645, 500_000_000).UTC(), Stamp: "1704164645.5:99", Serial: 99, Type: TypeDenied, Operation: "open",
				Profile: "unbound", Name: "/etc/shadow", PID: 77, Comm: "unbound", RequestedMask: "r", DeniedMask: "r"}},
		{"hex-encoded values", `type=AVC msg=audit(1700000001.000:7): apparmor="DENIED" operation="open" profile=2F7573722F7362696E2F6E616D6564202874657374290A name=2F746D702F6D792066696C65 pid=9 comm=6E616D6564207468 requested_mask="w" denied_mask="w" fsuid=0 ouid=0`,
			Record{Time: time.Unix(1700000001, 0).UTC(), Stamp: "1700000001.000:7", Serial: 7, Type: TypeDenied, Operation: "open",
				Profile: "/usr/sbin/named (test)\n", Name: "/tmp/my file", PID: 9, Comm: "named th", RequestedMask: "w", DeniedMask: "w"}},
		{"node prefix and enriched suffix", "node=replica1 type=AVC msg=audit(1700000002.250:8): apparmor=\"DENIED\" operation=\"file_mmap\" profile=\"/usr/sbin/named\" name=\"/tmp/x.so\" pid=5 comm=\"named\" requested_mask=\"m\" denied_mask=\"m\" fsuid=0 ouid=0\x1dFSUID=\"root\" OUID=\"root\"",
			Record{Time: time.Unix(1700000002, 250_000_000).UTC(), Stamp: "1700000002.250:8", Serial: 8, Type: TypeDenied, Operation: "file_mmap",
				Profile: "/usr/sbin/named", Name: "/tmp/x.so", PID: 5, Comm: "named", RequestedMask: "m", DeniedMask: "m"}},
		{"capability, no name", `type=AVC msg=audit(1700000003.001:9): apparmor="DENIED" operation="capable" profile="/usr/sbin/named" pid=5 comm="named" capability=12  capname="net_admin"`,
			Record{Time: time.Unix(1700000003, 1_000_000).UTC(), Stamp: "1700000003.001:9", Serial: 9, Type: TypeDenied, Operation: "capable",
				Profile: "/usr/sbin/named", PID: 5, Comm: "named"}},
		{"kill mode", `type=AVC msg=audit(1700000004.000:10): apparmor="KILL" operation="exec" profile="/usr/sbin/named" name="/bin/sh" pid=6 comm="named" requested_mask="x" denied_mask="x" fsuid=0 ouid=0`,
			Record{Time: time.Unix(1700000004, 0).UTC(), Stamp: "1700000004.000:10", Serial: 10, Type: TypeKill, Operation: "exec",
				Profile: "/usr/sbin/named", Name: "/bin/sh", PID: 6, Comm: "named", RequestedMask: "x", DeniedMask: "x"}},
		{"user_avc (d-bus)", `type=USER_AVC msg=audit(1700000005.500:77): pid=800 uid=103 auid=4294967295 ses=4294967295 subj=unconfined msg='apparmor="DENIED" operation="dbus_method_call" bus="system" path="/org/freedesktop/systemd1" interface="org.freedesktop.systemd1.Manager" member="StartUnit" mask="send" name="org.freedesktop.systemd1" pid=1234 label="/usr/sbin/named" peer_pid=1 peer_label="unconfined"  exe="/usr/bin/dbus-daemon" sauid=103 hostname=? addr=? terminal=?'`,
			Record{Time: time.Unix(1700000005, 500_000_000).UTC(), Stamp: "1700000005.500:77", Serial: 77, Type: TypeDenied, Operation: "dbus_method_call",
				Profile: "/usr/sbin/named", Name: "org.freedesktop.systemd1", PID: 1234}},
		{"windows line ending", auditdExec + "\r\n", Record{Time: at, Stamp: "1700000000.123:456", Serial: 456, Type: TypeDenied, Operation: "exec",
			Profile: "/usr/sbin/named", Name: "/bin/sh", PID: 1234, Comm: "named", RequestedMask: "x", DeniedMask: "x"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(c.line)
			if err != nil {
				t.Fatal(err)
			}
			if got.Raw != c.line {
				t.Errorf("Raw = %q", got.Raw)
			}
			if got.Fields["operation"] != c.want.Operation {
				t.Errorf("Fields = %v", got.Fields)
			}
			got.Raw, got.Fields = "", nil
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestParseFields(t *testing.T) {
	r, err := Parse("node=n1 type=AVC msg=audit(1700000002.250:8): apparmor=\"DENIED\" operation=\"open\" profile=\"p\" name=\"/x\" fsuid=0 ouid=0\x1dFSUID=\"root\"")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"fsuid": "0", "ouid": "0", "FSUID": "root", "apparmor": "DENIED"} {
		if r.Fields[k] != v {
			t.Errorf("Fields[%q] = %q, want %q (all: %v)", k, r.Fields[k], v, r.Fields)
		}
	}
	if _, ok := r.Fields["node"]; ok {
		t.Error("fields before the audit stamp were read")
	}
}

func TestParseIgnoresOthers(t *testing.T) {
	for _, c := range []struct {
		line string
		want error
	}{
		{`type=AVC msg=audit(1700000000.000:1): apparmor="STATUS" operation="profile_load" profile="unconfined" name="/usr/sbin/named" pid=1 comm="apparmor_parser"`, ErrNotDenial},
		{`type=AVC msg=audit(1700000000.000:2): apparmor="ALLOWED" operation="open" profile="/usr/sbin/named" name="/etc/passwd" pid=2 comm="named" requested_mask="r" denied_mask="r" fsuid=0 ouid=0`, ErrNotDenial},
		{`Nov 14 22:13:20 h kernel: audit: type=1400 audit(1700000000.000:3): apparmor="AUDIT" operation="getattr" profile="p" name="/" pid=3 comm="c"`, ErrNotDenial},
		{`type=AVC msg=audit(1700000000.000:4): apparmor="HINT" operation="x" profile="p"`, ErrNotDenial},
		{`type=SYSCALL msg=audit(1700000000.000:5): arch=c000003e syscall=59 success=no exit=-13 comm="named" exe="/usr/sbin/named"`, ErrNotAppArmor},
		{`type=AVC msg=audit(1700000000.000:6): avc:  denied  { read } for  pid=1 comm="named" name="x" scontext=a tcontext=b tclass=file`, ErrNotAppArmor},
		{`Nov 14 22:13:20 h systemd[1]: Started named.service.`, ErrNotAppArmor},
		{``, ErrNotAppArmor},
		{`audit(notastamp): apparmor`, ErrNotAppArmor},
	} {
		_, err := Parse(c.line)
		if !errors.Is(err, c.want) {
			t.Errorf("Parse(%q) = %v, want %v", c.line, err, c.want)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	for _, c := range []struct{ line, msg string }{
		{`apparmor="DENIED" operation="exec" profile="p"`, "stamp"},
		{`type=AVC msg=audit(1700000000:456): apparmor="DENIED" operation="exec" profile="p"`, "SECONDS.FRACTION"},
		{`type=AVC msg=audit(1700000000.1:): apparmor="DENIED" operation="exec" profile="p"`, "serial"},
		{`type=AVC msg=audit(1700000000.1:x): apparmor="DENIED" operation="exec" profile="p"`, "serial"},
		{`type=AVC msg=audit(1700000000.+1:2): apparmor="DENIED" operation="exec" profile="p"`, "fraction"},
		{`type=AVC msg=audit(99999999999999999999.1:2): apparmor="DENIED" operation="exec" profile="p"`, "seconds"},
		{`type=AVC msg=audit(1700000000.1:2): apparmor="DENIED" operation="exec" profile="p" name="/bin/sh`, "unterminated"},
		{`type=AVC msg=audit(1700000000.1:2): apparmor="DENIED" operation="exec" profile="p" name=/bin/sh`, "not hex-encoded"},
		{`type=AVC msg=audit(1700000000.1:2): apparmor="DENIED" operation="exec" profile=ABC`, "not hex-encoded"},
		{`type=AVC msg=audit(1700000000.1:2): apparmor="DENIED" profile="p" name="/bin/sh"`, "no operation"},
		{`type=AVC msg=audit(1700000000.1:2): apparmor="DENIED" operation="exec" name="/bin/sh"`, "no profile"},
		{`type=AVC msg=audit(1700000000.1:2): apparmor="DENIED" operation="exec" profile="p" pid=12ab`, "pid"},
		{`type=USER_AVC msg=audit(1700000000.1:2): pid=1 msg='apparmor="DENIED" operation="x`, "unterminated"},
	} {
		_, err := Parse(c.line)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("Parse(%q) = %v, want ErrMalformed mentioning %q", c.line, err, c.msg)
		}
	}
}

func TestRecordID(t *testing.T) {
	a, err := Parse(auditdExec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(kernelExec)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID() != b.ID() {
		t.Fatalf("the same event in audit.log and kern.log has two ids: %s, %s", a.ID(), b.ID())
	}
	if len(a.ID()) != 67 || !strings.HasPrefix(a.ID(), "aa-") {
		t.Fatalf("id %q", a.ID())
	}
	// pid, comm and masks are not part of the identity; stamp, profile,
	// operation and name are.
	same, _ := Parse(strings.Replace(auditdExec, "pid=1234", "pid=1", 1))
	if same.ID() != a.ID() {
		t.Error("pid changed the id")
	}
	for _, other := range []string{
		strings.Replace(auditdExec, ":456)", ":457)", 1),
		strings.Replace(auditdExec, ".123:", ".124:", 1),
		strings.Replace(auditdExec, `profile="/usr/sbin/named"`, `profile="/usr/sbin/unbound"`, 1),
		strings.Replace(auditdExec, `operation="exec"`, `operation="open"`, 1),
		strings.Replace(auditdExec, `name="/bin/sh"`, `name="/bin/bash"`, 1),
	} {
		r, err := Parse(other)
		if err != nil {
			t.Fatal(err)
		}
		if r.ID() == a.ID() {
			t.Errorf("%q has the same id as %q", other, auditdExec)
		}
	}
	// Length prefixes: moving a byte between fields changes the id.
	x := Record{Stamp: "1.1:1", Profile: "ab", Operation: "c"}
	y := Record{Stamp: "1.1:1", Profile: "a", Operation: "bc"}
	if x.ID() == y.ID() {
		t.Error("ids collide across field boundaries")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		auditdExec, kernelExec, "",
		`type=AVC msg=audit(1700000001.000:7): apparmor="DENIED" operation="open" profile=2F7573 name=2F746D70 pid=9`,
		`type=USER_AVC msg=audit(1.5:77): pid=800 msg='apparmor="DENIED" operation="dbus" label="p" name="n"'`,
		`type=AVC msg=audit(1.1:2): apparmor="DENIED" operation="exec" profile="p" name="/bin/sh`,
		"audit(1.1:1): apparmor=\"KILL\"\x1doperation=\"x\" profile=\"y\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, err := Parse(line)
		if err != nil {
			if !errors.Is(err, ErrNotAppArmor) && !errors.Is(err, ErrNotDenial) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q): error %v wraps no sentinel", line, err)
			}
			return
		}
		if r.Raw != line || (r.Type != TypeDenied && r.Type != TypeKill) || r.Operation == "" || r.Profile == "" || r.PID < 0 {
			t.Fatalf("Parse(%q) = %+v", line, r)
		}
		again, err := Parse(line)
		if err != nil || again.ID() != r.ID() {
			t.Fatalf("Parse(%q) is not deterministic", line)
		}
	})
}
