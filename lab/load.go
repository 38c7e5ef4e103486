package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/ars-project/ars/lab/bench"
)

// Benign load: dnsperf (from the distribution's packages) in the client
// namespace. The capacity of each replica is measured once with every
// replica reachable at its own address (the dnsdist lab's topology); the
// load test then sends a fraction of the weakest one's capacity to the
// service address of the ars lab and counts the switches nobody asked for.

// Perf is what one dnsperf run reported.
type Perf struct {
	Sent, Completed, Lost int
	QPS                   float64
}

var perfRE = map[string]*regexp.Regexp{
	"sent":      regexp.MustCompile(`Queries sent:\s+(\d+)`),
	"completed": regexp.MustCompile(`Queries completed:\s+(\d+)`),
	"lost":      regexp.MustCompile(`Queries lost:\s+(\d+)`),
	"qps":       regexp.MustCompile(`Queries per second:\s+([0-9.]+)`),
}

// parsePerf reads dnsperf's summary.
func parsePerf(out []byte) (Perf, error) {
	var p Perf
	vals := map[string]string{}
	for k, re := range perfRE {
		m := re.FindSubmatch(out)
		if m == nil {
			return p, fmt.Errorf("lab: dnsperf printed no %q line: %.300s", k, out)
		}
		vals[k] = string(m[1])
	}
	p.Sent, _ = strconv.Atoi(vals["sent"])
	p.Completed, _ = strconv.Atoi(vals["completed"])
	p.Lost, _ = strconv.Atoi(vals["lost"])
	p.QPS, _ = strconv.ParseFloat(vals["qps"], 64)
	return p, nil
}

// MaxLoad bounds a dnsperf run.
const MaxLoad = 30 * time.Minute

// dnsperf runs dnsperf against server for d (at most qps queries a second;
// 0: as fast as it can) through run, which executes in the client
// namespace.
func dnsperf(ctx context.Context, run func(context.Context, ...string) ([]byte, error), stateDir string, server netip.Addr, d time.Duration, qps int) (Perf, error) {
	if d <= 0 || d > MaxLoad {
		return Perf{}, fmt.Errorf("lab: load duration %s: want more than 0 and at most %s", d, MaxLoad)
	}
	data := filepath.Join(stateDir, "dnsperf.queries")
	if err := os.WriteFile(data, []byte(RecordName+" A\n"), 0o644); err != nil {
		return Perf{}, fmt.Errorf("lab: %w", err)
	}
	argv := []string{"dnsperf", "-s", server.String(), "-d", data, "-l", strconv.Itoa(int(d.Seconds())), "-t", "1", "-q", "100"}
	if qps > 0 {
		argv = append(argv, "-Q", strconv.Itoa(qps))
	}
	cctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := run(cctx, argv...)
	if err != nil {
		return Perf{}, fmt.Errorf("lab: dnsperf: %w: %.300s", err, out)
	}
	return parsePerf(out)
}

// Capacity measures each replica's queries per second, one at a time,
// each for d.
func (d *DNSDist) Capacity(ctx context.Context, dur time.Duration) (map[string]float64, error) {
	out := map[string]float64{}
	t := d.Net.Topology()
	for _, r := range d.cfg.Replicas {
		p, err := dnsperf(ctx, d.Net.Exec, t.StateDir, t.Addrs[r.Name], dur, 0)
		if err != nil {
			return nil, fmt.Errorf("lab: capacity of %s: %w", r.Name, err)
		}
		out[r.Name] = p.QPS
	}
	return out, nil
}

// BenignLoad sends qps queries a second to the service address for dur
// while the cluster watches, and returns the lab client's view as a
// trial, the switches made meanwhile (all of them false: nothing
// attacked), and dnsperf's report.
func (l *Lab) BenignLoad(ctx context.Context, qps int, dur, dwell time.Duration) (bench.Trial, int, Perf, error) {
	s, err := l.Steady(ctx, dwell)
	if err != nil {
		return bench.Trial{}, 0, Perf{}, err
	}
	at := time.Now()
	t := l.Net.Topology()
	p, err := dnsperf(ctx, l.Net.Exec, t.StateDir, t.Service, dur, qps)
	if err != nil {
		return bench.Trial{}, 0, p, err
	}
	o, err := l.Outage(at, time.Now().Add(-ClientTimeout))
	if err != nil {
		return bench.Trial{}, 0, p, err
	}
	after, err := l.service(ctx)
	if err != nil {
		return bench.Trial{}, 0, p, err
	}
	falses := 0
	for _, h := range after.History {
		if h.Generation > s.Generation {
			falses++
		}
	}
	return bench.Trial{Downtime: o.Longest, Lost: o.Lost, Outages: o.Gaps}, falses, p, nil
}
