package apparmor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/test/testutil"
)

const waitFor = 10 * time.Second

// followed runs Follow on path in the background and collects its lines.
type followed struct {
	lines chan string
	done  chan error
	stop  context.CancelFunc
	logs  *testutil.SyncBuffer
}

func follow(t *testing.T, path string, opts FollowOptions) *followed {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fw := &followed{lines: make(chan string, 1000), done: make(chan error, 1), stop: cancel, logs: &testutil.SyncBuffer{}}
	if opts.Poll == 0 {
		opts.Poll = MinPoll
	}
	opts.Logger = slog.New(slog.NewTextHandler(fw.logs, nil))
	go func() {
		fw.done <- Follow(ctx, path, opts, func(line string) error {
			fw.lines <- line
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-fw.done:
		case <-time.After(waitFor):
			t.Error("Follow did not return after cancel")
		}
	})
	return fw
}

// expect waits for exactly the given lines, in order.
func (fw *followed) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-fw.lines:
			if got != w {
				t.Fatalf("line %q, want %q", got, w)
			}
		case err := <-fw.done:
			t.Fatalf("Follow returned %v while waiting for %q", err, w)
		case <-time.After(waitFor):
			t.Fatalf("no line %q within %s (logs: %s)", w, waitFor, fw.logs.String())
		}
	}
}

// noneBefore asserts no line is pending once the follower has certainly looked
// at the file again: a marker line appended after the check must be next.
func (fw *followed) noneBefore(t *testing.T, path, marker string) {
	t.Helper()
	appendTo(t, path, marker+"\n")
	fw.expect(t, marker)
}

// waitLog polls the follower's log for s.
func (fw *followed) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !strings.Contains(fw.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q: %s", s, fw.logs.String())
		}
		time.Sleep(MinPoll)
	}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFollowFromEndAndPartialLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	appendTo(t, path, "old 1\nold 2\nold partial")
	fw := follow(t, path, FollowOptions{})
	fw.waitLog(t, "following the log file")
	appendTo(t, path, " still old\nnew 1\nnew ")
	fw.expect(t, "new 1")
	appendTo(t, path, "2\r\n")
	fw.expect(t, "new 2")
	fw.noneBefore(t, path, "marker")
}

func TestFollowFromStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	appendTo(t, path, "a\n\nb\n")
	fw := follow(t, path, FollowOptions{FromStart: true})
	fw.expect(t, "a", "", "b")
	appendTo(t, path, "c\n")
	fw.expect(t, "c")
}

func TestFollowRenameAndRecreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	appendTo(t, path, "")
	fw := follow(t, path, FollowOptions{FromStart: true})
	appendTo(t, path, "1\n")
	fw.expect(t, "1")

	// Lines written to the old file just before the rename, and a last
	// line without a break, are not lost; the new file is read from its
	// start.
	appendTo(t, path, "2\n3")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, "4\n5\n")
	fw.expect(t, "2", "3", "4", "5")
	fw.waitLog(t, "rotated")

	// Renamed away and not re-created yet: it waits, then follows.
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path+".2", "6\n") // the writer still has the old file open
	fw.expect(t, "6")
	appendTo(t, path, "7\n")
	fw.expect(t, "7")
	fw.noneBefore(t, path, "marker")
}

func TestFollowTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	appendTo(t, path, "")
	fw := follow(t, path, FollowOptions{})
	fw.waitLog(t, "following the log file")
	appendTo(t, path, "a long first line\nanother long line\n")
	fw.expect(t, "a long first line", "another long line")
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	fw.waitLog(t, "truncated")
	appendTo(t, path, "x\n")
	fw.expect(t, "x")
	fw.noneBefore(t, path, "marker")
}

func TestFollowWaitsForFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	fw := follow(t, path, FollowOptions{}) // not FromStart: a new file is read whole anyway
	fw.waitLog(t, "waiting for the log file")
	appendTo(t, path, "first\n")
	fw.expect(t, "first")
}

func TestFollowSkipsOverlongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	appendTo(t, path, "")
	fw := follow(t, path, FollowOptions{MaxLine: 100})
	fw.waitLog(t, "following the log file")
	appendTo(t, path, strings.Repeat("x", 250)+"\nok\n"+strings.Repeat("y", 100)+"\n")
	fw.expect(t, "ok", strings.Repeat("y", 100))
	fw.waitLog(t, "overlong")
}

func TestFollowStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	appendTo(t, path, "a\nb\n")
	boom := errors.New("boom")
	err := Follow(context.Background(), path, FollowOptions{FromStart: true, Poll: MinPoll}, func(line string) error {
		if line == "b" {
			return fmt.Errorf("on %s: %w", line, boom)
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Follow = %v, want the callback's error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Follow(ctx, path, FollowOptions{}, func(string) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow with a cancelled context = %v", err)
	}
	if err := Follow(context.Background(), t.TempDir(), FollowOptions{}, func(string) error { return nil }); err == nil {
		t.Fatal("following a directory succeeded")
	}
}
