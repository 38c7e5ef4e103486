package e2e

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/ars-project/ars/test/harness"
)

// benchApply commits one service spec per iteration through node n's API
// and reports latency percentiles. The nodes use the production timings
// (500/500/250 ms Raft). Run with `make bench`.
func benchApply(b *testing.B, follower bool) {
	c := harness.New(b, 3, harness.DefaultTimings)
	n := c.Leader(10 * time.Second)
	if follower {
		n = c.Follower()
	}
	cl := c.Client(n, "operator")
	body := spec("bench", 4)
	ctx := context.Background()
	// Warm the connections (TLS handshakes, forwarding client).
	for i := 0; i < 10; i++ {
		if _, err := cl.ApplyService(ctx, body); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := cl.ApplyService(ctx, body); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// BenchmarkApplyThroughFollower: CLI-equivalent client → follower (HTTPS,
// token) → leader (HTTPS, node certificate) → Raft commit on a quorum.
func BenchmarkApplyThroughFollower(b *testing.B) { benchApply(b, true) }

// BenchmarkApplyOnLeader: the same without the forwarding hop.
func BenchmarkApplyOnLeader(b *testing.B) { benchApply(b, false) }
