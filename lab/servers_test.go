package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

func TestPrepareRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	sn := netip.MustParsePrefix("127.53.0.0/24")
	for _, c := range []struct {
		spec ServerSpec
		want string
	}{
		{ServerSpec{Impl: "nsd", Dir: dir, Addr: netip.MustParseAddr("127.53.0.1"), Subnet: sn}, "unknown implementation"},
		{ServerSpec{Impl: "unbound", Dir: dir, Addr: netip.MustParseAddr("::1"), Subnet: sn}, "IPv4"},
		{ServerSpec{Impl: "unbound", Dir: dir, Subnet: sn}, "IPv4"},
		// pdns_recursor exits on a control socket path this long (108
		// bytes): it was a replica with no server in a test's temp dir.
		{ServerSpec{Impl: "pdns-recursor", Dir: "/" + strings.Repeat("d", 79), Addr: netip.MustParseAddr("127.53.0.1"), Subnet: sn, Binary: "/x"}, "shorter state directory"},
		{ServerSpec{Impl: "bind9", Dir: dir, Addr: netip.MustParseAddr("127.53.0.1"), Subnet: sn, Binary: ""}, ""},
	} {
		_, err := Prepare(c.spec)
		if c.want == "" {
			continue // depends on whether named is installed; covered below
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.spec, err, c.want)
		}
	}
}

// Every implementation installed on this machine starts from the prepared
// configuration and answers www.lab.internal A 192.0.2.10 on its address
// (a loopback address here, each replica its own; the lab uses the same
// service address in separate namespaces). CI installs the packages
// (.ci/run); elsewhere a missing server is skipped and named.
func TestServersAnswer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (port 53)")
	}
	sn := netip.MustParsePrefix("127.53.0.0/24")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	for i, impl := range []string{"bind9", "unbound", "knot-resolver", "pdns-recursor"} {
		t.Run(impl, func(t *testing.T) {
			if _, err := exec.LookPath(Implementations[impl]); err != nil {
				if os.Getenv("ARS_REQUIRE_LAB") != "" {
					t.Fatalf("ARS_REQUIRE_LAB is set but %s is not installed", Implementations[impl])
				}
				t.Skipf("%s is not installed (apt-get install %s)", Implementations[impl], debPackage(impl))
			}
			// Its own namespace with the address on lo, as in the lab (BIND
			// listens only on addresses of an interface).
			ns := testNetns(t)
			addr := netip.MustParseAddr(fmt.Sprintf("127.53.0.%d", 10+i))
			if out, err := exec.Command("ip", "-n", ns, "addr", "add", addr.String()+"/32", "dev", "lo").CombinedOutput(); err != nil {
				t.Fatalf("ip addr add: %v: %s", err, out)
			}
			dir := filepath.Join(t.TempDir(), impl)
			argv, err := Prepare(ServerSpec{Impl: impl, Dir: dir, Addr: addr, Subnet: sn})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
			logf, err := os.Create(filepath.Join(dir, "log"))
			if err != nil {
				t.Fatal(err)
			}
			defer logf.Close()
			cmd.Stdout, cmd.Stderr = logf, logf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); _ = cmd.Wait() }()
			start := time.Now()
			m := new(dns.Msg)
			m.SetQuestion(RecordName, dns.TypeA)
			cl := &dns.Client{Timeout: 200 * time.Millisecond}
			var last error
			for time.Since(start) < 30*time.Second {
				var r *dns.Msg
				err := inNetns(ns, func() (err error) {
					r, _, err = cl.Exchange(m, netip.AddrPortFrom(addr, 53).String())
					return err
				})
				if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 && strings.HasSuffix(r.Answer[0].String(), RecordA) {
					t.Logf("%s answered %s after %s", impl, r.Answer[0], time.Since(start).Round(time.Millisecond))
					return
				}
				if err == nil {
					err = fmt.Errorf("answer %v", r)
				}
				last = err
				time.Sleep(20 * time.Millisecond)
			}
			out, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("%s never answered on %s: %v\n%s", impl, addr, last, out)
		})
	}
}

// testNetns creates a network namespace with lo up, removed at the end.
func testNetns(t *testing.T) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "ars-srvtest-" + hex.EncodeToString(b[:]) // not the lab's prefix: its cleanup must not see it
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	return name
}

// inNetns runs f on an OS thread moved into the named namespace: sockets
// f opens belong to it.
func inNetns(name string, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/run/netns", name))
	if err != nil {
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", name, err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			panic("cannot return to the original network namespace: " + err.Error())
		}
	}()
	return f()
}
