package docker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
)

// TestBadInput: specs the driver cannot use are refused with a clear
// error that names the replica and the culprit, and nothing is left
// half-created on the engine.
func TestBadInput(t *testing.T) {
	e := testEnv(t)
	d, cnt := newDriver(t, e, "", nil)
	ctx := ctxT(t)

	t.Run("unknown host", func(t *testing.T) {
		r := e.replica(t, "192.0.2.10")
		r.Host = "nowhere"
		wantErr(t, d.PowerOn(ctx, r), driver.ErrNotFound, r.Name, `docker host "nowhere" is not configured`)
		if _, err := d.Observe(ctx, r); !errors.Is(err, driver.ErrNotFound) {
			t.Fatalf("observe: %v", err)
		}
	})
	t.Run("no host with two configured", func(t *testing.T) {
		d2, _ := newDriver(t, e, "", func(c *Config) {
			c.Hosts = append(c.Hosts, Host{Name: "other", Endpoint: "unix:///nonexistent/docker.sock"})
		})
		wantErr(t, d2.PowerOn(ctx, e.replica(t, "192.0.2.10")), driver.ErrInvalid, "names no docker host")
	})
	t.Run("wrong platform", func(t *testing.T) {
		r := e.replica(t, "192.0.2.10")
		r.Platform = fsm.PlatformVM
		wantErr(t, d.PowerOn(ctx, r), driver.ErrInvalid, `platform "vm"`)
	})
	t.Run("attach without address", func(t *testing.T) {
		r := e.replica(t, "192.0.2.10")
		oe := wantErr(t, d.Attach(ctx, r), driver.ErrInvalid, "service address", "ServiceAddr")
		if oe.Attempts != 0 {
			t.Fatalf("attempts %d, want 0 (refused before trying)", oe.Attempts)
		}
	})
	t.Run("image missing", func(t *testing.T) {
		r := e.replica(t, "192.0.2.10")
		r.Image = "ars-lab/does-not-exist:1"
		cnt.mutations()
		wantErr(t, d.PowerOn(ctx, r), driver.ErrNotFound, r.Name, r.Image, "make images")
		wantErr(t, d.Restore(ctx, r), driver.ErrNotFound, "make images")
		if c := e.inspect(t, ContainerName(r)); c != nil {
			t.Fatal("a container was left behind")
		}
		if m := cnt.mutations(); len(m) != 0 {
			t.Fatalf("mutating calls %v", m)
		}
	})
	t.Run("network missing", func(t *testing.T) {
		r := e.replica(t, "192.0.2.10")
		r.Container.Networks = []string{e.run + "-nonet"}
		cnt.mutations()
		wantErr(t, d.PowerOn(ctx, r), driver.ErrNotFound, r.Name, `network "`+e.run+`-nonet" does not exist`)
		if c := e.inspect(t, ContainerName(r)); c != nil {
			t.Fatal("a container was left behind")
		}
		if m := cnt.mutations(); len(m) != 0 {
			t.Fatalf("mutating calls %v", m)
		}
	})
	t.Run("service network missing", func(t *testing.T) {
		r := e.replica(t, "192.0.2.10")
		r.Container.Network = e.run + "-nosvc"
		mustOp(t, cnt, "power-on", -1, func() error { return d.PowerOn(ctx, r) })
		wantErr(t, d.Attach(ctx, r, driver.ServiceAddr(e.svcAddr)), driver.ErrNotFound, `network "`+e.run+`-nosvc" does not exist`)
		if m := cnt.mutations(); len(m) != 0 {
			t.Fatalf("mutating calls %v", m)
		}
		if o := observe(t, d, r); o.NICConnected || o.NICStartConnected {
			t.Fatalf("observed %+v", o)
		}
	})
	t.Run("address outside the service network", func(t *testing.T) {
		r := e.replica(t, "192.0.2.10")
		mustOp(t, cnt, "power-on", -1, func() error { return d.PowerOn(ctx, r) })
		wantErr(t, d.Attach(ctx, r, driver.ServiceAddr(e.subnet.Addr().Prev())), driver.ErrInvalid, "not in a subnet")
	})
	t.Run("apparmor without apparmor", func(t *testing.T) {
		info, err := e.cli.Info(ctx, clientInfoOptions())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range info.Info.SecurityOptions {
			if strings.Contains(s, "apparmor") {
				t.Skip("this engine has AppArmor: the refusal cannot be tested here")
			}
		}
		r := e.replica(t, "192.0.2.10")
		r.Container.AppArmor = "ars-dns"
		wantErr(t, d.PowerOn(ctx, r), driver.ErrUnsupported, `AppArmor profile "ars-dns"`, "no AppArmor")
		if c := e.inspect(t, ContainerName(r)); c != nil {
			t.Fatal("a container was left behind")
		}
	})
}

// TestResourceLimits: memory, CPU, pids, extra networks and restart policy
// reach the engine; a changed spec re-creates a stopped container on
// power-on but leaves a running one alone.
func TestResourceLimits(t *testing.T) {
	e := testEnv(t)
	d, cnt := newDriver(t, e, "", nil)
	ctx := ctxT(t)
	r := e.replica(t, "192.0.2.10")
	r.Container.MemoryMB, r.Container.CPUMilli, r.Container.PidsMax = 64, 500, 50
	r.Container.Networks = []string{e.mgmtNet}
	r.Container.Env = []string{"DNSD_TTL=30"}

	mustOp(t, cnt, "power-on", -1, func() error { return d.PowerOn(ctx, r) })
	c := e.inspect(t, ContainerName(r))
	hc := c.HostConfig
	if hc.Memory != 64<<20 || hc.NanoCPUs != 500_000_000 || hc.PidsLimit == nil || *hc.PidsLimit != 50 {
		t.Fatalf("limits: memory %d, nanocpus %d, pids %v", hc.Memory, hc.NanoCPUs, hc.PidsLimit)
	}
	if string(hc.NetworkMode) != e.mgmtNet || !onNetwork(c, e.mgmtNet) || onNetwork(c, e.parkNet) || onNetwork(c, e.svcNet) {
		t.Fatalf("network mode %s, networks %v", hc.NetworkMode, keys(c.NetworkSettings.Networks))
	}
	if !strings.Contains(strings.Join(c.Config.Env, " "), "DNSD_TTL=30") {
		t.Fatalf("env %v", c.Config.Env)
	}
	id := c.ID

	changed := r
	cs := *r.Container
	cs.PidsMax = 60
	changed.Container = &cs
	mustOp(t, cnt, "power-on (new spec, running)", 0, func() error { return d.PowerOn(ctx, changed) })
	mustOp(t, cnt, "power-off", 1, func() error { return d.PowerOff(ctx, changed) })
	// DELETE, create, start; in helper mode also the old helper's DELETE
	// and the new one's create and start.
	want := 3
	if helperMode(d) {
		want = 6
	}
	mustOp(t, cnt, "power-on (new spec, stopped)", want, func() error { return d.PowerOn(ctx, changed) })
	c = e.inspect(t, ContainerName(r))
	if c.ID == id || *c.HostConfig.PidsLimit != 60 || c.Config.Labels[labelSpecHash] != specHash(changed) {
		t.Fatalf("not re-created from the new spec: id %s (old %s), pids %d", c.ID[:12], id[:12], *c.HostConfig.PidsLimit)
	}
}

// TestUnreachable: an engine that is not there fails fast with
// ErrUnavailable; Observe says unknown and unreachable.
func TestUnreachable(t *testing.T) {
	d, err := New(Config{Hosts: []Host{{Name: "gone", Endpoint: "unix:///nonexistent/ars/docker.sock"}}})
	if err != nil {
		t.Fatal(err)
	}
	r := fsm.ReplicaSpec{Name: "r1", Impl: "dnsd", OS: "linux", Platform: fsm.PlatformContainer, Image: "ars-lab/dnsd:latest"}
	ctx := ctxT(t)
	took, err := timed(func() error { return d.PowerOn(ctx, r) })
	oe := wantErr(t, err, driver.ErrUnavailable, "gone")
	if oe.Attempts != DefaultMaxAttempts || oe.State != nil {
		t.Fatalf("OpError %+v: want %d attempts and no state", oe, DefaultMaxAttempts)
	}
	if took > time.Second {
		t.Fatalf("power-on against a missing engine took %s", took)
	}
	t.Logf("power-on against a missing socket failed after %s (%d attempts)", took, oe.Attempts)
	o, err := d.Observe(ctx, r)
	wantErr(t, err, driver.ErrUnavailable)
	if o.Reachable || o.Power != driver.PowerUnknown || o.Replica != "r1" {
		t.Fatalf("observation %+v", o)
	}
}

// proxy is a unix socket in front of the engine's that a test can break:
// drop and lose break one request, refuse every matching one (see the
// fields); down closes the listener and every connection, like an engine
// that stops: a connection accepted while it goes down dies too.
type proxy struct {
	path, upstream string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	drop  string // request-line substring: drop that request once, unanswered and not forwarded
	lose  string // request-line substring: forward that request once, then drop the answer
	// refuse: request-line substring: drop every such request, unanswered
	// and not forwarded, while it is set (other requests pass).
	refuse string
	// fail: request-line substring: answer every such request with a 500
	// carrying failMsg, not forwarded, while it is set.
	fail, failMsg string
	// hold: request-line substring: every such request waits, unanswered
	// and not forwarded, until release (an engine shutting down that
	// still accepts connections).
	hold     string
	released chan struct{}
	drops    int
}

// holdAll makes every request matching substr wait until release.
func (p *proxy) holdAll(substr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold, p.released = substr, make(chan struct{})
}

// release lets the held requests through and holds no more.
func (p *proxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.released != nil {
		close(p.released)
	}
	p.hold, p.released = "", nil
}

func newProxy(t *testing.T, upstream string) *proxy {
	dir, err := os.MkdirTemp("", "arsp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &proxy{path: filepath.Join(dir, "d.sock"), upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.up(t)
	t.Cleanup(p.down)
	return p
}

// proxiedDriver is a driver (see newDriver) on a proxy in front of the
// test engine.
func proxiedDriver(t *testing.T, e *env, mod func(*Config)) (*proxy, *Driver, *counter) {
	t.Helper()
	p := newProxy(t, strings.TrimPrefix(e.endpoint, "unix://"))
	d, cnt := newDriver(t, e, "unix://"+p.path, mod)
	return p, d, cnt
}

func (p *proxy) up(t *testing.T) {
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(ln, c)
		}
	}()
}

func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

func (p *proxy) dropped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drops
}

// cut closes every open connection (the engine "restarting" mid-stream).
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// adopt records a connection of listener ln so that down and cut close
// it. It refuses (false) if ln is no longer the proxy's listener: the
// proxy went down after ln accepted c, and c must not outlive that.
func (p *proxy) adopt(ln net.Listener, c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != ln {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) forget(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// serve forwards one client connection of listener ln request by request
// (the client sends the next request only after the answer), so it can
// drop a chosen request before the engine sees it, or drop the engine's
// answer to it.
func (p *proxy) serve(ln net.Listener, c net.Conn) {
	defer c.Close()
	if !p.adopt(ln, c) {
		return
	}
	defer p.forget(c)
	up, err := net.Dial("unix", p.upstream)
	if err != nil {
		return
	}
	defer up.Close()
	if !p.adopt(ln, up) {
		return
	}
	defer p.forget(up)
	br, ubr := bufio.NewReader(c), bufio.NewReader(up)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		line := req.Method + " " + req.URL.Path
		p.mu.Lock()
		drop := p.drop != "" && strings.Contains(line, p.drop)
		if drop {
			p.drop = ""
			p.drops++
		}
		lose := p.lose != "" && strings.Contains(line, p.lose)
		if lose {
			p.lose = ""
			p.drops++
		}
		refuse := p.refuse != "" && strings.Contains(line, p.refuse)
		fail := p.fail != "" && strings.Contains(line, p.fail)
		failMsg := p.failMsg
		var held chan struct{}
		if p.hold != "" && strings.Contains(line, p.hold) {
			held = p.released
		}
		p.mu.Unlock()
		if held != nil {
			<-held
		}
		if drop || refuse {
			return // the engine "died" before it saw the request
		}
		if fail {
			body, _ := json.Marshal(map[string]string{"message": failMsg})
			resp := &http.Response{StatusCode: http.StatusInternalServerError, ProtoMajor: 1, ProtoMinor: 1,
				Header: http.Header{"Content-Type": {"application/json"}}, ContentLength: int64(len(body)),
				Body: io.NopCloser(bytes.NewReader(body))}
			if err := resp.Write(c); err != nil {
				return
			}
			continue
		}
		if err := req.Write(up); err != nil {
			return
		}
		resp, err := http.ReadResponse(ubr, req)
		if err != nil {
			return
		}
		if lose {
			resp.Body.Close()
			return // the engine did it, but the answer is lost
		}
		err = resp.Write(c)
		resp.Body.Close()
		if err != nil {
			return
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			// A hijacked stream (exec start): raw bytes from here on, both
			// ways, until either side closes.
			done := make(chan struct{})
			go func() { _, _ = io.Copy(up, br); close(done) }()
			_, _ = io.Copy(c, ubr)
			c.Close()
			up.Close()
			<-done
			return
		}
	}
}

// TestEngineDropsMidOperation: a connection that dies with a request in
// flight is retried (the next attempt re-reads the state), the operation
// succeeds, and the failed round trip is counted; an engine that is down
// gives ErrUnavailable and the next call after it returns succeeds.
func TestEngineDropsMidOperation(t *testing.T) {
	e := testEnv(t)
	reg := prometheus.NewRegistry()
	p, d, cnt := proxiedDriver(t, e, func(c *Config) { c.Registerer = reg })
	r := e.replica(t, "192.0.2.10")
	ctx := ctxT(t)

	mustOp(t, cnt, "power-on", -1, func() error { return d.PowerOn(ctx, r) })

	p.mu.Lock()
	p.drop = "/connect"
	p.mu.Unlock()
	mustOp(t, cnt, "attach (first connect dropped)", -1, func() error { return d.Attach(ctx, r, driver.ServiceAddr(e.svcAddr)) })
	if p.dropped() != 1 {
		t.Fatalf("%d requests dropped, want 1", p.dropped())
	}
	if got := testutil.ToFloat64(d.m.callErrors.WithLabelValues("local", "connect", "unreachable")); got != 1 {
		t.Fatalf("call errors for connect: %v, want 1", got)
	}
	if o := observe(t, d, r); !o.NICConnected {
		t.Fatalf("not attached after the retry: %+v", o)
	}
	waitAnswer(t, e.svcAddr, "192.0.2.10", 5*time.Second)

	// The uncertain case: the engine pauses the container but the answer
	// is lost. The retry reads the state, finds it paused, and is done:
	// one pause request in all.
	p.mu.Lock()
	p.lose = "/pause"
	p.mu.Unlock()
	mustOp(t, cnt, "suspend (answer lost)", 1, func() error { return d.Suspend(ctx, r) })
	if p.dropped() != 2 {
		t.Fatalf("%d requests broken, want 2", p.dropped())
	}
	if o := observe(t, d, r); o.Power != driver.PowerSuspended {
		t.Fatalf("not suspended: %+v", o)
	}
	mustOp(t, cnt, "resume", 1, func() error { return d.Resume(ctx, r) })

	// Engine down: ErrUnavailable, with the state unknown.
	p.down()
	took, err := timed(func() error { return d.Detach(ctx, r) })
	oe := wantErr(t, err, driver.ErrUnavailable)
	if oe.State != nil {
		t.Fatalf("state %+v read from an engine that is down", oe.State)
	}
	t.Logf("detach with the engine down failed after %s", took)
	p.up(t)
	mustOp(t, cnt, "detach (engine back)", 1, func() error { return d.Detach(ctx, r) })
	if o := observe(t, d, r); o.NICConnected {
		t.Fatalf("still attached: %+v", o)
	}
	if n := testutil.CollectAndCount(reg, "ars_docker_operation_duration_seconds"); n == 0 {
		t.Fatal("no operation metrics")
	}
}

// TestRestoreWhenEngineCannotRemove: an engine that answers but cannot
// remove a replica's stopped container (the leaked fuse-overlayfs mount an
// engine stopped mid-start leaves behind) does not keep the replica from
// being restored: the old container is renamed aside, a fresh one is
// created under the replica's name, and once the engine can remove it
// again the next restore sweeps the renamed one away. A running container
// the engine cannot remove is not renamed: the restore fails.
func TestRestoreWhenEngineCannotRemove(t *testing.T) {
	e := testEnv(t)
	p, d, _ := proxiedDriver(t, e, nil)
	r := e.replica(t, "192.0.2.10")
	ctx := ctxT(t)
	if err := d.PowerOn(ctx, r); err != nil {
		t.Fatal(err)
	}
	old := e.inspect(t, ContainerName(r))
	setFail := func(on bool) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.fail, p.failMsg = "", ""
		if on {
			p.fail = "DELETE /"
			p.failMsg = `container ` + old.ID + `: driver "fuse-overlayfs" failed to remove root filesystem: unlinkat /var/lib/docker/fuse-overlayfs/x/merged: device or resource busy`
		}
	}

	setFail(true)
	wantErr(t, d.Restore(ctx, r), driver.ErrFailed, "failed to remove root filesystem")
	if c := e.inspect(t, ContainerName(r)); c == nil || c.ID != old.ID || !c.State.Running {
		t.Fatalf("a running container the engine cannot remove was touched: %+v", c)
	}

	if err := d.PowerOff(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := d.Restore(ctx, r); err != nil {
		t.Fatalf("restore with the old container unremovable: %v", err)
	}
	fresh := e.inspect(t, ContainerName(r))
	if fresh == nil || fresh.ID == old.ID {
		t.Fatalf("no fresh container under the replica's name: %+v", fresh)
	}
	aside := e.inspect(t, staleName(r, old.ID))
	if aside == nil || aside.ID != old.ID {
		t.Fatalf("the old container is not renamed aside to %s", staleName(r, old.ID))
	}
	if got := testutil.ToFloat64(d.m.stale.WithLabelValues("local")); got != 1 {
		t.Fatalf("containers renamed aside: metric %v, want 1", got)
	}
	if o := observe(t, d, r); o.Power != driver.PowerOff || o.ChangeVersion == "" {
		t.Fatalf("the restored replica: %+v; want its fresh container, powered off", o)
	}

	setFail(false)
	if err := d.Restore(ctx, r); err != nil {
		t.Fatal(err)
	}
	if c := e.inspect(t, staleName(r, old.ID)); c != nil {
		t.Fatalf("the container renamed aside was not swept: %s", c.Name)
	}
	if c := e.inspect(t, ContainerName(r)); c == nil || c.ID == fresh.ID {
		t.Fatalf("the second restore did not re-create the replica: %+v", c)
	}
}

// TestWatchSurvivesEngineRestart: when the event stream breaks the watch
// subscribes again, tells watchers to resync, and goes on reporting.
func TestWatchSurvivesEngineRestart(t *testing.T) {
	e := testEnv(t)
	p, d, cnt := proxiedDriver(t, e, nil)
	r := e.replica(t, "192.0.2.10")
	ctx := ctxT(t)
	mustOp(t, cnt, "power-on", -1, func() error { return d.PowerOn(ctx, r) })
	ch := d.Watch(ctx)
	waitEvent(t, ch, r, 5*time.Second, "current state", func(o driver.Observation) bool { return o.Power == driver.PowerOn })

	// The stream breaks while the engine stays: resync, no state change.
	p.cut()
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	for resynced := false; !resynced; {
		select {
		case ev := <-ch:
			if ev.Kind == driver.EventResync {
				resynced = true
			} else if ev.State.Power != driver.PowerOn {
				t.Fatalf("a broken stream changed the state: %+v", ev)
			}
		case <-timer.C:
			t.Fatal("no resync after the event stream broke")
		}
	}

	p.down() // the engine goes away: the replica becomes unreachable
	waitEvent(t, ch, r, 5*time.Second, "unreachable", func(o driver.Observation) bool { return !o.Reachable })
	p.up(t)
	// It comes back: the state again (reachable) and a resync, in either
	// order (the failed-stream path re-reads the replica before it
	// subscribes again).
	start := time.Now()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	back, resynced := false, false
	for !back || !resynced {
		select {
		case ev := <-ch:
			switch {
			case ev.Kind == driver.EventResync:
				resynced = true
			case ev.Replica.Name == r.Name && ev.State.Reachable && ev.State.Power == driver.PowerOn:
				back = true
			}
		case <-deadline.C:
			t.Fatalf("after the engine returned: reachable event %v, resync %v", back, resynced)
		}
	}
	t.Logf("watch back (reachable event and resync) %s after the engine returned", time.Since(start))
	// And follows changes through the new stream.
	mustOp(t, cnt, "suspend", 1, func() error { return d.Suspend(ctx, r) })
	waitEvent(t, ch, r, 5*time.Second, "suspend after the rebuild", func(o driver.Observation) bool { return o.Power == driver.PowerSuspended })
	if n := testutilCounter(d, "local"); n == 0 {
		t.Fatal("watch restarts not counted")
	}
}

// TestEngineLostMarksReplicasUnreachable: an engine going away that still
// accepts connections but answers nothing (dockerd shutting down) breaks
// the event stream at once, while every read waits for its timeout. The
// driver reports the engine's replicas unreachable from the break, not
// from a read's timeout (here 30 s, beyond the wait), and reachable again
// once the watch has subscribed and read them.
func TestEngineLostMarksReplicasUnreachable(t *testing.T) {
	e := testEnv(t)
	p, d, cnt := proxiedDriver(t, e, func(c *Config) { c.CallTimeout = 30 * time.Second })
	r := e.replica(t, "192.0.2.10")
	ctx := ctxT(t)
	mustOp(t, cnt, "power-on", -1, func() error { return d.PowerOn(ctx, r) })
	if d.UnreachableFor(r) || !d.ReadyFor(r) {
		t.Fatal("unreachable (or not ready) before anything broke")
	}
	ch := d.Watch(ctx)
	waitEvent(t, ch, r, 5*time.Second, "current state", func(o driver.Observation) bool { return o.Power == driver.PowerOn })
	if d.UnreachableFor(r) {
		t.Fatal("unreachable while the stream is up")
	}

	p.holdAll("/")
	t.Cleanup(p.release)
	p.cut()
	deadline := time.Now().Add(10 * time.Second)
	for !d.UnreachableFor(r) {
		if time.Now().After(deadline) {
			t.Fatal("the engine's replica not reported unreachable after its event stream broke")
		}
		time.Sleep(10 * time.Millisecond)
	}
	bad := r
	bad.Host = "nowhere"
	if !d.UnreachableFor(bad) {
		t.Fatal("a replica of an unconfigured host is not unreachable")
	}

	p.release()
	deadline = time.Now().Add(15 * time.Second)
	for d.UnreachableFor(r) {
		if time.Now().After(deadline) {
			t.Fatal("still unreachable after the engine answered again")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchRereadsAfterFailedRead: the read an event triggers fails while
// the event stream stays up (on a loaded engine an inspect can miss
// CallTimeout, a connection can break mid-request). The replica is then
// reported unreachable, and the stream, being healthy, brings no event to
// correct that; the watch must read the replica again by itself, report
// its real state and resync.
func TestWatchRereadsAfterFailedRead(t *testing.T) {
	e := testEnv(t)
	p, d, cnt := proxiedDriver(t, e, nil)
	r := e.replica(t, "192.0.2.10")
	ctx := ctxT(t)
	mustOp(t, cnt, "power-on", -1, func() error { return d.PowerOn(ctx, r) })
	ch := d.Watch(ctx)
	waitEvent(t, ch, r, 5*time.Second, "current state", func(o driver.Observation) bool {
		return o.Reachable && o.Power == driver.PowerOn
	})

	// Reads of the container fail from now on; the open event stream and
	// every other request pass. The pause goes to the engine directly, so
	// only its event and the read that follows go through the proxy.
	p.mu.Lock()
	p.refuse = "/containers/" + ContainerName(r) + "/json"
	p.mu.Unlock()
	if _, err := e.cli.ContainerPause(ctx, ContainerName(r), client.ContainerPauseOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ch, r, 5*time.Second, "unreachable after the read failed", func(o driver.Observation) bool { return !o.Reachable })

	// Reads work again. Nothing changes on the engine any more: only the
	// watch's own re-read can report the pause.
	p.mu.Lock()
	p.refuse = ""
	p.mu.Unlock()
	_, took, resyncs := waitEvent(t, ch, r, 10*time.Second, "paused and reachable again without another engine event",
		func(o driver.Observation) bool { return o.Reachable && o.Power == driver.PowerSuspended })
	if resyncs == 0 {
		waitResync(t, ch, 5*time.Second, "after the watch read the replica again")
	}
	t.Logf("state read again %s after reads worked again", took)
}

// waitResync reads events until an EventResync.
func waitResync(t *testing.T, ch <-chan driver.Event, within time.Duration, what string) {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case ev, open := <-ch:
			if !open {
				t.Fatalf("no resync %s: watch channel closed", what)
			}
			if ev.Kind == driver.EventResync {
				return
			}
		case <-timer.C:
			t.Fatalf("no resync %s within %s", what, within)
		}
	}
}

func testutilCounter(d *Driver, host string) float64 {
	return testutil.ToFloat64(d.m.watchRestarts.WithLabelValues(host))
}

// TestStartRefusedForAStaleTask: after an engine restart the engine may
// keep a task of a stopped container's earlier life and refuse every
// start of it ("task … already exists"; chaos, 2026-12-08: a minute of
// refused starts of the standby). PowerOn then re-creates the container
// from its image and spec and starts the new one.
func TestStartRefusedForAStaleTask(t *testing.T) {
	e := testEnv(t)
	p, d, cnt := proxiedDriver(t, e, nil)
	r := e.replica(t, "192.0.2.18")
	ctx := ctxT(t)
	mustOp(t, cnt, "power-on", -1, func() error { return d.PowerOn(ctx, r) })
	mustOp(t, cnt, "power-off", -1, func() error { return d.PowerOff(ctx, r) })
	old := e.inspect(t, ContainerName(r)).ID
	p.mu.Lock()
	p.fail = "/containers/" + old + "/start"
	p.failMsg = "failed to create task for container: task " + old + ": already exists: unknown"
	p.mu.Unlock()
	t.Cleanup(func() { p.mu.Lock(); p.fail = ""; p.mu.Unlock() })
	if err := d.PowerOn(ctx, r); err != nil {
		t.Fatalf("power-on with the old container's start refused: %v", err)
	}
	now := e.inspect(t, ContainerName(r))
	if now == nil || now.ID == old || !now.State.Running {
		t.Fatalf("after the power-on: %+v; want a new container, running", now)
	}
	// Any other refusal of a start is returned, not worked around.
	mustOp(t, cnt, "power-off (the new one)", -1, func() error { return d.PowerOff(ctx, r) })
	p.mu.Lock()
	p.fail, p.failMsg = "/containers/"+now.ID+"/start", "cannot start container: some other failure"
	p.mu.Unlock()
	if err := d.PowerOn(ctx, r); err == nil || !strings.Contains(err.Error(), "some other failure") {
		t.Fatalf("power-on with the start refused otherwise: %v", err)
	}
	if c := e.inspect(t, ContainerName(r)); c == nil || c.ID != now.ID {
		t.Fatal("a start refused for another reason re-created the container")
	}
}
