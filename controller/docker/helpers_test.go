package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/test/dockertest"
)

// The tests run against the real Docker engine of the machine. Without a
// socket they skip (a developer laptop without Docker); with one they run
// and fail on any problem (CI has an engine and runs as root). Set
// ARS_REQUIRE_DOCKER=1 to make a missing socket a failure.

// env is what every test shares: one engine, the test image, and
// networks made for this run (removed by TestMain).
type env struct {
	endpoint string
	cli      *client.Client
	image    string
	helper   string // the address helper's image
	run      string // unique per test run; prefixes every name
	svcNet   string // the service network (internal bridge)
	subnet   netip.Prefix
	svcAddr  netip.Addr // the service address in it
	mgmtNet  string     // another network for spec.Networks
	parkNet  string
	nets     []string // to remove at the end
}

var (
	envOnce sync.Once
	envVal  *env
	envErr  error
	envSkip string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if envVal != nil {
		envVal.teardown()
	}
	os.Exit(code)
}

// testEnv returns the shared environment, skipping the test if there is
// no engine.
func testEnv(t *testing.T) *env {
	t.Helper()
	envOnce.Do(setupEnv)
	if envSkip != "" {
		if os.Getenv("ARS_REQUIRE_DOCKER") != "" {
			t.Fatalf("ARS_REQUIRE_DOCKER is set but: %s", envSkip)
		}
		t.Skip(envSkip)
	}
	if envErr != nil {
		t.Fatalf("docker test environment: %v", envErr)
	}
	return envVal
}

func setupEnv() {
	sock := dockertest.Socket()
	if _, err := os.Stat(sock); err != nil {
		envSkip = fmt.Sprintf("no Docker engine socket at %s (%v): skipping the Docker driver tests; they need a local engine (set ARS_TEST_DOCKER_SOCKET to use another socket)", sock, err)
		return
	}
	e := &env{endpoint: "unix://" + sock}
	envVal = e
	var b [4]byte
	_, _ = rand.Read(b[:])
	e.run = "arst" + hex.EncodeToString(b[:])
	cli, err := client.New(client.WithHost(e.endpoint))
	if err != nil {
		envErr = err
		return
	}
	e.cli = cli
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		envErr = fmt.Errorf("the socket %s exists but the engine does not answer: %w", sock, err)
		return
	}
	if e.image, err = dockertest.DNSImage(ctx, cli); err != nil {
		envErr = err
		return
	}
	if e.helper, err = dockertest.HelperImage(ctx, cli); err != nil {
		envErr = err
		return
	}
	e.svcNet, e.mgmtNet, e.parkNet = e.run+"-svc", e.run+"-mgmt", e.run+"-park"
	if e.subnet, err = e.createSubnetNetwork(ctx, e.svcNet); err != nil {
		envErr = err
		return
	}
	e.svcAddr = e.subnet.Addr().Next().Next().Next() // .3 (.1 is the bridge)
	if _, err := e.createSubnetNetwork(ctx, e.mgmtNet); err != nil {
		envErr = err
	}
}

// createSubnetNetwork makes an internal bridge network for this run.
func (e *env) createSubnetNetwork(ctx context.Context, name string) (netip.Prefix, error) {
	p, err := dockertest.CreateNetwork(ctx, e.cli, name, e.run)
	if err == nil {
		e.nets = append(e.nets, name)
	}
	return p, err
}

// teardown removes every container and network of this run (the image
// stays: it is cached by content).
func (e *env) teardown() {
	if e.cli == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dockertest.RemoveAll(ctx, e.cli, "ars-"+e.run, append(e.nets, e.parkNet)...)
	_ = e.cli.Close()
}

// counter counts the Engine API requests a driver makes.
type counter struct {
	mu   sync.Mutex
	muts []string // mutating requests: "POST /containers/x/start"
	all  atomic.Int64
}

func (c *counter) hook(r *http.Request) {
	c.all.Add(1)
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return
	}
	p := r.URL.Path
	if i := strings.Index(p[1:], "/"); strings.HasPrefix(p, "/v1.") && i > 0 {
		p = p[i+1:] // drop the API version
	}
	c.mu.Lock()
	c.muts = append(c.muts, r.Method+" "+p)
	c.mu.Unlock()
}

// mutations returns and resets the mutating requests seen so far.
func (c *counter) mutations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.muts
	c.muts = nil
	return m
}

// newDriver makes a driver on the test engine (or on endpoint, if given)
// that counts its requests.
func newDriver(t *testing.T, e *env, endpoint string, mod func(*Config)) (*Driver, *counter) {
	t.Helper()
	cnt := &counter{}
	if endpoint == "" {
		endpoint = e.endpoint
	}
	cfg := Config{
		Hosts:       []Host{{Name: "local", Endpoint: endpoint}},
		ParkNetwork: e.parkNet,
		HelperImage: e.helper,
		requestHook: cnt.hook,
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d, cnt
}

var replicaSeq atomic.Int64

// replica returns a container replica spec with a unique name, serving
// answer for www.lab.internal.; its container is removed after the test.
func (e *env) replica(t *testing.T, answer string) fsm.ReplicaSpec {
	t.Helper()
	name := fmt.Sprintf("%s-r%d", e.run, replicaSeq.Add(1))
	r := fsm.ReplicaSpec{
		Name: name, Impl: "dnsd", OS: "linux", Platform: fsm.PlatformContainer,
		Image: e.image,
		Container: &fsm.ContainerSpec{
			Command: []string{"-a", answer},
			Network: e.svcNet,
		},
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, n := range []string{ContainerName(r), HelperName(r)} {
			_, _ = e.cli.ContainerRemove(ctx, n, client.ContainerRemoveOptions{Force: true})
		}
	})
	return r
}

// endpointMode makes a driver attach in AddressEndpoint mode (newDriver's mod).
func endpointMode(c *Config) {
	for i := range c.Hosts {
		c.Hosts[i].AddressMode = AddressEndpoint
	}
}

// attachCalls is how many mutating API calls an Attach of a running,
// detached container makes: connect; in helper mode also the helper's
// exec (create, start).
func attachCalls(d *Driver) int {
	if helperMode(d) {
		return 3
	}
	return 1
}

// helperMode: the driver's (first) host attaches in AddressHelper mode.
func helperMode(d *Driver) bool { return d.hosts[d.order[0]].mode == AddressHelper }

// helperAddrs lists the IPv4 addresses in the network namespace of the
// replica's container, read through its helper (ars-nethelper show):
// "eth1 172.31.250.130/24 172.31.250.3/32" per link.
func (e *env) helperAddrs(t *testing.T, r fsm.ReplicaSpec) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ex, err := e.cli.ExecCreate(ctx, HelperName(r), client.ExecCreateOptions{AttachStdout: true, AttachStderr: true,
		Cmd: []string{helperBinary, "show"}})
	if err != nil {
		t.Fatalf("exec in %s: %v", HelperName(r), err)
	}
	res, err := e.cli.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		t.Fatalf("exec in %s: %v", HelperName(r), err)
	}
	defer res.Close()
	var out strings.Builder
	if _, err := stdcopy.StdCopy(&out, &out, res.Reader); err != nil {
		t.Fatalf("exec in %s: %v", HelperName(r), err)
	}
	return out.String()
}

// waitHolds polls the replica's namespace (through its helper) until it
// has addr, or fails the test after within; it returns how long that took.
func (e *env) waitHolds(t *testing.T, r fsm.ReplicaSpec, addr netip.Addr, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for !e.holds(t, r, addr) {
		if time.Since(start) > within {
			t.Fatalf("%s does not hold %s after %s: %q", r.Name, addr, within, e.helperAddrs(t, r))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// holds reports whether the replica's namespace has addr (read through
// its helper).
func (e *env) holds(t *testing.T, r fsm.ReplicaSpec, addr netip.Addr) bool {
	t.Helper()
	return strings.Contains(e.helperAddrs(t, r), " "+addr.String()+"/32")
}

// inspect reads a container directly (nil if it does not exist).
func (e *env) inspect(t *testing.T, name string) *container.InspectResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := e.cli.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		if strings.Contains(err.Error(), "No such container") {
			return nil
		}
		t.Fatalf("inspect %s: %v", name, err)
	}
	return &res.Container
}

// query asks addr:53 for www.lab.internal. A once (100 ms timeout) and
// returns the answer's address.
func query(addr netip.Addr) (netip.Addr, error) {
	c := &dns.Client{Net: "udp", Timeout: 100 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("www.lab.internal.", dns.TypeA)
	r, _, err := c.Exchange(m, netip.AddrPortFrom(addr, 53).String())
	if err != nil {
		return netip.Addr{}, err
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			ip, _ := netip.AddrFromSlice(a.A.To4())
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no A record in the answer (rcode %s)", dns.RcodeToString[r.Rcode])
}

// waitAnswer polls the service address until it answers want (or the
// deadline passes) and returns how long that took.
func waitAnswer(t *testing.T, addr netip.Addr, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	var last error
	for time.Now().Before(deadline) {
		got, err := query(addr)
		if err == nil && got.String() == want {
			return time.Since(start)
		}
		last = err
		if err == nil {
			last = fmt.Errorf("answered %s", got)
		}
	}
	t.Fatalf("%s did not answer %s within %s: %v", addr, want, within, last)
	return 0
}

// timed runs f and returns its duration.
func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// mustOp runs one driver operation, fails the test on error, checks the
// number of mutating API calls and logs the latency.
func mustOp(t *testing.T, cnt *counter, name string, wantMutations int, f func() error) time.Duration {
	t.Helper()
	cnt.mutations()
	d, err := timed(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	m := cnt.mutations()
	if wantMutations >= 0 && len(m) != wantMutations {
		t.Fatalf("%s: %d mutating API calls %v, want %d", name, len(m), m, wantMutations)
	}
	t.Logf("%-28s %8.2f ms  %v", name, float64(d.Microseconds())/1000, m)
	return d
}

func observe(t *testing.T, d *Driver, r fsm.ReplicaSpec) driver.Observation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, err := d.Observe(ctx, r)
	if err != nil {
		t.Fatalf("observe %s: %v", r.Name, err)
	}
	return o
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// wantErr checks err is an *OpError wrapping sentinel whose message
// contains every fragment.
func wantErr(t *testing.T, err error, sentinel error, fragments ...string) *driver.OpError {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", sentinel)
	}
	var oe *driver.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("error %T %v is not an *OpError", err, err)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %q does not wrap %q", err, sentinel)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Fatalf("error %q does not mention %q", err, f)
		}
	}
	return oe
}

func endpointWithIP(a netip.Addr) *network.EndpointSettings {
	return &network.EndpointSettings{IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: a}}
}

func clientInfoOptions() client.InfoOptions { return client.InfoOptions{} }
