package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, which
// Linux fixes at 100 for user space on every architecture the lab runs on.
const userHZ = 100

// ProcSample is one reading of a process: the CPU time it has used (user
// and system, every thread) and its resident set.
type ProcSample struct {
	At  time.Time
	CPU time.Duration
	RSS int64 // bytes
}

// readProc reads a process's CPU time and resident set from /proc.
func readProc(pid int) (ProcSample, error) {
	at := time.Now()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcSample{}, fmt.Errorf("lab: %w", err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcSample{}, fmt.Errorf("lab: %w", err)
	}
	s, err := parseProc(stat, status)
	s.At = at
	return s, err
}

// parseProc reads utime and stime (fields 14 and 15 of /proc/PID/stat,
// after the command name in parentheses, which may hold spaces) and VmRSS
// (kB) of /proc/PID/status.
func parseProc(stat, status []byte) (ProcSample, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return ProcSample{}, errors.New("lab: /proc stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state): utime is field 14, f[11]; stime f[12].
	if len(f) < 13 {
		return ProcSample{}, fmt.Errorf("lab: /proc stat: %d fields after the command name, want at least 13", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return ProcSample{}, fmt.Errorf("lab: /proc stat: %w", err)
	}
	out := ProcSample{CPU: time.Duration(ut+st) * time.Second / userHZ}
	for line := range strings.SplitSeq(string(status), "\n") {
		v, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return ProcSample{}, fmt.Errorf("lab: /proc status VmRSS %q: %w", strings.TrimSpace(v), err)
		}
		out.RSS = kb * 1024
		return out, nil
	}
	return ProcSample{}, errors.New("lab: /proc status: no VmRSS (a kernel thread, or the process exited)")
}

// Footprint is what one process used over a measurement.
type Footprint struct {
	Samples int `json:"samples"`
	// CPUPercent is the CPU time used over the whole window as a share of
	// one core; CPUMaxPercent the highest share over one interval.
	CPUPercent    float64 `json:"cpu_percent"`
	CPUMaxPercent float64 `json:"cpu_max_percent"`
	RSSMeanMB     float64 `json:"rss_mean_mb"`
	RSSMaxMB      float64 `json:"rss_max_mb"`
}

// summarize turns a process's samples (in time order) into its
// footprint; it needs two at least.
func summarize(samples []ProcSample) (Footprint, error) {
	if len(samples) < 2 {
		return Footprint{}, fmt.Errorf("lab: %d samples; a footprint needs two at least", len(samples))
	}
	first, last := samples[0], samples[len(samples)-1]
	wall := last.At.Sub(first.At)
	if wall <= 0 {
		return Footprint{}, errors.New("lab: samples do not advance in time")
	}
	fp := Footprint{Samples: len(samples), CPUPercent: pct(last.CPU-first.CPU, wall)}
	var rss int64
	for i, s := range samples {
		rss += s.RSS
		fp.RSSMaxMB = max(fp.RSSMaxMB, mb(s.RSS))
		if i > 0 {
			if d := s.At.Sub(samples[i-1].At); d > 0 {
				fp.CPUMaxPercent = max(fp.CPUMaxPercent, pct(s.CPU-samples[i-1].CPU, d))
			}
		}
	}
	fp.RSSMeanMB = mb(rss / int64(len(samples)))
	return fp, nil
}

func pct(cpu, wall time.Duration) float64 { return 100 * cpu.Seconds() / wall.Seconds() }
func mb(b int64) float64                  { return float64(b) / (1 << 20) }

// MeasureFootprints samples each process every interval for d and
// summarizes each. A process that exits ends the measurement with an
// error naming it.
func MeasureFootprints(ctx context.Context, pids map[string]int, every, d time.Duration) (map[string]Footprint, error) {
	if every <= 0 || d < every {
		return nil, fmt.Errorf("lab: sample every %s for %s: want a positive interval no longer than the measurement", every, d)
	}
	names := make([]string, 0, len(pids))
	for n := range pids {
		names = append(names, n)
	}
	slices.Sort(names)
	samples := map[string][]ProcSample{}
	read := func() error {
		for _, n := range names {
			s, err := readProc(pids[n])
			if err != nil {
				return fmt.Errorf("%s (pid %d): %w", n, pids[n], err)
			}
			samples[n] = append(samples[n], s)
		}
		return nil
	}
	if err := read(); err != nil {
		return nil, err
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	end := time.After(d)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		case <-end:
			done = true
		}
		if err := read(); err != nil {
			return nil, err
		}
	}
	out := map[string]Footprint{}
	for _, n := range names {
		fp, err := summarize(samples[n])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out[n] = fp
	}
	return out, nil
}
