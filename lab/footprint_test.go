package lab

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseProc(t *testing.T) {
	// A command name with spaces and parentheses, as /proc writes it.
	stat := "4242 (ars (a b)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9 0 123 800000000 6000 18446744073709551615"
	status := "Name:\tars\nVmPeak:\t  900000 kB\nVmRSS:\t   24576 kB\nThreads:\t9\n"
	s, err := parseProc([]byte(stat), []byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if s.CPU != 3250*time.Millisecond || s.RSS != 24576*1024 {
		t.Fatalf("got CPU %s, RSS %d; want 3.25s (325 ticks) and 24 MiB", s.CPU, s.RSS)
	}
	for _, c := range []struct{ stat, status, want string }{
		{"4242 ars S 1", status, "no command name"},
		{"4242 (ars) S 1 2 3", status, "fields after the command name"},
		{strings.Replace(stat, " 250 ", " x ", 1), status, "invalid syntax"},
		{stat, "Name:\tkthreadd\n", "no VmRSS"},
		{stat, "VmRSS:\t lots kB\n", "VmRSS"},
	} {
		if _, err := parseProc([]byte(c.stat), []byte(c.status)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseProc(%q, %q): %v; want an error with %q", c.stat, c.status, err, c.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := []ProcSample{
		{At: t0, CPU: 10 * time.Second, RSS: 20 << 20},
		{At: t0.Add(time.Second), CPU: 10*time.Second + 10*time.Millisecond, RSS: 30 << 20},
		{At: t0.Add(2 * time.Second), CPU: 10*time.Second + 50*time.Millisecond, RSS: 25 << 20},
	}
	fp, err := summarize(s)
	if err != nil {
		t.Fatal(err)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if fp.Samples != 3 || !near(fp.CPUPercent, 2.5) || !near(fp.CPUMaxPercent, 4) || !near(fp.RSSMeanMB, 25) || !near(fp.RSSMaxMB, 30) {
		t.Fatalf("got %+v; want 3 samples, 2.5 %% CPU (max 4 %%), RSS mean 25 MB, max 30 MB", fp)
	}
	if _, err := summarize(s[:1]); err == nil {
		t.Error("one sample summarized")
	}
	if _, err := summarize([]ProcSample{s[0], s[0]}); err == nil {
		t.Error("samples at one instant summarized")
	}
}

func TestReadProcOfThisProcess(t *testing.T) {
	a, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	b := a
	for b.CPU <= a.CPU && time.Now().Before(deadline) { // spin: use CPU
		if b, err = readProc(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if a.RSS <= 0 || b.CPU <= a.CPU {
		t.Fatalf("first %+v, then %+v: want a resident set and CPU time that grows", a, b)
	}
	if _, err := readProc(math.MaxInt32); err == nil {
		t.Error("a process that does not exist was read")
	}
	if _, err := MeasureFootprints(t.Context(), map[string]int{"me": os.Getpid()}, time.Second, time.Millisecond); err == nil {
		t.Error("a measurement shorter than its interval was accepted")
	}
}
