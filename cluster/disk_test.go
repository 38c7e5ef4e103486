package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

func TestDiskVerdict(t *testing.T) {
	const min = 1000
	for _, tc := range []struct {
		name    string
		r       diskReading
		healthy bool
		cause   string
	}{
		{"room and a good probe", diskReading{free: 5000, probeDone: true}, true, ""},
		{"exactly the minimum", diskReading{free: min, probeDone: true}, true, ""},
		{"below the minimum", diskReading{free: min - 1, probeDone: true}, false, "below the minimum of 1000 bytes"},
		{"probe fails", diskReading{free: 5000, probeErr: syscall.EROFS, probeDone: true}, false, "read-only file system"},
		{"probe stalls", diskReading{free: 5000, stalled: true}, false, "probe stalled"},
		{"statfs fails", diskReading{freeErr: syscall.EIO, probeDone: true}, false, "free space unknown"},
		{"stall wins over low space", diskReading{free: 1, stalled: true}, false, "probe stalled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			healthy, cause := diskVerdict(tc.r, min)
			if healthy != tc.healthy || !strings.Contains(cause, tc.cause) || (tc.healthy && cause != "") {
				t.Fatalf("verdict = %v %q; want %v with %q", healthy, cause, tc.healthy, tc.cause)
			}
		})
	}
}

// A probe that does not return (an fsync stuck behind a dead disk) is
// reported as a stall after the probe timeout; no second probe starts
// while it hangs, and the disk is healthy again once it returns.
func TestDiskMonitorReportsAStalledProbe(t *testing.T) {
	release := make(chan struct{})
	var started atomic.Int32
	d := newDiskMonitor(t.TempDir(), DiskCheck{MinFreeBytes: 1, Interval: time.Second, ProbeTimeout: 50 * time.Millisecond})
	d.probe = func(dir string) diskReading {
		started.Add(1)
		<-release
		return diskReading{free: 1 << 30, probeDone: true, latency: time.Millisecond}
	}
	for i := 0; i < 2; i++ {
		if st := d.check(); st.Healthy || !strings.Contains(st.Cause, "stalled") {
			t.Fatalf("check %d while the probe hangs: %+v; want a stall", i, st)
		}
	}
	if n := started.Load(); n != 1 {
		t.Fatalf("%d probes started while the first hung; want 1", n)
	}
	close(release)
	waitFor(t, 5*time.Second, "healthy after the stalled probe returned", func() error {
		if st := d.check(); !st.Healthy {
			return fmt.Errorf("still unhealthy: %s", st.Cause)
		}
		return nil
	})
}

// A write error reported by the stores makes the node refuse writes at
// once, before the next check.
func TestDiskMonitorWriteErrorRefusesAtOnce(t *testing.T) {
	d := newDiskMonitor(t.TempDir(), DefaultDiskCheck())
	c := &Cluster{disk: d}
	if err := c.diskRefusal(); err != nil {
		t.Fatalf("refusal before any error: %v", err)
	}
	d.writeFailed(syscall.ENOSPC)
	err := c.diskRefusal()
	if !errors.Is(err, ErrDiskUnhealthy) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("refusal after ENOSPC = %v; want ErrDiskUnhealthy naming the cause", err)
	}
}

// requireLab skips a test that needs root (to mount a tmpfs), unless
// ARS_REQUIRE_LAB=1 says the run must not skip it.
func requireLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("ARS_REQUIRE_LAB") == "1" {
		t.Fatal("this test mounts a tmpfs and needs root; ARS_REQUIRE_LAB=1 forbids skipping it")
	}
	t.Skip("this test mounts a tmpfs and needs root (set ARS_REQUIRE_LAB=1 to make this a failure)")
}

func run(t *testing.T, name string, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory in the
// test's temporary directory and unmounts it when the test ends (after the
// nodes, whose cleanups were registered later, have shut down).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := run(t, "mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := run(t, "umount", dir); err != nil {
			t.Errorf("unmount tmpfs: %v", err)
			_ = run(t, "umount", "-l", dir)
		}
	})
	return dir
}

// mountExt4 mounts a fresh ext4 file system of size bytes, on a loop
// device over a sparse file, and returns its directory: unlike a tmpfs it
// can be frozen.
func mountExt4(t *testing.T, size int64) string {
	t.Helper()
	base := t.TempDir()
	img, dir := filepath.Join(base, "disk.img"), filepath.Join(base, "ext4")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if err := run(t, "mkfs.ext4", "-q", "-F", img); err != nil {
		t.Fatalf("make the file system: %v", err)
	}
	if err := run(t, "mount", "-o", "loop", img, dir); err != nil {
		t.Fatalf("mount ext4: %v", err)
	}
	t.Cleanup(func() {
		_ = run(t, "fsfreeze", "-u", dir) // a failed test may leave it frozen
		if err := run(t, "umount", dir); err != nil {
			t.Errorf("unmount ext4: %v", err)
			_ = run(t, "umount", "-l", dir)
		}
	})
	return dir
}

// fill writes a file into dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("create filler: %v", err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			return path
		}
	}
}

// TestDiskProbeSeesReadOnlyFileSystem: the probe reports a data directory
// remounted read-only, and a healthy one once it is writable again.
func TestDiskProbeSeesReadOnlyFileSystem(t *testing.T) {
	requireLab(t)
	dir := mountTmpfs(t, 4<<20)
	d := newDiskMonitor(dir, DiskCheck{MinFreeBytes: 1 << 20, Interval: time.Second, ProbeTimeout: 5 * time.Second})
	if st := d.check(); !st.Healthy || !st.FreeKnown || st.FreeBytes < 1<<20 {
		t.Fatalf("fresh tmpfs: %+v; want healthy with its free space", st)
	}
	if err := run(t, "mount", "-o", "remount,ro", dir); err != nil {
		t.Fatal(err)
	}
	st := d.check()
	if err := run(t, "mount", "-o", "remount,rw", dir); err != nil {
		t.Fatal(err)
	}
	if st.Healthy || !strings.Contains(st.Cause, "read-only file system") {
		t.Fatalf("read-only tmpfs: %+v; want unhealthy naming the read-only file system", st)
	}
	if st := d.check(); !st.Healthy {
		t.Fatalf("after remount rw: %+v; want healthy", st)
	}
}

// diskConfig returns a config for name whose data directory is dir, with a
// disk check fast enough for a test and snapshots taken often, so a
// recovering node has to take one.
func diskConfig(h *harness, name string, expect int, join []string, dir string) Config {
	cfg := h.config(name, expect, join)
	if dir != "" {
		cfg.DataDir = dir
	}
	cfg.Disk = DiskCheck{MinFreeBytes: 1 << 20, Interval: 100 * time.Millisecond, ProbeTimeout: 5 * time.Second}
	cfg.Raft.SnapshotInterval = 200 * time.Millisecond
	cfg.Raft.SnapshotThreshold = 8
	cfg.Raft.TrailingLogs = 4
	return cfg
}

// startDiskCluster starts n1 (data directory dir) to n3 and makes n1 the
// leader.
func startDiskCluster(t *testing.T, h *harness, dir string, tune func(*Config)) (n1, n2, n3 *testNode) {
	t.Helper()
	cfg1 := diskConfig(h, "n1", 3, nil, dir)
	if tune != nil {
		tune(&cfg1)
	}
	n1 = h.start(cfg1)
	join := []string{n1.cfg.GossipBind}
	n2 = h.start(diskConfig(h, "n2", 3, join, ""))
	n3 = h.start(diskConfig(h, "n3", 3, join, ""))
	h.waitLeader(15 * time.Second)
	waitFor(t, 15*time.Second, "n1 to lead", func() error {
		if n1.c.IsLeader() {
			return nil
		}
		if l, err := h.agreedLeader(); err == nil && l != n1 {
			return l.c.TransferLeadership(context.Background(), "n1")
		}
		return errors.New("n1 does not lead")
	})
	return n1, n2, n3
}

// leaderOf returns the node among nodes that leads, if they agree on it.
func leaderOf(nodes ...*testNode) (*testNode, error) {
	var leader *testNode
	for _, n := range nodes {
		if n.c.IsLeader() {
			leader = n
		}
	}
	if leader == nil {
		return nil, errors.New("no leader among them")
	}
	for _, n := range nodes {
		if name, _, _ := n.c.LeaderAPI(); name != leader.name {
			return nil, fmt.Errorf("%s thinks the leader is %q, not %s", n.name, name, leader.name)
		}
	}
	return leader, nil
}

// sameStateOf waits until the nodes have applied the same index with the
// same state digest, and returns the digest.
func sameStateOf(t *testing.T, timeout time.Duration, nodes ...*testNode) string {
	t.Helper()
	var digest string
	waitFor(t, timeout, "equal state digests", func() error {
		var idx0 uint64
		for i, n := range nodes {
			idx, d, err := n.c.StateDigest()
			if err != nil {
				return err
			}
			if i == 0 {
				idx0, digest = idx, d
				continue
			}
			if idx != idx0 || d != digest {
				return fmt.Errorf("%s at index %d digest %.12s; %s at %d digest %.12s", nodes[0].name, idx0, digest, n.name, idx, d)
			}
		}
		return nil
	})
	return digest
}

// diskFaultTest runs one disk fault on the leader's data directory:
// breakDisk makes it unhealthy, mendDisk heals it; want is what the cause
// must name.
func diskFaultTest(t *testing.T, dir string, tune func(*Config), breakDisk, mendDisk func(dir string, n1 *testNode), want string) {
	h := newHarness(t, "n1", "n2", "n3")
	n1, n2, n3 := startDiskCluster(t, h, filepath.Join(dir, "data"), tune)
	for i := 0; i < 10; i++ {
		applyOK(t, n1, serviceCmd(t, fmt.Sprintf("before-%d", i), "a", "b"))
	}
	sameStateOf(t, 10*time.Second, n1, n2, n3)

	breakDisk(dir, n1)

	// The leader gives up leadership; the other two elect one of them.
	// Commands keep coming in meanwhile (through n2, which forwards them to
	// whoever leads), so the broken disk is written to, not only checked.
	waitFor(t, 20*time.Second, "n2 or n3 to lead", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = n2.c.Apply(ctx, serviceCmd(t, "while-breaking", "a", "b"))
		cancel()
		if n1.c.IsLeader() {
			return errors.New("n1 still leads")
		}
		_, err := leaderOf(n2, n3)
		return err
	})
	// n1 refuses writes, says why, and writes nothing.
	var st Status
	waitFor(t, 10*time.Second, "n1 to report its disk unhealthy", func() error {
		st = n1.c.Status()
		if st.Disk == nil || st.Disk.Healthy {
			return fmt.Errorf("n1 disk status %+v", st.Disk)
		}
		return nil
	})
	if !strings.Contains(st.Disk.Cause, want) {
		t.Errorf("n1 disk cause %q; want it to name %q", st.Disk.Cause, want)
	}
	// Raft may still call n1 leader (its loop hung in a write), but it
	// must not send anyone to itself.
	if st.Leader == "n1" {
		t.Errorf("n1 with an unhealthy disk names itself leader (raft state %s)", st.State)
	}
	lastBefore := n1.c.raft.LastIndex()
	_, err := n1.c.Apply(context.Background(), serviceCmd(t, "refused", "a", "b"))
	if !errors.Is(err, ErrDiskUnhealthy) || !strings.Contains(err.Error(), want) {
		t.Fatalf("apply on n1 = %v; want ErrDiskUnhealthy naming %q", err, want)
	}
	var out strings.Builder
	if err := n1.c.SnapshotSave(context.Background(), &out); !errors.Is(err, ErrDiskUnhealthy) {
		t.Errorf("snapshot save on n1 = %v; want ErrDiskUnhealthy", err)
	}

	// The other two keep committing, through the leader and through the
	// follower, and take snapshots while n1 is out.
	for i := 0; i < 20; i++ {
		via := n2
		if i%2 == 1 {
			via = n3
		}
		applyOK(t, via, serviceCmd(t, fmt.Sprintf("during-%d", i), "a", "b"))
	}
	sameStateOf(t, 10*time.Second, n2, n3)
	if _, ok := n1.c.Service("during-19"); ok {
		t.Error("n1 applied a command while its disk was unhealthy")
	}
	if n1.c.raft.LastIndex() != lastBefore {
		t.Errorf("n1's last log index moved from %d to %d while its disk was unhealthy", lastBefore, n1.c.raft.LastIndex())
	}
	if err := hasService(n1, "refused"); err == nil {
		t.Error("the refused command was applied")
	}

	mendDisk(dir, n1)

	// n1 comes back by itself, catches up and matches the others.
	waitFor(t, 20*time.Second, "n1 disk healthy again", func() error {
		if d := n1.c.Status().Disk; d == nil || !d.Healthy {
			return fmt.Errorf("n1 disk %+v", d)
		}
		return nil
	})
	waitFor(t, 20*time.Second, "n1 follows the leader again", func() error {
		_, err := leaderOf(n1, n2, n3)
		return err
	})
	applyOK(t, n1, serviceCmd(t, "after", "a", "b"))
	sameStateOf(t, 20*time.Second, n1, n2, n3)
	if err := hasService(n1, "during-19"); err != nil {
		t.Fatal(err)
	}

	// Its log and snapshots reopen cleanly: restart it on the same
	// directory; it comes back with what it held and the others' state.
	// (Not the same digest as before: an election meanwhile, which a
	// loaded machine can cause, commits a leader record.)
	h.stop(n1)
	n1 = h.restart(n1)
	sameStateOf(t, 20*time.Second, n1, n2, n3)
	for _, svc := range []string{"before-9", "during-19", "after"} {
		if err := hasService(n1, svc); err != nil {
			t.Fatalf("after the restart: %v", err)
		}
	}
	applyOK(t, n1, serviceCmd(t, "after-restart", "a", "b"))
	sameStateOf(t, 20*time.Second, n1, n2, n3)
	if err := hasService(n1, "after-restart"); err != nil {
		t.Fatal(err)
	}
}

// TestLeaderWithFullDiskStepsDownAndRejoins: the leader's data directory
// (a 12 MiB tmpfs) is filled to the last byte while the cluster commits.
func TestLeaderWithFullDiskStepsDownAndRejoins(t *testing.T) {
	requireLab(t)
	var filler string
	diskFaultTest(t, mountTmpfs(t, 12<<20), nil,
		func(dir string, _ *testNode) { filler = fill(t, dir) },
		func(dir string, _ *testNode) {
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		},
		"free space")
}

// TestLeaderFindsItsFullDiskByAFailedWrite: as above, but the leader's
// periodic check is an hour apart, so what takes it out is raft's own
// failed log write (raft steps down by itself; the store reports the
// error, which runs a check at once). Whether the new leader's first RPC
// reaches n1 before its gate closes is a race: if it does, n1's write of
// the new term fails and is held until the disk has room again. The test
// nudges the check after removing the filler, as the next tick would.
func TestLeaderFindsItsFullDiskByAFailedWrite(t *testing.T) {
	requireLab(t)
	var filler string
	diskFaultTest(t, mountTmpfs(t, 12<<20),
		func(cfg *Config) { cfg.Disk.Interval = time.Hour },
		func(dir string, _ *testNode) { filler = fill(t, dir) },
		func(dir string, n1 *testNode) {
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			n1.c.disk.changed <- struct{}{}
		},
		"free space")
}

// TestLeaderWithReadOnlyDiskStepsDownAndRejoins: the leader's probe fails
// as it does on a file system remounted read-only (the kernel refuses
// that remount while raft.db is open for writing, EBUSY, so the probe
// stands in for it; TestDiskProbeSeesReadOnlyFileSystem shows the real
// probe seeing a real read-only mount).
func TestLeaderWithReadOnlyDiskStepsDownAndRejoins(t *testing.T) {
	requireLab(t)
	diskFaultTest(t, mountTmpfs(t, 12<<20), nil,
		func(dir string, n1 *testNode) {
			n1.c.disk.setProbe(func(dir string) diskReading {
				r := probeDir(dir)
				r.probeErr = fmt.Errorf("create probe file: open %s: %w", filepath.Join(dir, ".disk-probe"), syscall.EROFS)
				return r
			})
		},
		func(dir string, n1 *testNode) { n1.c.disk.setProbe(probeDir) },
		"read-only file system")
}

// TestLeaderWithStalledDiskStepsDownAndRejoins: the leader's probe hangs
// (an fsync that never returns) until the disk "recovers".
func TestLeaderWithStalledDiskStepsDownAndRejoins(t *testing.T) {
	requireLab(t)
	release := make(chan struct{})
	diskFaultTest(t, mountTmpfs(t, 12<<20), nil,
		func(dir string, n1 *testNode) {
			n1.c.disk.mu.Lock()
			n1.c.disk.cfg.ProbeTimeout = 200 * time.Millisecond
			n1.c.disk.mu.Unlock()
			n1.c.disk.setProbe(func(dir string) diskReading {
				<-release
				return probeDir(dir)
			})
		},
		func(dir string, n1 *testNode) {
			n1.c.disk.setProbe(probeDir)
			close(release)
		},
		"probe stalled")
}

// TestLeaderWithFrozenDiskStepsDownAndRejoins: the leader's data
// directory is a real ext4 file system, frozen (fsfreeze): every write and
// fsync blocks until it is thawed, Raft's own log writes included, which
// stops the leader's commits while its heartbeats still hold the
// followers. The write stall is what gives it away, one probe timeout
// after the first blocked write.
func TestLeaderWithFrozenDiskStepsDownAndRejoins(t *testing.T) {
	requireLab(t)
	diskFaultTest(t, mountExt4(t, 64<<20),
		func(cfg *Config) {
			cfg.Disk.Interval = time.Hour // only a stalled write may wake the check
			cfg.Disk.ProbeTimeout = 500 * time.Millisecond
		},
		func(dir string, _ *testNode) {
			if err := run(t, "fsfreeze", "-f", dir); err != nil {
				t.Fatal(err)
			}
			// Before the nodes stop: a node cannot stop while a write of
			// its hangs on the frozen disk.
			t.Cleanup(func() { _ = run(t, "fsfreeze", "-u", dir) })
		},
		func(dir string, n1 *testNode) {
			if err := run(t, "fsfreeze", "-u", dir); err != nil {
				t.Fatal(err)
			}
			n1.c.disk.signal() // the next tick is an hour away
		},
		"raft store write stalled")
}

// The one write raft panics over — a new current term — waits for the
// disk instead of failing; every other failed write returns its error at
// once, and each failure reaches the disk monitor. A closed store stands
// in for a disk that refuses every write.
func TestGuardedStoreHoldsTheTermWriteUntilItSucceedsOrShutdown(t *testing.T) {
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(t.TempDir(), "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	if err := bolt.Close(); err != nil {
		t.Fatal(err)
	}
	var failures atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := &guardedStore{BoltStore: bolt, ctx: ctx, retry: time.Millisecond,
		failed: func(error) { failures.Add(1) }, onRetry: func(error) {}}

	if err := g.SetUint64([]byte("LastVoteTerm"), 7); err == nil {
		t.Fatal("a failed write of another key returned no error")
	}
	if err := g.StoreLogs([]*raft.Log{{Index: 1, Term: 1}}); err == nil {
		t.Fatal("a failed log write returned no error")
	}
	if n := failures.Load(); n != 2 {
		t.Fatalf("%d failures reported; want 2", n)
	}
	done := make(chan error, 1)
	go func() { done <- g.SetUint64([]byte(keyCurrentTerm), 8) }()
	waitFor(t, 5*time.Second, "the term write to be retried", func() error {
		if n := failures.Load(); n < 5 {
			return fmt.Errorf("%d failures so far", n)
		}
		return nil
	})
	select {
	case err := <-done:
		t.Fatalf("the term write returned (%v) while the disk still refuses it", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("term write at shutdown = %v; want nil (raft would panic on an error)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the term write did not return after shutdown")
	}
}

// An unhealthy disk is checked again sooner than a healthy one, so a node
// takes part in Raft again soon after its disk recovers.
func TestNextDiskCheck(t *testing.T) {
	for _, c := range []struct {
		interval  time.Duration
		unhealthy bool
		want      time.Duration
	}{
		{2 * time.Second, false, 2 * time.Second},
		{2 * time.Second, true, unhealthyRecheck},
		{100 * time.Millisecond, true, 100 * time.Millisecond},
		{time.Hour, false, time.Hour},
	} {
		if got := nextDiskCheck(c.interval, c.unhealthy); got != c.want {
			t.Errorf("nextDiskCheck(%s, unhealthy %t) = %s; want %s", c.interval, c.unhealthy, got, c.want)
		}
	}
}
