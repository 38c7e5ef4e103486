package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ars-project/ars/lab/bench"
	"github.com/ars-project/ars/lab/netlab"
)

// DNSDist is the peer an operator would pick instead of ars: the same
// replicas, each at an address of its own and all attached, behind
// dnsdist (from the distribution's packages) holding the service address,
// with its fastest health checks (checkInterval=1 s, its minimum;
// checkTimeout=100 ms, the ars probe's timeout; maxCheckFailures=1; rise=1)
// and the firstAvailable policy. No controller, no simulator: dnsdist alone
// decides where queries go.
type DNSDist struct {
	Net    *netlab.Lab
	cfg    Config
	client *netlab.Client
	cancel context.CancelFunc
	done   chan struct{}
}

// dnsdistFront is the namespace (a netlab replica) that runs dnsdist with
// the service address.
const dnsdistFront = "dnsdist"

// UpDNSDist starts the replicas of cfg (only Prefix, StateDir, Replicas,
// DNSD and Logger are used) behind dnsdist, and the measuring client.
func UpDNSDist(ctx context.Context, cfg Config) (d *DNSDist, err error) {
	bin, err := exec.LookPath("dnsdist")
	if err != nil {
		return nil, fmt.Errorf("lab: dnsdist is not installed (make lab-deps): %w", err)
	}
	if len(cfg.Replicas) == 0 || len(cfg.Replicas) > 40 {
		return nil, fmt.Errorf("lab: %d replicas: want 1-40", len(cfg.Replicas))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	names := []string{dnsdistFront}
	addrs := map[string]netip.Addr{}
	sub := netlab.DefaultSubnet.Addr().As4()
	for i, r := range cfg.Replicas {
		if r.Name == dnsdistFront {
			return nil, fmt.Errorf("lab: replica name %q is taken by the front", r.Name)
		}
		names = append(names, r.Name)
		a := sub
		a[3] = byte(101 + i)
		addrs[r.Name] = netip.AddrFrom4(a)
	}
	nl, err := netlab.New(netlab.Topology{Prefix: cfg.Prefix, StateDir: cfg.StateDir, Replicas: names, Addrs: addrs})
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	d = &DNSDist{Net: nl, cfg: cfg, done: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = d.Down(context.WithoutCancel(ctx))
		}
	}()
	if err := nl.Up(ctx); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	t := nl.Topology()
	var servers []string
	for i, r := range cfg.Replicas {
		argv, err := Prepare(ServerSpec{Impl: r.Impl, Dir: filepath.Join(t.StateDir, "replicas", r.Name),
			Addr: addrs[r.Name], Subnet: t.Subnet, Binary: binaryFor(cfg, r.Impl)})
		if err != nil {
			return nil, err
		}
		if _, err := nl.Run(r.Name, argv...); err != nil {
			return nil, err
		}
		if err := nl.Attach(ctx, r.Name); err != nil {
			return nil, err
		}
		servers = append(servers, fmt.Sprintf(`newServer{address="%s:53", name="%s", checkName="%s", checkInterval=1, checkTimeout=100, maxCheckFailures=1, rise=1, order=%d}`,
			addrs[r.Name], r.Name, RecordName, i+1))
	}
	conf := filepath.Join(t.StateDir, "dnsdist.conf")
	body := fmt.Sprintf("-- written by the lab: the ars benchmark's dnsdist mode\nsetLocal(\"%s:53\")\nsetACL(\"%s\")\nsetServerPolicy(firstAvailable)\n%s\n",
		t.Service, t.Subnet, strings.Join(servers, "\n"))
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if _, err := nl.Run(dnsdistFront, bin, "--supervised", "--disable-syslog", "-C", conf); err != nil {
		return nil, err
	}
	if err := nl.Attach(ctx, dnsdistFront); err != nil {
		return nil, err
	}
	if d.client, err = nl.NewClient(ClientInterval, ClientTimeout); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { defer close(d.done); d.client.Run(cctx) }()
	return d, nil
}

func binaryFor(cfg Config, impl string) string {
	if impl == "dnsd" {
		return cfg.DNSD
	}
	return ""
}

// Steady waits until the client has been answered for the last second.
func (d *DNSDist) Steady(ctx context.Context) error {
	for {
		o := d.client.Outage(time.Now().Add(-time.Second-ClientTimeout), time.Now().Add(-ClientTimeout))
		if o.Sent > 100 && o.Lost == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: dnsdist does not answer steadily (%s): %w", o, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Trial wedges the first backend (the one firstAvailable sends every
// query to while it is up), measures until the service has answered for
// settle again, then lets the backend go and waits for dnsdist to take it
// back (two check intervals and a steady second). dnsdist reports no
// phases: detection and switch stay 0.
func (d *DNSDist) Trial(ctx context.Context, settle, limit time.Duration) (bench.Trial, error) {
	if err := d.Steady(ctx); err != nil {
		return bench.Trial{}, err
	}
	first := d.cfg.Replicas[0].Name
	at := time.Now()
	if err := d.Net.SignalReplica(first, syscall.SIGSTOP); err != nil {
		return bench.Trial{}, err
	}
	defer func() { _ = d.Net.SignalReplica(first, syscall.SIGCONT) }()
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := d.client.WaitLost(wctx, at, 1); err != nil {
		return bench.Trial{}, err
	}
	var o netlab.Outage
	for {
		now := time.Now().Add(-ClientTimeout)
		tail := d.client.Outage(now.Add(-settle), now)
		if tail.Sent > 0 && tail.Lost == 0 {
			o = d.client.Outage(at, now)
			break
		}
		select {
		case <-wctx.Done():
			return bench.Trial{Err: "no answer again"}, nil
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := d.Net.SignalReplica(first, syscall.SIGCONT); err != nil {
		return bench.Trial{}, err
	}
	select {
	case <-ctx.Done():
		return bench.Trial{}, ctx.Err()
	case <-time.After(2500 * time.Millisecond):
	}
	return bench.Trial{Downtime: o.Longest, Lost: o.Lost, Switched: true, Outages: o.Gaps}, nil
}

// Down stops the client and removes everything.
func (d *DNSDist) Down(ctx context.Context) error {
	var errs []error
	if d.cancel != nil {
		d.cancel()
		<-d.done
		d.client.Close()
		d.cancel = nil
	}
	if d.Net != nil {
		errs = append(errs, d.Net.Down(ctx))
	}
	return errors.Join(errs...)
}
