package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/sys/unix"
)

// DiskCheck tunes the check of the data directory that runs beside Raft
// (see DESIGN.md, "A full or failing data directory").
type DiskCheck struct {
	// MinFreeBytes: below this many bytes free to an unprivileged writer
	// the disk counts as full.
	MinFreeBytes uint64
	// Interval is how often the free space is read and a probe file is
	// written, synced and removed.
	Interval time.Duration
	// ProbeTimeout bounds one probe, and one write of Raft's log or
	// stable store: a write or fsync that has not returned by then counts
	// as a stalled disk.
	ProbeTimeout time.Duration
}

// DefaultDiskCheck: 64 MiB free is far more than a few log entries and a
// snapshot of this cluster's state need, and leaves room for the
// operator's own tools; a probe every 2 s that may take up to 2 s. A
// leader whose log write hangs commits nothing while its heartbeats still
// hold its followers, so every switch waits on that write: 2 s is what an
// fsync behind a busy queue may cost before the cluster is better served
// by another leader.
func DefaultDiskCheck() DiskCheck {
	return DiskCheck{MinFreeBytes: 64 << 20, Interval: 2 * time.Second, ProbeTimeout: 2 * time.Second}
}

// ErrDiskUnhealthy: this node's data directory is full, read-only or not
// answering, so the node refuses writes (and takes no part in Raft) until
// it recovers. The API answers it as 503 disk_unhealthy.
var ErrDiskUnhealthy = errors.New("data directory unhealthy")

// DiskStatus is the last reading of the data directory.
type DiskStatus struct {
	Healthy bool
	// Cause says why the disk is unhealthy (empty while healthy).
	Cause string
	// FreeBytes is the space free to an unprivileged writer at the last
	// reading; FreeKnown is false if statfs failed.
	FreeBytes uint64
	FreeKnown bool
	// ProbeLatency is how long the last probe that finished took.
	ProbeLatency time.Duration
	// CheckedAt is the time of the last reading, Since when the current
	// health state began.
	CheckedAt time.Time
	Since     time.Time
}

// diskReading is what one check measured.
type diskReading struct {
	free     uint64
	freeErr  error
	probeErr error // write, fsync or remove of the probe file failed
	stalled  bool  // the probe did not return within the timeout
	// writeStalled is how long a write of Raft's store has been running,
	// when that is longer than the timeout (0 otherwise).
	writeStalled time.Duration
	latency      time.Duration // of the probe, when it finished
	probeDone    bool
}

// diskVerdict is the pure decision on one reading: healthy, or every
// cause found, the most telling first (a full disk also fails its probe
// with "no space left on device").
func diskVerdict(r diskReading, minFree uint64) (bool, string) {
	var causes []string
	if r.stalled {
		causes = append(causes, "probe stalled: the write and fsync of a probe file did not return in time")
	}
	if r.writeStalled > 0 {
		causes = append(causes, fmt.Sprintf("raft store write stalled: it has not returned for %s", r.writeStalled.Round(time.Millisecond)))
	}
	if r.freeErr != nil {
		causes = append(causes, "free space unknown: "+r.freeErr.Error())
	} else if r.free < minFree {
		causes = append(causes, fmt.Sprintf("free space %d bytes is below the minimum of %d bytes", r.free, minFree))
	}
	if r.probeErr != nil {
		causes = append(causes, "probe failed: "+r.probeErr.Error())
	}
	return len(causes) == 0, strings.Join(causes, "; ")
}

// diskProbe measures a directory: free bytes by statfs, and a small file
// written, fsynced and removed. It is a variable so unit tests can stand
// in for a failing or stalling disk.
type diskProbe func(dir string) diskReading

func probeDir(dir string) diskReading {
	var r diskReading
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		r.freeErr = fmt.Errorf("statfs %s: %w", dir, err)
	} else {
		r.free = st.Bavail * uint64(st.Bsize)
	}
	start := time.Now()
	r.probeErr = writeProbe(filepath.Join(dir, ".disk-probe"))
	r.latency = time.Since(start)
	r.probeDone = true
	return r
}

// probeSize is written per probe: one page, as one small log entry costs.
const probeSize = 4096

func writeProbe(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create probe file: %w", err)
	}
	_, werr := f.Write(make([]byte, probeSize))
	serr := f.Sync()
	cerr := f.Close()
	rerr := os.Remove(path)
	switch {
	case werr != nil:
		return fmt.Errorf("write probe file: %w", werr)
	case serr != nil:
		return fmt.Errorf("fsync probe file: %w", serr)
	case cerr != nil:
		return fmt.Errorf("close probe file: %w", cerr)
	case rerr != nil:
		return fmt.Errorf("remove probe file: %w", rerr)
	}
	return nil
}

// diskMonitor holds the health of the data directory. Readings come from
// its own checks and from write errors the stores report.
type diskMonitor struct {
	dir   string
	cfg   DiskCheck
	probe diskProbe

	mu       sync.Mutex
	st       DiskStatus
	inflight chan diskReading // a probe still running (stalled), or nil
	changed  chan struct{}    // signalled on a reported write error or stall
	// writes are the Raft store writes running now, by id, with their
	// start; lastWrite numbers them.
	writes    map[uint64]time.Time
	lastWrite uint64
}

func newDiskMonitor(dir string, cfg DiskCheck) *diskMonitor {
	now := time.Now()
	return &diskMonitor{dir: dir, cfg: cfg, probe: probeDir,
		st:      DiskStatus{Healthy: true, Since: now},
		changed: make(chan struct{}, 1), writes: map[uint64]time.Time{}}
}

// writeStarted records a Raft store write; the returned func records its
// end. A write still running after ProbeTimeout wakes the check, which
// then reports the disk stalled without waiting for its own probe; its
// return wakes the check again.
func (d *diskMonitor) writeStarted() (done func()) {
	d.mu.Lock()
	d.lastWrite++
	id := d.lastWrite
	d.writes[id] = time.Now()
	timeout := d.cfg.ProbeTimeout
	d.mu.Unlock()
	t := time.AfterFunc(timeout, d.signal)
	return func() {
		d.mu.Lock()
		delete(d.writes, id)
		d.mu.Unlock()
		if !t.Stop() {
			// It stalled and has now returned: check again at once, so
			// the node takes part again without waiting for a tick.
			d.signal()
		}
	}
}

// oldestWrite is how long the longest-running Raft store write has been
// running (0 if none is).
func (d *diskMonitor) oldestWrite(now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	var oldest time.Duration
	for _, at := range d.writes {
		oldest = max(oldest, now.Sub(at))
	}
	return oldest
}

func (d *diskMonitor) signal() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// check takes one reading, bounded by ProbeTimeout, and records it. A
// probe that stalls keeps running; until it returns no other probe starts
// and every check reports the stall. A Raft store write running longer
// than ProbeTimeout is a stall too, reported at once: the probe may be
// behind the same stalled disk and would only repeat it a timeout later.
func (d *diskMonitor) check() DiskStatus {
	d.mu.Lock()
	timeout := d.cfg.ProbeTimeout
	ch := d.inflight
	if ch == nil {
		ch = make(chan diskReading, 1)
		d.inflight = ch
		probe := d.probe
		go func() { ch <- probe(d.dir) }()
	}
	d.mu.Unlock()
	wait := timeout
	if w := d.oldestWrite(time.Now()); w >= timeout {
		wait = 0
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var r diskReading
	select {
	case r = <-ch:
		d.mu.Lock()
		d.inflight = nil
		d.mu.Unlock()
	case <-timer.C:
		r = diskReading{stalled: wait > 0}
		var st unix.Statfs_t
		if err := unix.Statfs(d.dir, &st); err == nil {
			r.free = st.Bavail * uint64(st.Bsize)
		} else {
			r.freeErr = err
		}
	}
	if w := d.oldestWrite(time.Now()); w >= timeout {
		r.writeStalled = w
	}
	healthy, cause := diskVerdict(r, d.cfg.MinFreeBytes)
	return d.record(r, healthy, cause)
}

func (d *diskMonitor) record(r diskReading, healthy bool, cause string) DiskStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if healthy != d.st.Healthy {
		d.st.Since = now
	}
	d.st.Healthy, d.st.Cause, d.st.CheckedAt = healthy, cause, now
	if !r.stalled || r.freeErr == nil {
		d.st.FreeBytes, d.st.FreeKnown = r.free, r.freeErr == nil
	}
	if r.probeDone {
		d.st.ProbeLatency = r.latency
	}
	return d.st
}

// writeFailed records a write error of the log or stable store: the disk
// is unhealthy from now until the next check passes.
func (d *diskMonitor) writeFailed(err error) {
	d.mu.Lock()
	if d.st.Healthy {
		d.st.Since = time.Now()
	}
	d.st.Healthy = false
	d.st.Cause = "raft store write failed: " + err.Error()
	d.mu.Unlock()
	d.signal()
}

// setProbe replaces the probe (tests stand in for a failing disk).
func (d *diskMonitor) setProbe(p diskProbe) {
	d.mu.Lock()
	d.probe = p
	d.mu.Unlock()
}

func (d *diskMonitor) status() DiskStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st
}

// diskLoop checks the data directory every Interval (every
// unhealthyRecheck at most while it is unhealthy, and at once after a
// reported write error or stall) and moves the node between its healthy
// and unhealthy modes.
func (c *Cluster) diskLoop() {
	d := c.disk
	t := time.NewTimer(d.cfg.Interval)
	defer t.Stop()
	unhealthy := false
	for {
		st := d.check()
		switch {
		case !st.Healthy && !unhealthy:
			unhealthy = true
			c.log.Error("data directory unhealthy: refusing writes and stepping out of Raft until it recovers",
				"dir", c.cfg.DataDir, "cause", st.Cause, "free_bytes", st.FreeBytes)
			c.diskDown()
		case !st.Healthy:
			c.diskStillDown()
		case unhealthy:
			unhealthy = false
			c.log.Info("data directory healthy again: taking part in Raft again",
				"dir", c.cfg.DataDir, "free_bytes", st.FreeBytes, "probe", st.ProbeLatency)
			c.diskUp()
		}
		t.Reset(nextDiskCheck(d.cfg.Interval, unhealthy))
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		case <-d.changed:
		}
	}
}

// unhealthyRecheck bounds the time between checks while the disk is
// unhealthy: the node is out of Raft until a check passes, and with a
// follower out the cluster has no node to spare (chaos seed 21: a disk
// freed 1.5 s before another node was killed was still unchecked, and
// the leader lost its quorum).
const unhealthyRecheck = 500 * time.Millisecond

// nextDiskCheck is how long the loop waits for its next check.
func nextDiskCheck(interval time.Duration, unhealthy bool) time.Duration {
	if unhealthy {
		return min(interval, unhealthyRecheck)
	}
	return interval
}

// diskDown takes the node out of Raft while its disk is unhealthy: the
// gate answers every incoming Raft RPC with an error (so the node learns
// no new term and stores nothing) and sends no AppendEntries (so the
// followers of a leader whose loop hangs on a stalled write elect
// another), the timers are stretched so it does not campaign, its leader
// work stops, and a leader hands leadership over.
func (c *Cluster) diskDown() {
	c.gate.close()
	c.stretchTimers(true)
	c.holdLeaderWork(true)
	c.diskStillDown()
}

// diskStillDown repeats what may not have worked the first time: a
// leadership transfer (one attempt gives up after an election timeout).
func (c *Cluster) diskStillDown() {
	if c.raft.State() != raft.Leader || c.voterCount() <= 1 {
		// A node alone has nobody to hand over to; it keeps leading and
		// refuses writes.
		return
	}
	// Raft's loop answers the transfer; while it hangs on a stalled
	// write it answers nothing, so the wait is bounded and the next check
	// tries again (an attempt still queued is refused at once then).
	f := c.raft.LeadershipTransfer()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * c.cfg.Raft.ElectionTimeout):
		err = errors.New("no answer from raft: its loop may be held by a stalled write")
	case <-c.ctx.Done():
		return
	}
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return // raft stepped down by itself meanwhile
		}
		c.log.Warn("disk unhealthy: leadership transfer failed; trying again", "err", err)
		return
	}
	c.log.Info("disk unhealthy: leadership transferred")
}

// diskUp lets Raft RPCs in again and, once the node has heard from a
// leader (or after a bound, when there is none to hear from), gives it its
// normal timers back, so its first act is not an election.
func (c *Cluster) diskUp() {
	opened := time.Now()
	c.gate.open()
	c.holdLeaderWork(false)
	bound := 4 * c.cfg.Raft.ElectionTimeout
	for time.Since(opened) < bound {
		if lc := c.raft.LastContact(); lc.After(opened) {
			break
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	c.stretchTimers(false)
}

// stretchedTimeout replaces the heartbeat and election timeouts while the
// disk is unhealthy: a follower then never times out its leader and never
// starts an election.
const stretchedTimeout = 24 * time.Hour

func (c *Cluster) stretchTimers(stretch bool) {
	rc := c.raft.ReloadableConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout = c.cfg.Raft.HeartbeatTimeout, c.cfg.Raft.ElectionTimeout
	if stretch {
		rc.HeartbeatTimeout, rc.ElectionTimeout = stretchedTimeout, stretchedTimeout
	}
	if err := c.raft.ReloadConfig(rc); err != nil {
		c.log.Warn("reload raft timers", "stretch", stretch, "err", err)
	}
}

// diskRefusal is the error for a write this node refuses, nil if its disk
// is healthy (or it has none).
func (c *Cluster) diskRefusal() error {
	if c.disk == nil {
		return nil
	}
	if st := c.disk.status(); !st.Healthy {
		return fmt.Errorf("%w: %s; nothing was written", ErrDiskUnhealthy, st.Cause)
	}
	return nil
}

// Disk returns the last reading of the data directory; ok is false for an
// in-memory node, which has none.
func (c *Cluster) Disk() (DiskStatus, bool) {
	if c.disk == nil {
		return DiskStatus{}, false
	}
	return c.disk.status(), true
}
