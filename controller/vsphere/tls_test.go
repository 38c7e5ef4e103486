package vsphere

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/soap"

	"github.com/ars-project/ars/controller/driver"
	arstest "github.com/ars-project/ars/test/testutil"
	"github.com/ars-project/ars/vcsim"
)

// The simulator's certificate is verified by CA file or by thumbprint
// (SHA-256 or SHA-1, any spelling); insecure only when asked.
func TestTLSVerified(t *testing.T) {
	sim, err := vcsim.Start(vcsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ca, err := sim.CAFile()
	if err != nil {
		t.Fatal(err)
	}
	sha1 := soap.ThumbprintSHA1(sim.Server.Certificate())
	ok := map[string]func(*Config){
		"ca file":               func(c *Config) { c.CAFile = ca },
		"sha-256 thumbprint":    func(c *Config) { c.Thumbprint = sim.Thumbprint() },
		"sha-1 thumbprint":      func(c *Config) { c.Thumbprint = sha1 },
		"thumbprint, lower hex": func(c *Config) { c.Thumbprint = strings.ToLower(strings.ReplaceAll(sim.Thumbprint(), ":", "")) },
		"insecure":              func(c *Config) { c.Insecure = true },
	}
	for name, mod := range ok {
		t.Run(name, func(t *testing.T) {
			d := tlsDriver(t, sim, mod)
			r := replica("bind9-win", vm0)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			if _, err := d.Observe(context.Background(), r); err != nil {
				t.Fatalf("observe: %v", err)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
	wrong := strings.Repeat("AB:", 31) + "AB"
	bad := map[string]struct {
		mod  func(*Config)
		says string
	}{
		"wrong thumbprint": {func(c *Config) { c.Thumbprint = wrong }, "does not match"},
		"system roots":     {func(c *Config) {}, "certificate"},
	}
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			var logs arstest.SyncBuffer
			d := tlsDriver(t, sim, func(c *Config) {
				b.mod(c)
				c.Logger = testLogger(&logs)
				c.CallTimeout = 300 * time.Millisecond
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			eventually(t, 10*time.Second, "a failed TLS handshake in the log", func() bool { return strings.Contains(logs.String(), b.says) })
			_, err := d.Observe(context.Background(), replica("bind9-win", vm0))
			if !errors.Is(err, driver.ErrUnavailable) {
				t.Fatalf("observe without a verified vCenter = %v, want ErrUnavailable", err)
			}
			if n := sim.SessionCount(context.Background()); n != 0 {
				t.Fatalf("%d sessions despite a failed verification", n)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func tlsDriver(t *testing.T, sim *vcsim.Sim, mod func(*Config)) *Driver {
	t.Helper()
	c := Config{URL: sim.URL(), Username: "ars", Password: func() (string, error) { return "pw", nil }, CallTimeout: 2 * time.Second}
	mod(&c)
	d, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The password appears in no log line and no error, whatever happens:
// a wrong password, an unreadable password source, a re-login, failed
// operations, per-operation logins.
func TestPasswordNeverLogged(t *testing.T) {
	const (
		good = "Sup3r-s3cret-vc-pw"
		bad  = "Wr0ng-pw-for-vc"
	)
	var calls atomic.Int32
	password := func() (string, error) {
		switch calls.Add(1) {
		case 1:
			return bad, nil
		case 2:
			return "", errors.New("open /etc/ars/vcenter.password: permission denied")
		}
		return good, nil
	}
	var errs []string
	for _, perOp := range []bool{false, true} {
		e := newEnv(t, vcsim.Options{Username: "ars@vsphere.local", Password: good}, func(c *Config) {
			c.Password = password
			c.PerOperationLogin = perOp
		})
		calls.Store(0)
		if perOp {
			calls.Store(2)
		}
		e.start()
		eventually(t, 20*time.Second, "a session after two failed logins", func() bool {
			return perOp || e.sessions() == 1
		})
		r := replica("bind9-win", vm0)
		if !perOp {
			if err := e.sim.Terminate(e.ctx()); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.d.Detach(e.ctx(), r); err != nil {
			t.Fatal(err)
		}
		bogus := replica("bind9-win", vm0)
		bogus.NIC = "nope"
		if err := e.d.Attach(e.ctx(), bogus); err != nil {
			errs = append(errs, err.Error())
		}
		if err := e.stop(); err != nil {
			t.Fatal(err)
		}
		out := e.logs.String()
		for _, pw := range []string{good, bad} {
			if strings.Contains(out, pw) {
				t.Fatalf("per-operation %v: the log contains a password:\n%s", perOp, out)
			}
		}
		if !perOp && (!strings.Contains(out, "vcenter login failed") || !strings.Contains(out, "permission denied")) {
			t.Fatalf("the failed logins are not in the log:\n%s", out)
		}
	}
	for _, s := range errs {
		if strings.Contains(s, good) || strings.Contains(s, bad) {
			t.Fatalf("an error contains a password: %s", s)
		}
	}
}
