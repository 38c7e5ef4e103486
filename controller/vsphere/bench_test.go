package vsphere

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ars-project/ars/vcsim"
)

// benchProfile is the simulator latency profile of the benchmark
// (ARS_VCSIM_PROFILE overrides it: none, lan, wan).
func benchProfile() string {
	if p := os.Getenv("ARS_VCSIM_PROFILE"); p != "" {
		return p
	}
	return "lan"
}

// BenchmarkAttach measures the critical-path operation, Attach of a
// running standby's NIC, with one persistent session and with a login per
// operation (the older script behaviour), under the same vCenter latency
// profile, and prints the ratio. Each iteration detaches first (not
// timed), so every timed Attach really reconfigures the VM.
//
//	go test -run '^$' -bench Attach -benchtime 20x ./controller/vsphere/
func BenchmarkAttach(b *testing.B) {
	profile := benchProfile()
	sim, err := vcsim.Start(vcsim.Options{Profile: profile})
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	n := b.N
	b.StopTimer()
	persistent := attachTimes(b, sim, false, n)
	perOp := attachTimes(b, sim, true, n)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(persistent), "ms/attach-persistent")
	b.ReportMetric(ms(perOp), "ms/attach-per-op-login")
	b.ReportMetric(float64(perOp)/float64(persistent), "per-op/persistent")
	if n == 1 {
		return // the benchmark's probe run; the real one follows
	}
	fmt.Fprintf(os.Stdout, "vsphere Attach, profile %q, %d attaches each: persistent session %.1f ms, per-operation login %.1f ms: %.1fx (%.0f%% less with the persistent session)\n",
		profile, n, ms(persistent), ms(perOp), float64(perOp)/float64(persistent), 100*(1-float64(persistent)/float64(perOp)))
}

// attachTimes runs n detach+attach cycles and returns the mean Attach time.
func attachTimes(b *testing.B, sim *vcsim.Sim, perOp bool, n int) time.Duration {
	d, err := New(Config{
		URL:               sim.URL(),
		Username:          "ars",
		Password:          func() (string, error) { return "pw", nil },
		Thumbprint:        sim.Thumbprint(),
		PerOperationLogin: perOp,
		KeepAlive:         time.Hour,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	r := replica("bind9-win", vm0)
	// Warm up: the persistent session is established and the VM resolved
	// before the first measurement, as on a leader that has been leading.
	if _, err := d.Observe(ctx, r); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for range n {
		if err := d.Detach(ctx, r); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := d.Attach(ctx, r); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	return total / time.Duration(n)
}
